package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuOf is the CPU time pid has used so far (user and system, every thread), in seconds.
func cpuOf(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it are fixed.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

// saveProfile fetches one profile from the coordinator's pprof address into path.
func saveProfile(url, path string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Printf("profile: %v", err)
		return
	}
	c := http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		log.Printf("profile %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Printf("profile %s: %s", url, resp.Status)
		return
	}
	f, err := os.Create(path)
	if err != nil {
		log.Printf("profile: %v", err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		log.Printf("profile %s: %v", url, err)
	}
}

// memoryBreakdown prints where the coordinator's memory is (the runtime's MemStats, as pprof's
// heap?debug=1 shows them) and how many goroutines it runs: RSS is more than the heap profile.
func memoryBreakdown(pprofAddr string) string {
	c := http.Client{Timeout: time.Minute}
	get := func(path string) string {
		resp, err := c.Get("http://" + pprofAddr + path)
		if err != nil {
			log.Printf("pprof %s: %v", path, err)
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var fields []string
	for _, l := range strings.Split(get("/debug/pprof/heap?debug=1"), "\n") {
		for _, k := range []string{"HeapInuse", "HeapIdle", "HeapReleased", "Stack", "GCSys", "NextGC", "NumGC"} {
			if v, ok := strings.CutPrefix(l, "# "+k+" = "); ok {
				fields = append(fields, k+" "+humanBytes(k, v))
			}
		}
	}
	g, _, _ := strings.Cut(get("/debug/pprof/goroutine?debug=1"), "\n")
	return strings.Join(fields, ", ") + "; " + strings.TrimPrefix(g, "goroutine profile: ")
}

// humanBytes turns MemStats' byte counts ("1234" or "used / sys") into MiB.
func humanBytes(k, v string) string {
	if k == "NumGC" {
		return v
	}
	var out []string
	for _, f := range strings.Split(v, " / ") {
		n, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return v
		}
		out = append(out, fmt.Sprintf("%.0f MiB", n/(1<<20)))
	}
	return strings.Join(out, " / ")
}

// parts names the coordinator's work by the function whose subtree holds it; a sample counts
// in every part on its stack (cumulative), so the shares need not add up to 100 %.
var parts = []struct{ name, fn string }{
	{"ingest: gRPC receive, decode, ack (whole stream)", "coordinator.(*Coordinator).receiveLoop"},
	{"ingest: Coordinator.Ingest", "coordinator.(*Coordinator).Ingest"},
	{"ingest: store write per report", "store.(*Store).PutNode"},
	{"ingest: model.Observe", "model.(*Model).Observe"},
	{"ingest: topology.ObserveReport", "topology.(*Topology).ObserveReport"},
	{"connect: Hello, register, events", "coordinator.(*Coordinator).register"},
	{"event log appends", "store.(*Store).AppendEvent"},
	{"gRPC transport (HTTP/2 frames, syscalls)", "google.golang.org/grpc/internal/transport.(*http2Server).HandleStreams"},
	{"gRPC send (acks)", "coordinator.sendLoop"},
	{"evaluation round", "coordinator.(*Coordinator).evaluate"},
	{"garbage collector", "runtime.gcBgMarkWorker"},
}

// summarise prints what dominates the coordinator's CPU and heap at one fleet size, from the
// profiles saveProfile kept, with go tool pprof (the toolchain's own reader).
func summarise(bin, dir string, nodes int) {
	cpu := filepath.Join(dir, fmt.Sprintf("cpu-%d.pprof", nodes))
	heap := filepath.Join(dir, fmt.Sprintf("heap-%d.pprof", nodes))
	if top, err := pprofTop(bin, cpu, "-cum"); err == nil {
		fmt.Printf("  coordinator CPU by part (cumulative share of the profile; %s)\n", cpu)
		for _, p := range parts {
			if v, ok := top[p.fn]; ok {
				fmt.Printf("    %-50s %6.1f %%\n", p.name, v)
			}
		}
	} else {
		log.Printf("reading %s: %v", cpu, err)
	}
	allocs := filepath.Join(dir, fmt.Sprintf("allocs-%d.pprof", nodes))
	for _, args := range [][]string{{"-top", "-nodecount=12", bin, cpu}, {"-top", "-sample_index=inuse_space", "-nodecount=12", bin, heap},
		{"-top", "-sample_index=alloc_space", "-nodecount=12", bin, allocs}} {
		out, err := exec.Command("go", append([]string{"tool", "pprof"}, args...)...).Output()
		if err != nil {
			log.Printf("go tool pprof %s: %v", strings.Join(args, " "), err)
			continue
		}
		fmt.Printf("  go tool pprof %s\n", strings.Join(args, " "))
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			fmt.Printf("    %s\n", l)
		}
	}
}

// pprofTop reads go tool pprof -top's cumulative percentages, keyed by function name with the
// module path of tmwarden cut off.
func pprofTop(bin, profile, sort string) (map[string]float64, error) {
	out, err := exec.Command("go", "tool", "pprof", "-top", sort, "-nodecount=100000", bin, profile).Output()
	if err != nil {
		return nil, err
	}
	top := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// flat flat% sum% cum cum% name...
		if len(f) < 6 || !strings.HasSuffix(f[4], "%") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err != nil {
			continue
		}
		name := strings.Join(f[5:], " ")
		name = strings.TrimPrefix(name, "github.com/tmwarden/tmwarden/coordinator/")
		name = strings.TrimPrefix(name, "github.com/tmwarden/tmwarden/")
		top[name] = v
	}
	return top, sc.Err()
}
