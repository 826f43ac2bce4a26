// Package configfile loads a binary's YAML configuration file and lets command-line flags
// override it. Unknown keys and malformed YAML are errors that name the file and line, so a
// typo in a production config fails loudly instead of silently running on defaults.
package configfile

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

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
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", name, err)
	}
	return nil
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
