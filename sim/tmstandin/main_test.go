package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestScrapeIsSentWholeWithItsLength: like Flink's reporter, the stand-in answers a scrape with
// a Content-Length and the whole body, not a chunked stream.
func TestScrapeIsSentWholeWithItsLength(t *testing.T) {
	body := strings.Repeat("flink_taskmanager_job_task_busyTimeMsPerSecond{subtask_index=\"1\",} 12.0\n", 3000)
	srv := httptest.NewServer(metricsHandler(func(w io.Writer) error {
		// Written in small pieces, as sim/flink writes a scrape.
		for line := range strings.Lines(body) {
			if _, err := io.WriteString(w, line); err != nil {
				return err
			}
		}
		return nil
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != body {
		t.Fatalf("body of %d bytes, want %d", len(got), len(body))
	}
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
		t.Fatalf("Content-Length %d, Transfer-Encoding %q: want the length %d and no chunking", resp.ContentLength, resp.TransferEncoding, len(body))
	}
}
