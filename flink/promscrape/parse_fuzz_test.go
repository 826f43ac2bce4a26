package promscrape

import (
	"bytes"
	"testing"
	"unsafe"
)

// FuzzParse feeds arbitrary scrape bodies to the parser and extractor: they must return a
// result or an error, never panic, and never invent a subtask without its identity.
func FuzzParse(f *testing.F) {
	// The seed corpus in testdata/fuzz/FuzzParse holds excerpts of Flink 1.20's and 2.x's real
	// output (a few families each, about 6 KB). Whole scrapes (150 KB) would stall the fuzzer:
	// it minimises every new interesting input, and minimising that much takes the whole run.
	f.Add([]byte("# TYPE flink_taskmanager_job_task_busyTimeMsPerSecond gauge\nflink_taskmanager_job_task_busyTimeMsPerSecond{job_id=\"j\",task_id=\"t\",subtask_index=\"0\",} NaN\n"))
	f.Add([]byte("flink_taskmanager_Status_JVM_CPU_Load{host=\"h\",tm_id=\"t\",} 0.5\n"))
	f.Add([]byte("garbage{{{\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := Parse(bytes.NewReader(body))
		if err != nil || s == nil {
			return
		}
		for _, st := range s.Subtasks {
			if st.JobId == "" || st.VertexId == "" {
				t.Fatalf("subtask without identity from %q", body)
			}
		}
	})
}

// TestFamiliesAreWanted keeps the reporter filter (Families) and the parser's own filter
// (wanted) in step: a family asked for but then skipped would be fetched for nothing, and one
// read but not asked for would vanish when filter_families is on.
func TestFamiliesAreWanted(t *testing.T) {
	for _, f := range Families() {
		if !wanted([]byte(f)) {
			t.Errorf("Families lists %s but Parse skips it", f)
		}
	}
	for _, f := range []string{"flink_taskmanager_job_task_numRecordsIn", "flink_taskmanager_Status_JVM_Memory_NonHeap_Used",
		"flink_taskmanager_job_task_operator_numRecordsIn", "flink_taskmanager_job_task_mailboxLatencyMs_count"} {
		if wanted([]byte(f)) {
			t.Errorf("Parse reads %s, which it never uses", f)
		}
	}
}

// TestStringsKeepOnlyTheLastScrape: a string is shared with the next scrape, and forgotten
// once a scrape went by without it (a finished job's ids do not stay for the agent's life).
func TestStringsKeepOnlyTheLastScrape(t *testing.T) {
	var st Strings
	a := st.intern([]byte("job-a"))
	st.rotate()
	if b := st.intern([]byte("job-a")); unsafe.StringData(a) != unsafe.StringData(b) {
		t.Error("the next scrape got a new copy")
	}
	st.rotate()
	st.intern([]byte("job-b"))
	st.rotate()
	if _, kept := st.prev["job-a"]; kept || len(st.prev) != 1 {
		t.Errorf("after a scrape without it, kept %v: %v", kept, st.prev)
	}
}
