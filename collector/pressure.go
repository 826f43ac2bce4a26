package collector

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// psiLine is one line of a PSI file; averages are percentages as the kernel writes them and
// total is cumulative stall time in microseconds.
type psiLine struct {
	avg10, avg60, avg300 float64
	total                uint64
}

// psiFile is a parsed /proc/pressure/* or cgroup v2 *.pressure file. The system-wide cpu file
// had no "full" line before Linux 5.13.
type psiFile struct {
	some, full psiLine
	hasFull    bool
}

// parsePSI reads the PSI format: "some avg10=0.00 avg60=0.00 avg300=0.00 total=0", then
// optionally the same for "full".
func parsePSI(r io.Reader) (psiFile, error) {
	var f psiFile
	var hasSome bool
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		var l psiLine
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return f, fmt.Errorf("psi line %d: field %q is not key=value", n, kv)
			}
			var err error
			switch k {
			case "avg10":
				l.avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				l.avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				l.avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				l.total, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				return f, fmt.Errorf("psi line %d: %s: %w", n, k, err)
			}
		}
		switch fields[0] {
		case "some":
			f.some, hasSome = l, true
		case "full":
			f.full, f.hasFull = l, true
		default:
			return f, fmt.Errorf("psi line %d: unknown kind %q (want some or full)", n, fields[0])
		}
	}
	if err := sc.Err(); err != nil {
		return f, fmt.Errorf("reading psi: %w", err)
	}
	if !hasSome {
		return f, errors.New("psi: no \"some\" line")
	}
	return f, nil
}

// readPSI parses the PSI file at path.
func readPSI(path string) (psiFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return psiFile{}, err
	}
	defer fh.Close()
	f, err := parsePSI(fh)
	if err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// psiStat turns a PSI reading into the report's form: averages as shares in [0, 1], and the
// share of wall time stalled since prev (nil on the first reading) over elapsed.
func psiStat(cur psiFile, prev *psiFile, elapsed time.Duration) *tmwardenv1.PressureStat {
	st := &tmwardenv1.PressureStat{
		SomeAvg10: cur.some.avg10 / 100, SomeAvg60: cur.some.avg60 / 100,
		FullAvg10: cur.full.avg10 / 100, FullAvg60: cur.full.avg60 / 100,
	}
	if prev != nil && elapsed > 0 {
		us := float64(elapsed.Microseconds())
		share := func(a, b uint64) float64 {
			if b < a {
				return 0
			}
			return min(float64(b-a)/us, 1)
		}
		st.SomeShare = share(prev.some.total, cur.some.total)
		st.FullShare = share(prev.full.total, cur.full.total)
	}
	return st
}

// psiUnsupported reports whether err means the kernel has no PSI: the files are missing
// (CONFIG_PSI off) or reading them fails with EOPNOTSUPP (booted with psi=0).
func psiUnsupported(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EOPNOTSUPP)
}

var psiResources = [...]string{"cpu", "memory", "io"}

// pressureCollector reports the machine-wide PSI. Besides the kernel's decaying averages it
// measures the stall share over exactly the report interval from the total counters, so the
// coordinator compares nodes over the same window.
type pressureCollector struct {
	dir    string
	prev   [len(psiResources)]*psiFile
	prevAt time.Time
	now    func() time.Time
}

func newPressureCollector(o Options) (Collector, error) {
	return &pressureCollector{dir: filepath.Join(procRoot(o.Config.Paths), "pressure"), now: time.Now}, nil
}

func procRoot(p Paths) string {
	if p.ProcFS == "" {
		return "/proc"
	}
	return p.ProcFS
}

func (c *pressureCollector) Collect(_ context.Context, r *tmwardenv1.Report) error {
	if r.Host == nil {
		r.Host = &tmwardenv1.HostSignals{}
	}
	now := c.now()
	elapsed := now.Sub(c.prevAt)
	p := &tmwardenv1.Pressure{}
	var missing []string
	var cur [len(psiResources)]*psiFile
	for i, res := range psiResources {
		f, err := readPSI(filepath.Join(c.dir, res))
		if err != nil {
			if psiUnsupported(err) {
				missing = append(missing, res+": kernel has no PSI (needs CONFIG_PSI and no psi=0 on the command line)")
			} else {
				missing = append(missing, fmt.Sprintf("%s: %v", res, err))
			}
			continue
		}
		cur[i] = &f
		st := psiStat(f, c.prev[i], elapsed)
		switch res {
		case "cpu":
			p.Cpu = st
		case "memory":
			p.Memory = st
		case "io":
			p.Io = st
		}
	}
	c.prev, c.prevAt = cur, now
	p.Available = p.Cpu != nil || p.Memory != nil || p.Io != nil
	r.Host.Pressure = p
	if len(missing) > 0 {
		return Degradedf("pressure: %s", strings.Join(missing, "; "))
	}
	return nil
}
