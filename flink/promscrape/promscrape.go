// Package promscrape reads what a Flink TaskManager's PrometheusReporter serves (Flink 1.17–1.20
// and 2.x naming) and extracts the per-subtask and per-JVM signals tmwarden reports.
// It follows the reporter's rules: labels by name, NaN values, summaries without _sum, and the
// 1.x `buffers_*` pool gauges where 2.x has only `Shuffle_Netty_*`.
package promscrape

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// SanitizeLabelValue applies the PrometheusReporter's label-value filter
// (filterLabelValueCharacters=true, the default): every character outside [a-zA-Z0-9:_] becomes
// '_'. REST ids and names must go through it before they are joined with scraped labels.
func SanitizeLabelValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !labelByteOK(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	// Java filters UTF-16 chars one by one; a non-ASCII rune is one char outside the set, so it
	// becomes a single '_' (runes above the BMP are two Java chars and become "__").
	for _, r := range s {
		switch {
		case r < 0x80 && labelByteOK(byte(r)):
			b.WriteRune(r)
		case r > 0xFFFF:
			b.WriteString("__")
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

func labelByteOK(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_'
}

// Metric family prefixes by Flink logical scope (FORMATS.md §1.2).
const (
	prefixOperator = "flink_taskmanager_job_task_operator_"
	prefixTask     = "flink_taskmanager_job_task_"
	prefixJVM      = "flink_taskmanager_Status_JVM_"
)

// gcCollectorNames are the JVM collector names (filtered the reporter's way) whose per-collector
// series stand in for the "All" group before Flink 1.19.
var gcCollectorNames = []string{
	"G1_Young_Generation", "G1_Old_Generation", "G1_Concurrent_GC", "PS_Scavenge", "PS_MarkSweep",
	"ParNew", "ConcurrentMarkSweep", "Copy", "MarkSweepCompact", "ZGC_Cycles", "ZGC_Pauses",
	"ZGC_Minor_Cycles", "ZGC_Major_Cycles", "ZGC_Minor_Pauses", "ZGC_Major_Pauses",
	"Shenandoah_Cycles", "Shenandoah_Pauses",
}

// Families lists every metric family Parse reads, for the reporter's ?name[]= filter, which
// cuts the body (and the parse cost) to what tmwarden uses.
func Families() []string {
	out := []string{}
	for _, s := range []string{
		"busyTimeMsPerSecond", "backPressuredTimeMsPerSecond", "idleTimeMsPerSecond",
		"numRecordsInPerSecond", "numRecordsOutPerSecond", "numBytesInPerSecond", "numBytesOutPerSecond",
		"checkpointStartDelayNanos", "mailboxLatencyMs",
		"Shuffle_Netty_Input_Buffers_inPoolUsage", "Shuffle_Netty_Output_Buffers_outPoolUsage",
		"buffers_inPoolUsage", "buffers_outPoolUsage",
	} {
		out = append(out, prefixTask+s)
	}
	for _, s := range []string{"pendingRecords", "KafkaSourceReader_KafkaConsumer_records_lag_max", "sourceIdleTime", "currentEmitEventTimeLag"} {
		out = append(out, prefixOperator+s)
	}
	for _, s := range []string{"CPU_Load", "Memory_Heap_Used", "Memory_Heap_Max", "Threads_Count",
		"GarbageCollector_All_Count", "GarbageCollector_All_Time", "GarbageCollector_All_TimeMsPerSecond"} {
		out = append(out, prefixJVM+s)
	}
	for _, gc := range gcCollectorNames {
		out = append(out, prefixJVM+"GarbageCollector_"+gc+"_Count", prefixJVM+"GarbageCollector_"+gc+"_Time")
	}
	return out
}

// SubtaskKey identifies a subtask across attempts; attempt ids change on every failover.
type SubtaskKey struct {
	JobID        string
	VertexID     string
	SubtaskIndex int32
}

// JVM holds one TaskManager's process-level figures as scraped. GC figures are cumulative, so
// rates need the previous scrape (see Stats).
type JVM struct {
	CPULoad  float64
	HeapUsed float64
	HeapMax  float64
	Threads  float64
	// GCCount and GCTimeMs are summed over all collectors (or the 1.19+ "All" group).
	GCCount  float64
	GCTimeMs float64
	// GCTimeMsPerSecond is Flink's own rate (1.19+); NaN when the TaskManager does not export it.
	GCTimeMsPerSecond float64
}

// Scrape is everything extracted from one /metrics body.
type Scrape struct {
	// TaskManagerID and Host are the tm_id and host labels, already sanitised by the reporter.
	TaskManagerID string
	Host          string
	// Subtasks are sorted by job, vertex and subtask index.
	Subtasks []*tmwardenv1.SubtaskMetrics
	JVM      JVM
	// Series is the number of samples read (a summary counts its quantiles and _count); Skipped counts task-scope series without the
	// job_id/task_id/subtask_index labels needed to key them.
	Series  int
	Skipped int
}

// Parse reads a PrometheusReporter text body and extracts the subtasks and JVM figures.
// A body that does not parse completely (truncated, garbled) is an error: partial families
// would show some subtasks without their busy time and mislead the peer comparison.
//
// The body is read in place, line by line. Most of a busy TaskManager's lines are families
// tmwarden never reads: those are only checked to start with a metric name, found with a
// newline search, and skipped. The lines of the families it reads (see wanted) are parsed in
// full, labels, value and timestamp, and a malformed one is an error naming its line; a label
// set already decoded in the same body is recognised by its bytes and not decoded again (see
// knownSet). TestParseAgreesWithTextparse holds it to textparse's reading. Earlier
// versions tokenised every line with Prometheus's model/textparse, which made the agent's
// scrape cost several times node_exporter's whole cost; make bench-scrape prints this parser
// beside textparse and expfmt on the same bodies.
func Parse(r io.Reader) (*Scrape, error) { return ParseWith(r, nil) }

// ParseWith is Parse sharing the identity strings of the subtasks with the previous scrape
// of the same TaskManager through strs (nil: no sharing).
func ParseWith(r io.Reader, strs *Strings) (*Scrape, error) {
	bp := chunkPool.Get().(*[]byte)
	defer func() {
		// A buffer that grew for one huge line must not stay pinned in the pool.
		if cap(*bp) <= chunkSize {
			chunkPool.Put(bp)
		}
	}()
	buf := (*bp)[:cap(*bp)]
	p := newParser()
	if strs != nil {
		p.ex.strs = strs
		defer strs.rotate()
	}
	filled := 0
	for {
		n, err := r.Read(buf[filled:])
		// Parse the complete lines read so far and keep the last, partial one for the next read.
		// What was kept holds no newline, so only the new bytes are searched: a body that
		// trickles in costs no more than one that arrives at once.
		if i := bytes.LastIndexByte(buf[filled:filled+n], '\n'); i >= 0 {
			last := filled + i
			filled += n
			if perr := p.lines(buf[:last+1]); perr != nil {
				return nil, perr
			}
			filled = copy(buf, buf[last+1:filled])
		} else {
			filled += n
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read prometheus text: %w", err)
		}
		if filled == len(buf) {
			// One line fills the whole buffer: the reporter's lines are a few hundred bytes, so
			// this is garbage, unless a label value is huge; give it room up to a bound.
			if len(buf) >= maxLine {
				return nil, fmt.Errorf("parse prometheus text: line %d: longer than %d bytes", p.line+1, maxLine)
			}
			buf = slices.Grow(buf[:filled], len(buf))[:2*len(buf)]
			*bp = buf
		}
	}
	return p.end(filled)
}

// ParseBody is Parse on a body already in memory. Nothing of body is retained.
func ParseBody(body []byte) (*Scrape, error) {
	p := newParser()
	last := bytes.LastIndexByte(body, '\n')
	if err := p.lines(body[:last+1]); err != nil {
		return nil, err
	}
	return p.end(len(body) - (last + 1))
}

// Bodies are parsed as they arrive, in chunks of complete lines: a 200-subtask body is about
// 2 MB, and holding it whole (one buffer per concurrent scrape, grown by doubling to 4 MB) was
// most of the agent's heap, and twice that in resident memory once the GC's headroom is added.
const (
	chunkSize = 64 << 10
	maxLine   = 1 << 20
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// parser is one body's parse: the extractor and the line count, across the body's chunks.
type parser struct {
	ex     *extractor
	line   int
	tmSeen bool
	// family is the metric name of the last series line (a copy: chunks are reused) and
	// familyWanted what wanted said of it. A family's lines are consecutive, so most lines
	// start with the name of the line before; comparing those bytes costs less than finding
	// the name byte by byte and asking wanted again.
	family       []byte
	familyWanted bool
}

func newParser() *parser { return &parser{ex: newExtractor()} }

// end finishes the body; partial is the length of a last line without its newline.
func (p *parser) end(partial int) (*Scrape, error) {
	// The reporter ends every line with a newline; a body that does not was cut off, and the
	// parser would otherwise read a truncated last value as complete.
	if partial > 0 {
		return nil, fmt.Errorf("parse prometheus text: line %d: body ends mid-line (truncated)", p.line+1)
	}
	return p.ex.finish(), nil
}

// lines parses chunk, which holds whole lines, each ending with a newline. Nothing of chunk
// is retained: the caller reuses it.
func (p *parser) lines(chunk []byte) error {
	ex := p.ex
	for off := 0; off < len(chunk); {
		n := bytes.IndexByte(chunk[off:], '\n')
		l := chunk[off : off+n]
		off += n + 1
		p.line++
		line := p.line
		l = l[skipBlank(l):]
		if len(l) == 0 || l[0] == '#' {
			continue
		}
		var name []byte
		want := p.familyWanted
		// The same bytes followed by what metricName accepts after a name: metricName would
		// find this name.
		if n := len(p.family); n > 0 && len(l) > n && (l[n] == '{' || l[n] == ' ' || l[n] == '\t') && bytes.Equal(l[:n], p.family) {
			name = l[:n]
		} else {
			if name = metricName(l); name == nil {
				return fmt.Errorf("parse prometheus text: line %d: %q does not start with a metric name", line, truncate(l, 40))
			}
			want = wanted(name)
			p.family, p.familyWanted = append(p.family[:0], name...), want
		}
		ex.s.Series++
		if want && ex.known(name, l[len(name):]) {
			continue
		}
		if !want {
			// One series names the TaskManager; the rest of an unread line is never looked at.
			if !p.tmSeen && bytes.HasPrefix(name, []byte("flink_taskmanager_")) && bytes.Contains(l, []byte(`tm_id="`)) {
				lbls, _, err := parseSeries(l[len(name):])
				if err != nil {
					return fmt.Errorf("parse prometheus text: line %d: %w", line, err)
				}
				ex.noteTaskManager(lbls)
				p.tmSeen = true
			}
			continue
		}
		lbls, v, err := parseSeries(l[len(name):])
		if err != nil {
			return fmt.Errorf("parse prometheus text: line %d: %w", line, err)
		}
		ex.add(name, lbls, v)
		ex.remember(name, l[len(name):len(name)+len(lbls)+2])
	}
	return nil
}

// A 200-subtask TaskManager writes about 3,500 series of the families Parse reads, but only
// a few hundred label sets: every task-scope family repeats one label set per subtask (nine
// labels, some 330 bytes), and a summary's quantiles add a last quantile label to it. Decoding
// every label set, twice (check, then read), was most of the parse. The extractor remembers
// each label set it decoded, keyed by its bytes, and a later line whose label set is the same
// bytes takes the subtask from there: it is checked by being equal to one that was checked.
//
// The key is the label set without its closing brace, and for a set whose last label is
// quantile (as the reporter writes summaries), without that label: the quantile's prefix is
// the subtask's task-scope label set, so all of a subtask's lines share one entry.

// knownSet is what one label set (a key, above) resolved to.
type knownSet struct {
	// acc is the subtask; nil when the set lacks the labels that key one (counted Skipped).
	acc *subtaskAcc
	// quantile is the set's own quantile label (not the one a summary line adds after it).
	quantile    []byte
	hasQuantile bool
}

// labelSetKey splits a label set as the reporter writes it ({...,} or {...,quantile="q",})
// into its key and the added quantile's value (nil when there is none). ok is false for a
// set not in that shape; such lines take the full decode.
func labelSetKey(set []byte) (key, quantile []byte, ok bool) {
	if len(set) < 2 || set[0] != '{' || set[len(set)-1] != '}' {
		return nil, nil, false
	}
	body := set[:len(set)-1]
	// The last label is a quantile when the set ends with ,quantile="VALUE",} and VALUE has no
	// quote or backslash (then the quote before it opens it). Searched from the end: the rest
	// of the set is compared whole, as a key.
	const q = `quantile=`
	if n := len(body); n > len(q)+3 && body[n-1] == ',' && body[n-2] == '"' {
		if j := bytes.LastIndexByte(body[:n-2], '"'); j > len(q) {
			v := body[j+1 : n-2]
			if i := j - len(q); body[i-1] == ',' && string(body[i:j]) == q && bytes.IndexByte(v, '\\') < 0 {
				return body[:i], v, true
			}
		}
	}
	return body, nil, true
}

// known handles a series line of a wanted family whose label set was decoded before in this
// body: rest is what follows the metric name. It returns false when the line must be decoded in full (another
// family, a new label set, or one not in the reporter's shape).
func (e *extractor) known(name, rest []byte) bool {
	if len(rest) == 0 || rest[0] != '{' || !bytes.HasPrefix(name, []byte(prefixTask)) {
		return false
	}
	end := bytes.LastIndexByte(rest, '}')
	if end < 0 {
		return false
	}
	key, q, ok := labelSetKey(rest[:end+1])
	if !ok {
		return false
	}
	// A string conversion in a map index does not allocate.
	ks := e.sets[string(key)]
	if ks == nil {
		if ks = e.knownFromPrevious(key); ks == nil {
			return false
		}
	}
	v, err := parseSample(rest[end+1:])
	if err != nil {
		// The full decode names the problem and its line.
		return false
	}
	if ks.acc == nil {
		e.s.Skipped++
		return true
	}
	if ks.hasQuantile {
		q = ks.quantile
	}
	e.apply(ks.acc, name, q, v)
	return true
}

// remember records the label set of a task- or operator-scope line add has just taken.
func (e *extractor) remember(name, set []byte) {
	if !bytes.HasPrefix(name, []byte(prefixTask)) {
		return
	}
	key, _, ok := labelSetKey(set)
	if !ok {
		return
	}
	if _, dup := e.sets[string(key)]; dup {
		return
	}
	// The key's labels are the set's without the added quantile; its subtask is the line's
	// (the quantile is not one of the labels that key a subtask). Skipped was counted by add.
	skipped := e.s.Skipped
	lbls := seriesLabels(key[1:])
	ks := &knownSet{acc: e.subtask(lbls)}
	e.s.Skipped = skipped
	ks.quantile = lbls.get("quantile")
	ks.hasQuantile = ks.quantile != nil
	// A copy (the key's bytes are in the read buffer, which the next chunk overwrites), shared
	// with the previous scrape's when there is one: the label sets repeat scrape after scrape.
	k := e.str(key)
	e.sets[k] = ks
	if e.strs != nil {
		e.strs.keepSet(k, e.identityOf(lbls, ks))
	}
}

// setIdentity is what a label set resolved to, kept from one scrape of a TaskManager to the
// next (in Strings) so that the next scrape takes a set it saw last time without decoding its
// labels: a 200-subtask TaskManager's ~300 label sets repeat scrape after scrape, and decoding
// them again (seriesLabels.each, the subtask lookup, the key's copy) was a third of a parse.
// It holds only what the set's bytes say, so the same bytes resolve the same way in any scrape.
type setIdentity struct {
	keyed                          bool   // the set has the labels that key a subtask
	subsKey                        string // extractor.subs's key: job, vertex, subtask index
	sub                            SubtaskKey
	attemptID, jobName, vertexName string
	attemptNumber                  int32
	tmID, host                     string
	quantile                       []byte // the set's own quantile label (see knownSet)
	hasQuantile                    bool
}

// identityOf records what lbls (a label set remember has just decoded into ks) resolved to.
func (e *extractor) identityOf(lbls seriesLabels, ks *knownSet) *setIdentity {
	id := &setIdentity{quantile: bytes.Clone(ks.quantile), hasQuantile: ks.hasQuantile}
	if ks.acc == nil {
		return id
	}
	l := subtaskLabelsOf(lbls)
	an, _ := strconv.ParseInt(string(l.attemptNum), 10, 32)
	id.keyed = true
	id.subsKey = e.str(e.key) // subtask left the set's key there
	id.sub = SubtaskKey{JobID: e.str(l.jobID), VertexID: e.str(l.vertexID), SubtaskIndex: ks.acc.m.SubtaskIndex}
	id.attemptID, id.jobName, id.vertexName = e.str(l.attemptID), e.str(l.jobName), e.str(l.vertexName)
	id.attemptNumber = int32(an)
	id.tmID, id.host = e.str(l.tmID), e.str(l.host)
	return id
}

// knownFromPrevious resolves a label set the previous scrape of the same TaskManager decoded,
// as subtask and remember would: nil when there is none (or no previous scrape to ask).
func (e *extractor) knownFromPrevious(key []byte) *knownSet {
	if e.strs == nil {
		return nil
	}
	k, id := e.strs.set(key)
	if id == nil {
		return nil
	}
	ks := &knownSet{quantile: id.quantile, hasQuantile: id.hasQuantile}
	if id.keyed {
		acc := e.subs[id.subsKey]
		if acc == nil {
			s := e.s
			if s.TaskManagerID == "" && id.tmID != "" {
				s.TaskManagerID, s.Host = id.tmID, id.host
			}
			acc = &subtaskAcc{m: newSubtask(id.sub)}
			e.subs[id.subsKey] = acc
		}
		// As in subtask: the newest attempt describes the running task.
		if acc.m.AttemptId == "" || id.attemptNumber > acc.attemptNumber {
			acc.attemptNumber = id.attemptNumber
			acc.m.AttemptNumber = id.attemptNumber
			acc.m.AttemptId, acc.m.JobName, acc.m.VertexName = id.attemptID, id.jobName, id.vertexName
		}
		ks.acc = acc
	}
	e.sets[k] = ks
	return ks
}

// metricName returns the metric name a series line starts with, or nil when the line does not
// start with one followed by labels or a blank.
func metricName(l []byte) []byte {
	i := 0
	for i < len(l) && nameByte(l[i], i == 0) {
		i++
	}
	if i == 0 || i == len(l) || (l[i] != '{' && l[i] != ' ' && l[i] != '\t') {
		return nil
	}
	return l[:i]
}

func nameByte(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || !first && c >= '0' && c <= '9'
}

// parseSeries reads what follows the metric name on a series line: the optional label set,
// the value and an optional timestamp (which the reporter does not write; it is ignored).
func parseSeries(rest []byte) (seriesLabels, float64, error) {
	var lbls seriesLabels
	if len(rest) > 0 && rest[0] == '{' {
		n, err := labelSetLen(rest)
		if err != nil {
			return nil, 0, err
		}
		lbls, rest = seriesLabels(rest[1:n-1]), rest[n:]
	}
	v, err := parseSample(rest)
	if err != nil {
		return nil, 0, err
	}
	return lbls, v, nil
}

// parseSample reads what follows the label set: the value and an optional timestamp.
func parseSample(rest []byte) (float64, error) {
	rest = rest[skipBlank(rest):]
	end := 0
	for end < len(rest) && rest[end] != ' ' && rest[end] != '\t' {
		end++
	}
	if end == 0 {
		return 0, errors.New("series without a value")
	}
	v, err := parseValue(rest[:end])
	if err != nil {
		return 0, err
	}
	if ts := bytes.TrimSpace(rest[end:]); len(ts) > 0 {
		if _, err := strconv.ParseInt(string(ts), 10, 64); err != nil {
			return 0, fmt.Errorf("bad timestamp %q", ts)
		}
	}
	return v, nil
}

// parseValue reads a sample value as the text format writes it: a Go float, or NaN, +Inf, -Inf.
func parseValue(b []byte) (float64, error) {
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", truncate(b, 40))
	}
	return v, nil
}

// labelSetLen checks the label set at the start of b ({name="value",...}, a trailing comma
// allowed, as the reporter writes it) and returns its length including both braces.
func labelSetLen(b []byte) (int, error) {
	i := 1
	for {
		i += skipBlank(b[i:])
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		start := i
		for i < len(b) && nameByte(b[i], i == start) && b[i] != ':' {
			i++
		}
		if i == start {
			return 0, fmt.Errorf("bad label name at %q", truncate(b[start:], 40))
		}
		i += skipBlank(b[i:])
		if i >= len(b) || b[i] != '=' {
			return 0, fmt.Errorf("label %q without =", b[start:i])
		}
		i++
		i += skipBlank(b[i:])
		if i >= len(b) || b[i] != '"' {
			return 0, fmt.Errorf("label %q: value not quoted", b[start:i-1])
		}
		i++
		for i < len(b) && b[i] != '"' {
			if b[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(b) {
			return 0, fmt.Errorf("label %q: value not closed", b[start:])
		}
		i++
		i += skipBlank(b[i:])
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		return 0, fmt.Errorf("expected , or } after label %q", truncate(b[start:], 40))
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// wanted says whether Parse reads the series family at all; everything else is skipped
// without decoding its labels. It must agree with Families and add.
func wanted(name []byte) bool {
	// The operator prefix extends the task prefix, so it is tried first.
	if suffix, ok := bytes.CutPrefix(name, []byte(prefixOperator)); ok {
		return operatorMetricWanted(suffix)
	}
	if suffix, ok := bytes.CutPrefix(name, []byte(prefixTask)); ok {
		return taskMetricWanted(suffix)
	}
	if suffix, ok := bytes.CutPrefix(name, []byte(prefixJVM)); ok {
		switch string(suffix) {
		case "CPU_Load", "Memory_Heap_Used", "Memory_Heap_Max", "Threads_Count",
			"GarbageCollector_All_Count", "GarbageCollector_All_Time", "GarbageCollector_All_TimeMsPerSecond":
			return true
		}
		// Any collector's cumulative figures, not only the known names (pre-1.19 sums).
		rest, ok := bytes.CutPrefix(suffix, []byte("GarbageCollector_"))
		return ok && (bytes.HasSuffix(rest, []byte("_Count")) || bytes.HasSuffix(rest, []byte("_Time")))
	}
	return false
}

func taskMetricWanted(suffix []byte) bool {
	// A switch on the conversion compares in place: string(suffix) passed as an argument
	// allocated a copy for every line of a long family name.
	switch string(suffix) {
	case "busyTimeMsPerSecond", "backPressuredTimeMsPerSecond", "idleTimeMsPerSecond",
		"numRecordsInPerSecond", "numRecordsOutPerSecond", "numBytesInPerSecond", "numBytesOutPerSecond",
		"checkpointStartDelayNanos", "mailboxLatencyMs",
		"Shuffle_Netty_Input_Buffers_inPoolUsage", "Shuffle_Netty_Output_Buffers_outPoolUsage",
		"buffers_inPoolUsage", "buffers_outPoolUsage":
		return true
	}
	return false
}

// subtaskAcc accumulates one subtask's series; the flags remember which source a value came
// from because series arrive in arbitrary order and the 2.x names win over the 1.x ones.
type subtaskAcc struct {
	m             *tmwardenv1.SubtaskMetrics
	inFromNetty   bool
	outFromNetty  bool
	pending       float64
	pendingSeen   bool
	kafkaLag      float64
	kafkaLagSeen  bool
	attemptNumber int32
}

// extractor accumulates one scrape's series into a Scrape. It never fails: series it cannot
// key are counted in Skipped and metrics it does not know are ignored.
type extractor struct {
	s *Scrape
	// subs is keyed by the job_id and task_id label bytes and the subtask index (built in key),
	// so looking up an existing subtask allocates nothing.
	subs      map[string]*subtaskAcc
	key       []byte
	sets      map[string]*knownSet
	strs      *Strings
	gcAll     struct{ count, time float64 }
	gcSum     struct{ count, time float64 }
	gcAllSeen [2]bool
}

func newExtractor() *extractor {
	return &extractor{
		s: &Scrape{JVM: JVM{
			CPULoad: math.NaN(), HeapUsed: math.NaN(), HeapMax: math.NaN(), Threads: math.NaN(),
			GCTimeMsPerSecond: math.NaN(),
		}},
		subs: make(map[string]*subtaskAcc),
		sets: make(map[string]*knownSet),
	}
}

// add takes one sample of a wanted family.
func (e *extractor) add(name []byte, lbls seriesLabels, v float64) {
	s := e.s
	switch {
	case bytes.HasPrefix(name, []byte(prefixTask)):
		if acc := e.subtask(lbls); acc != nil {
			e.apply(acc, name, lbls.get("quantile"), v)
		}
	case bytes.HasPrefix(name, []byte(prefixJVM)):
		e.noteTaskManager(lbls)
		switch suffix := name[len(prefixJVM):]; string(suffix) {
		case "CPU_Load":
			s.JVM.CPULoad = v
		case "Memory_Heap_Used":
			s.JVM.HeapUsed = v
		case "Memory_Heap_Max":
			s.JVM.HeapMax = v
		case "Threads_Count":
			s.JVM.Threads = v
		case "GarbageCollector_All_Count":
			e.gcAll.count, e.gcAllSeen[0] = v, true
		case "GarbageCollector_All_Time":
			e.gcAll.time, e.gcAllSeen[1] = v, true
		case "GarbageCollector_All_TimeMsPerSecond":
			s.JVM.GCTimeMsPerSecond = v
		default:
			if rest, ok := bytes.CutPrefix(suffix, []byte("GarbageCollector_")); ok && !math.IsNaN(v) {
				if bytes.HasSuffix(rest, []byte("_Count")) {
					e.gcSum.count += v
				} else if bytes.HasSuffix(rest, []byte("_Time")) {
					e.gcSum.time += v
				}
			}
		}
	}
}

// str is the label value as a string, shared with the previous scrape's when strs is set.
func (e *extractor) str(b []byte) string {
	if e.strs == nil {
		return string(b)
	}
	return e.strs.intern(b)
}

// Strings shares the subtasks' identity strings (job and vertex ids and names, attempt ids)
// and the label sets Parse keys its work by between the scrapes of one TaskManager: they
// hardly change, so each scrape need not copy them again, and every report the agent
// buffers during a coordinator outage (720 by default) would otherwise hold its own copies,
// some 180 bytes per subtask. It keeps the strings of the last scrape only. Not safe for
// concurrent use: one per TaskManager endpoint.
type Strings struct {
	prev, cur map[string]string
	// prevSets and curSets are the label sets of the last scrape and of this one, by key.
	prevSets, curSets map[string]*setIdentity
}

// set returns the identity the last scrape (or this one) resolved the label set key to, and
// the key as a shared string; nil when neither saw it. It is kept for the next scrape.
func (t *Strings) set(key []byte) (string, *setIdentity) {
	if id, ok := t.curSets[string(key)]; ok {
		return t.intern(key), id
	}
	id, ok := t.prevSets[string(key)]
	if !ok {
		return "", nil
	}
	k := t.intern(key)
	t.keepSet(k, id)
	return k, id
}

// keepSet records what the label set key resolved to in this scrape.
func (t *Strings) keepSet(key string, id *setIdentity) {
	if t.curSets == nil {
		t.curSets = make(map[string]*setIdentity, len(t.prevSets))
	}
	t.curSets[key] = id
}

func (t *Strings) intern(b []byte) string {
	if s, ok := t.cur[string(b)]; ok {
		return s
	}
	s, ok := t.prev[string(b)]
	if !ok {
		s = string(b)
	}
	if t.cur == nil {
		t.cur = make(map[string]string, len(t.prev))
	}
	t.cur[s] = s
	return s
}

// rotate ends a scrape: the strings it used are the ones the next scrape may share.
func (t *Strings) rotate() {
	t.prev, t.cur = t.cur, nil
	t.prevSets, t.curSets = t.curSets, nil
}

// apply takes one sample of a wanted task- or operator-scope family for its subtask; quantile
// is the series' quantile label (nil when it has none).
func (e *extractor) apply(acc *subtaskAcc, name, quantile []byte, v float64) {
	// The operator prefix extends the task prefix, so it is tried first.
	if suffix, ok := bytes.CutPrefix(name, []byte(prefixOperator)); ok {
		applyOperator(acc, suffix, v)
		return
	}
	if suffix := name[len(prefixTask):]; string(suffix) == "mailboxLatencyMs" {
		applyMailbox(acc.m, quantile, v)
	} else {
		applyTask(acc, suffix, v)
	}
}

func (e *extractor) finish() *Scrape {
	s := e.s
	// Before 1.19 there is no "All" group; the per-collector sums are the same quantity.
	s.JVM.GCCount, s.JVM.GCTimeMs = e.gcSum.count, e.gcSum.time
	if e.gcAllSeen[0] {
		s.JVM.GCCount = e.gcAll.count
	}
	if e.gcAllSeen[1] {
		s.JVM.GCTimeMs = e.gcAll.time
	}

	s.Subtasks = make([]*tmwardenv1.SubtaskMetrics, 0, len(e.subs))
	for _, acc := range e.subs {
		if acc.pendingSeen {
			acc.m.PendingRecords = &acc.pending
			acc.m.IsSource = true
		}
		if acc.kafkaLagSeen {
			acc.m.KafkaLag = &acc.kafkaLag
			acc.m.IsSource = true
		}
		s.Subtasks = append(s.Subtasks, acc.m)
	}
	slices.SortFunc(s.Subtasks, func(a, b *tmwardenv1.SubtaskMetrics) int {
		return cmp.Or(cmp.Compare(a.JobId, b.JobId), cmp.Compare(a.VertexId, b.VertexId),
			cmp.Compare(a.SubtaskIndex, b.SubtaskIndex))
	})
	return s
}

func (e *extractor) noteTaskManager(lbls seriesLabels) {
	if e.s.TaskManagerID != "" {
		return
	}
	e.s.TaskManagerID = string(lbls.get("tm_id"))
	e.s.Host = string(lbls.get("host"))
}

// subtaskLabels are the label values that name a subtask and its attempt, pointing into the
// series' label bytes (nil when the series lacks the label).
type subtaskLabels struct {
	jobID, vertexID, subtaskIndex, jobName, vertexName, attemptID, attemptNum, tmID, host []byte
}

// subtaskLabelsOf picks a subtask series' naming labels out of lbls.
func subtaskLabelsOf(lbls seriesLabels) (l subtaskLabels) {
	lbls.each(func(name, value []byte) {
		switch string(name) {
		case "job_id":
			l.jobID = value
		case "task_id":
			l.vertexID = value
		case "subtask_index":
			l.subtaskIndex = value
		case "job_name":
			l.jobName = value
		case "task_name":
			l.vertexName = value
		case "task_attempt_id":
			l.attemptID = value
		case "task_attempt_num":
			l.attemptNum = value
		case "tm_id":
			l.tmID = value
		case "host":
			l.host = value
		}
	})
	return l
}

// subtask finds or creates the accumulator for the series' (job_id, task_id, subtask_index).
// Label values are converted to strings only when a subtask is new or its attempt changes.
func (e *extractor) subtask(lbls seriesLabels) *subtaskAcc {
	s := e.s
	l := subtaskLabelsOf(lbls)
	n, ok := subtaskIndex(l.subtaskIndex)
	if len(l.jobID) == 0 || len(l.vertexID) == 0 || !ok {
		s.Skipped++
		return nil
	}
	e.key = append(append(append(e.key[:0], l.jobID...), 0), l.vertexID...)
	e.key = binary.LittleEndian.AppendUint32(append(e.key, 0), uint32(n))
	acc := e.subs[string(e.key)]
	if acc == nil {
		if s.TaskManagerID == "" && len(l.tmID) > 0 {
			s.TaskManagerID, s.Host = string(l.tmID), string(l.host)
		}
		acc = &subtaskAcc{m: newSubtask(SubtaskKey{JobID: e.str(l.jobID), VertexID: e.str(l.vertexID), SubtaskIndex: int32(n)})}
		e.subs[string(e.key)] = acc
	}
	// Mid-failover a scrape can hold series of two attempts; the newest attempt describes the
	// running task.
	an, _ := strconv.ParseInt(string(l.attemptNum), 10, 32)
	if acc.m.AttemptId == "" || int32(an) > acc.attemptNumber {
		acc.attemptNumber = int32(an)
		acc.m.AttemptNumber = int32(an)
		acc.m.AttemptId = e.str(l.attemptID)
		acc.m.JobName = e.str(l.jobName)
		acc.m.VertexName = e.str(l.vertexName)
	}
	return acc
}

// subtaskIndex reads a subtask_index label: decimal digits that fit an int32.
func subtaskIndex(b []byte) (int32, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := int32(0)
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int32(c-'0')
	}
	return n, true
}

func newSubtask(k SubtaskKey) *tmwardenv1.SubtaskMetrics {
	nan := math.NaN()
	return &tmwardenv1.SubtaskMetrics{
		JobId: k.JobID, VertexId: k.VertexID, SubtaskIndex: k.SubtaskIndex,
		BusyMsPerSecond: nan, BackpressuredMsPerSecond: nan, IdleMsPerSecond: nan,
		RecordsInPerSecond: nan, RecordsOutPerSecond: nan, BytesInPerSecond: nan, BytesOutPerSecond: nan,
		InputPoolUsage: nan, OutputPoolUsage: nan,
		MailboxLatencyMsP50: nan, MailboxLatencyMsP99: nan, CheckpointStartDelayMs: nan,
	}
}

func applyTask(acc *subtaskAcc, suffix []byte, v float64) {
	m := acc.m
	switch string(suffix) {
	case "busyTimeMsPerSecond":
		m.BusyMsPerSecond = v
	case "backPressuredTimeMsPerSecond":
		m.BackpressuredMsPerSecond = v
	case "idleTimeMsPerSecond":
		m.IdleMsPerSecond = v
	case "numRecordsInPerSecond":
		m.RecordsInPerSecond = v
	case "numRecordsOutPerSecond":
		m.RecordsOutPerSecond = v
	case "numBytesInPerSecond":
		m.BytesInPerSecond = v
	case "numBytesOutPerSecond":
		m.BytesOutPerSecond = v
	case "checkpointStartDelayNanos":
		m.CheckpointStartDelayMs = v / 1e6
	case "Shuffle_Netty_Input_Buffers_inPoolUsage":
		m.InputPoolUsage, acc.inFromNetty = v, true
	case "Shuffle_Netty_Output_Buffers_outPoolUsage":
		m.OutputPoolUsage, acc.outFromNetty = v, true
	case "buffers_inPoolUsage": // 1.x only, removed in 2.0
		if !acc.inFromNetty {
			m.InputPoolUsage = v
		}
	case "buffers_outPoolUsage":
		if !acc.outFromNetty {
			m.OutputPoolUsage = v
		}
	}
}

func operatorMetricWanted(suffix []byte) bool {
	switch string(suffix) {
	case "pendingRecords", "KafkaSourceReader_KafkaConsumer_records_lag_max", "sourceIdleTime", "currentEmitEventTimeLag":
		return true
	}
	return false
}

func applyOperator(acc *subtaskAcc, suffix []byte, v float64) {
	switch string(suffix) {
	case "pendingRecords":
		// A chain normally holds one source; summing covers multi-source chains.
		if !math.IsNaN(v) {
			acc.pending += v
			acc.pendingSeen = true
		}
	case "KafkaSourceReader_KafkaConsumer_records_lag_max":
		if !math.IsNaN(v) && (!acc.kafkaLagSeen || v > acc.kafkaLag) {
			acc.kafkaLag = v
			acc.kafkaLagSeen = true
		}
	case "sourceIdleTime", "currentEmitEventTimeLag":
		// Only FLIP-27 source readers register these.
		acc.m.IsSource = true
	}
}

// applyMailbox takes one quantile of the mailboxLatencyMs summary.
func applyMailbox(sm *tmwardenv1.SubtaskMetrics, quantile []byte, v float64) {
	q, err := strconv.ParseFloat(string(quantile), 64)
	if err != nil {
		return
	}
	switch q {
	case 0.5:
		sm.MailboxLatencyMsP50 = v
	case 0.99:
		sm.MailboxLatencyMsP99 = v
	}
}

// Stats turns the scraped JVM figures into the report's JvmStats. GC rates come from the
// previous scrape of the same TaskManager; without one (or after a restart reset the counters)
// they are NaN unless Flink exports its own rate.
func (j JVM) Stats(prev *JVM, elapsed time.Duration) *tmwardenv1.JvmStats {
	st := &tmwardenv1.JvmStats{
		CpuLoad:           j.CPULoad,
		HeapUsedBytes:     toUint(j.HeapUsed),
		HeapMaxBytes:      toUint(j.HeapMax),
		Threads:           uint32(toUint(j.Threads)),
		GcTimeMsPerSecond: j.GCTimeMsPerSecond,
		GcCountPerSecond:  math.NaN(),
	}
	if prev == nil || elapsed <= 0 {
		return st
	}
	sec := elapsed.Seconds()
	if dc := j.GCCount - prev.GCCount; dc >= 0 {
		st.GcCountPerSecond = dc / sec
	}
	if math.IsNaN(st.GcTimeMsPerSecond) {
		if dt := j.GCTimeMs - prev.GCTimeMs; dt >= 0 {
			st.GcTimeMsPerSecond = dt / sec
		}
	}
	return st
}

func toUint(v float64) uint64 {
	if math.IsNaN(v) || v <= 0 {
		return 0
	}
	if v >= math.MaxUint64 {
		return math.MaxUint64
	}
	return uint64(v)
}

// seriesLabels is the label part of a series line labelSetLen has accepted, between the
// braces: name="value" pairs separated by commas, values in the text format's escaping.
type seriesLabels []byte

// each calls fn with every label's name and (unescaped) value. Values without a backslash,
// which is all of them unless the reporter's label filter is off, are passed in place, so they
// share the body's memory: copy what must outlive the scrape.
func (l seriesLabels) each(fn func(name, value []byte)) {
	for len(l) > 0 {
		l = l[skipBlank(l):]
		eq := bytes.IndexByte(l, '=')
		if eq < 0 {
			return
		}
		name := bytes.TrimRight(l[:eq], " \t")
		l = l[eq+1:]
		q := bytes.IndexByte(l, '"')
		if q < 0 {
			return
		}
		l = l[q+1:]
		// The value ends at the first quote not escaped by a backslash.
		end, esc := 0, false
		for end < len(l) && l[end] != '"' {
			if l[end] == '\\' {
				esc = true
				end++
			}
			end++
		}
		if end > len(l) {
			return
		}
		value := l[:end]
		if esc {
			value = unescapeLabel(make([]byte, 0, len(value)), value)
		}
		fn(name, value)
		if end == len(l) {
			return
		}
		l = l[end+1:]
		l = l[skipBlank(l):]
		if len(l) > 0 && l[0] == ',' {
			l = l[1:]
		}
	}
}

// get returns the value of the named label (in place, see each), nil when absent.
func (l seriesLabels) get(want string) []byte {
	var out []byte
	l.each(func(name, value []byte) {
		if out == nil && string(name) == want {
			out = value
		}
	})
	return out
}

func skipBlank(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

// unescapeLabel undoes the text format's label value escapes: \\, \" and \n.
func unescapeLabel(dst, v []byte) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) {
			i++
			switch v[i] {
			case 'n':
				c = '\n'
			default:
				c = v[i]
			}
		}
		dst = append(dst, c)
	}
	return dst
}
