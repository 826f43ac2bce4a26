// Package configfile loads a binary's YAML configuration file and lets command-line flags
// override it. Unknown keys and malformed YAML are errors that name the file and line, so a
// typo in a production config fails loudly instead of silently running on defaults.
package configfile

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Decode strictly decodes YAML from r into cfg; keys that cfg does not have are errors.
// name is used in error messages (usually the file path).
func Decode(r io.Reader, name string, cfg any) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading config %s: %w", name, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config %s: %w", name, err)
	}
	// Options are named by their YAML path (decisions.policy.mode), the way the docs and the
	// operator name them, never by the Go type behind them.
	w := &walker{paths: map[int]string{}}
	w.walk(&doc, reflect.TypeOf(cfg), "")
	if len(w.unknown) > 0 {
		return fmt.Errorf("config %s: %w", name, errors.Join(w.unknown...))
	}
	strict := func(data []byte) error {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("config %s: %w", name, w.named(err))
		}
		return nil
	}
	if zeroDurations(&doc, reflect.TypeOf(cfg)) {
		rewritten, err := yaml.Marshal(&doc)
		if err == nil && strict(rewritten) == nil {
			return nil
		}
		// Report problems against the file as written, with its line numbers.
	}
	return strict(data)
}

var (
	durationType    = reflect.TypeOf(time.Duration(0))
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

// walker follows a YAML document along the configuration's Go type, recording each option's
// YAML path by line and every key the type does not have.
type walker struct {
	paths   map[int]string // line -> path of the option written there
	unknown []error
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			w.walk(c, t, path)
		}
		return
	}
	if path != "" {
		if _, ok := w.paths[n.Line]; !ok {
			w.paths[n.Line] = path
		}
	}
	if t == nil || reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return // decodes itself: its own errors say what is wrong
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := map[string]reflect.Type{}
		yamlFields(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue // a merge key: its mapping is checked where it is defined
			}
			p := join(path, k.Value)
			w.paths[k.Line] = p
			ft, ok := fields[k.Value]
			if !ok {
				w.unknown = append(w.unknown, fmt.Errorf("line %d: unknown option %s (%s has: %s)", k.Line, p,
					cmp.Or(path, "the top level"), strings.Join(sortedKeys(fields), ", ")))
				continue
			}
			w.walk(v, ft, p)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, n.Content[i].Value)
			w.paths[n.Content[i].Line] = p
			w.walk(n.Content[i+1], t.Elem(), p)
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// yamlFields lists the keys a struct decodes, as yaml.v3 names them (inline structs merged).
func yamlFields(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				yamlFields(ft, into)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		into[name] = f.Type
	}
}

// typeErrLine is how yaml.v3 starts each of a TypeError's messages.
var typeErrLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// named rewrites a decoding error's messages to name the option at their line.
func (w *walker) named(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]error, 0, len(te.Errors))
	for _, m := range te.Errors {
		if g := typeErrLine.FindStringSubmatch(m); g != nil {
			if line, _ := strconv.Atoi(g[1]); w.paths[line] != "" {
				m = fmt.Sprintf("line %s: option %s: %s", g[1], w.paths[line], g[2])
			}
		}
		msgs = append(msgs, errors.New(m))
	}
	return errors.Join(msgs...)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]reflect.Type) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// zeroDurations rewrites a bare 0 given for a duration as "0s", so that `job_cooldown: 0` means
// zero as the operator wrote it; YAML itself only accepts a duration as a string ("0s", "10m").
// Any other bare number for a duration stays an error: its unit would be a guess.
func zeroDurations(n *yaml.Node, t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	changed := false
	switch {
	case n.Kind == yaml.DocumentNode:
		for _, c := range n.Content {
			changed = zeroDurations(c, t) || changed
		}
	case n.Kind == yaml.ScalarNode && t == durationType:
		if n.Tag == "!!int" && strings.Trim(n.Value, "+-0") == "" {
			n.Tag, n.Value, n.Style = "!!str", "0s", 0
			changed = true
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			for j := range t.NumField() {
				f := t.Field(j)
				if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == n.Content[i].Value && f.IsExported() {
					changed = zeroDurations(n.Content[i+1], f.Type) || changed
				}
			}
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 1; i < len(n.Content); i += 2 {
			changed = zeroDurations(n.Content[i], t.Elem()) || changed
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for _, c := range n.Content {
			changed = zeroDurations(c, t.Elem()) || changed
		}
	}
	return changed
}

// DecodeFile strictly decodes the YAML file at path into cfg.
func DecodeFile(path string, cfg any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening config: %w", err)
	}
	defer f.Close()
	return Decode(f, path, cfg)
}

// Load builds a configuration from defaults, then the YAML file named by --config (if any),
// then the flags given in args. bind registers the binary's flags with cfg's fields as targets,
// so a flag that is not given keeps the file's (or default) value.
func Load[T any](name string, args []string, defaults func() T, bind func(fs *flag.FlagSet, cfg *T)) (T, error) {
	// The first pass only finds --config; flags are parsed again after the file is applied so
	// that they win over it.
	var path string
	scratch := defaults()
	pre := newFlagSet(name, &scratch, &path, bind)
	pre.SetOutput(io.Discard)
	if err := pre.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			full := newFlagSet(name, &scratch, &path, bind)
			full.SetOutput(os.Stderr)
			full.Usage()
		}
		return scratch, err
	}
	cfg := defaults()
	if path != "" {
		if err := DecodeFile(path, &cfg); err != nil {
			return cfg, err
		}
	}
	fs := newFlagSet(name, &cfg, &path, bind)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return cfg, nil
}

func newFlagSet[T any](name string, cfg *T, path *string, bind func(*flag.FlagSet, *T)) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(path, "config", "", "YAML configuration file; flags override its values")
	bind(fs, cfg)
	return fs
}

// NumericKeys lists the dotted YAML paths of every number (integer, float or duration) in the
// configuration struct v, descending into nested structs but not into lists or maps. Tests use
// it to check each option for what an explicit 0 does.
func NumericKeys(v any) []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				walk(ft, prefix+name+".")
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
				reflect.Float32, reflect.Float64:
				out = append(out, prefix+name)
			}
		}
	}
	walk(reflect.TypeOf(v), "")
	return out
}

// ZeroAt returns a YAML document that sets the dotted key to 0.
func ZeroAt(key string) string {
	var b strings.Builder
	parts := strings.Split(key, ".")
	for i, p := range parts {
		b.WriteString(strings.Repeat("  ", i) + p + ":")
		if i == len(parts)-1 {
			b.WriteString(" 0")
		}
		b.WriteString("\n")
	}
	return b.String()
}
