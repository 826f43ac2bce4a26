package rest

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func decodeStrict(t *testing.T, data []byte, out any) {
	t.Helper()
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("decode into %T: %v", out, err)
	}
}

// Every JSON sample in the reference folder decodes: the ones the client reads into its types
// (with the fields tmwarden uses checked), the others at least as JSON.
func TestReferenceRESTSamplesDecode(t *testing.T) {
	dir := refPath(t, "rest-samples")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples in %s: %v", dir, err)
	}
	typed := map[string]func(t *testing.T, data []byte){
		"synth-GET-overview.json": func(t *testing.T, b []byte) {
			var v ClusterOverview
			decodeStrict(t, b, &v)
			if v.TaskManagers != 2 || v.FlinkVersion != "1.20.1" {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs.json": func(t *testing.T, b []byte) {
			var v struct{ Jobs []JobIDStatus }
			decodeStrict(t, b, &v)
			if len(v.Jobs) != 1 || v.Jobs[0].Status != "RUNNING" {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-overview.json": func(t *testing.T, b []byte) {
			var v struct{ Jobs []JobOverview }
			decodeStrict(t, b, &v)
			if len(v.Jobs) != 1 || v.Jobs[0].Name != "orders-enrichment" || v.Jobs[0].Tasks["running"] != 4 {
				t.Errorf("%+v", v)
			}
		},
		"flink-test-JobDetailsTest-jobs-overview-entry.json": func(t *testing.T, b []byte) {
			var v JobOverview
			decodeStrict(t, b, &v)
			if v.ID != "7a7c3291accebd10b6be8d4f8c8d8dfc" || v.Tasks["total"] != 42 {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-jobid.json": func(t *testing.T, b []byte) {
			var v JobDetails
			decodeStrict(t, b, &v)
			if len(v.Vertices) != 2 || v.Vertices[0].Name != "Source: orders-kafka" || v.Vertices[0].Metrics.AccumulatedBusy != 1.8322011e7 {
				t.Errorf("%+v", v)
			}
		},
		"real-dinky-flink1.17-GET-jobs-jobid.json": func(t *testing.T, b []byte) {
			var v JobDetails
			decodeStrict(t, b, &v)
			if len(v.Vertices) == 0 || v.ID == "" {
				t.Fatalf("%+v", v)
			}
			nan := false
			for _, vx := range v.Vertices {
				nan = nan || math.IsNaN(float64(vx.Metrics.AccumulatedBusy))
			}
			if !nan {
				t.Error(`the real 1.17 sample's "accumulated-busy-time":"NaN" did not decode to NaN`)
			}
		},
		"synth-GET-jobs-jobid-vertices-vertexid.json": func(t *testing.T, b []byte) {
			var v VertexDetails
			decodeStrict(t, b, &v)
			if len(v.Subtasks) != 2 || v.Subtasks[1].TaskManagerID != "10.0.1.23:36471-7b3c9e" || v.Subtasks[1].Host() != "10.0.1.23" {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-jobid-vertices-vertexid-subtasks-1.json": func(t *testing.T, b []byte) {
			var v Subtask
			decodeStrict(t, b, &v)
			if v.Index != 1 || v.Endpoint != "10.0.1.23:40127" || v.Host() != "10.0.1.23" {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-jobid-vertices-vertexid-taskmanagers.json": func(t *testing.T, b []byte) {
			var v VertexTaskManagers
			decodeStrict(t, b, &v)
			if len(v.TaskManagers) == 0 || v.TaskManagers[0].TaskManagerID == "" || v.TaskManagers[0].Host() == "" {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-jobid-vertices-vertexid-backpressure.json": func(t *testing.T, b []byte) {
			var v BackPressure
			decodeStrict(t, b, &v)
			if v.Level != "high" || len(v.Subtasks) != 2 || v.Subtasks[1].Ratio != 0.882 {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-jobid-vertices-vertexid-backpressure-deprecated.json": func(t *testing.T, b []byte) {
			var v BackPressure
			decodeStrict(t, b, &v)
			if v.Status != "deprecated" || len(v.Subtasks) != 0 {
				t.Errorf("%+v", v)
			}
		},
		"real-dinky-flink1.17-GET-jobs-jobid-vertices-vid-backpressure.json": func(t *testing.T, b []byte) {
			var v BackPressure
			decodeStrict(t, b, &v)
			if v.Level != "ok" || v.LevelCamel != "ok" || len(v.Subtasks) != 1 || v.Subtasks[0].IdleRatio != 1 {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-jobid-checkpoints.json": func(t *testing.T, b []byte) {
			var v CheckpointStats
			decodeStrict(t, b, &v)
			c := v.Latest.Completed
			if c == nil || c.ID != 1436 || c.ExternalPath != "s3://flink-state/checkpoints/5e20cb6b0f357591171dfcca2eea09de/chk-1436" ||
				c.CheckpointedSize != 82466 || c.StateSize != 1624475466 || c.EndToEndDuration != 1789 {
				t.Errorf("latest completed = %+v", c)
			}
			if v.Latest.Savepoint != nil || v.Latest.Failed == nil || v.Latest.Failed.FailureMessage == "" || v.Counts.Completed != 1432 {
				t.Errorf("latest = %+v counts %+v", v.Latest, v.Counts)
			}
			if len(v.History) == 0 || v.History[0].ClassName != "in_progress" {
				t.Errorf("history = %+v", v.History)
			}
		},
		"synth-POST-jobs-jobid-checkpoints-response-202.json": func(t *testing.T, b []byte) {
			var v TriggerResponse
			decodeStrict(t, b, &v)
			if len(v.RequestID) != 32 {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-jobid-checkpoints-triggerid-completed.json": func(t *testing.T, b []byte) {
			var v CheckpointOperation
			decodeStrict(t, b, &v)
			if v.Status.ID != "COMPLETED" || v.Operation == nil || v.Operation.CheckpointID == nil || *v.Operation.CheckpointID != 1438 {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-jobid-checkpoints-triggerid-inprogress.json": func(t *testing.T, b []byte) {
			var v CheckpointOperation
			decodeStrict(t, b, &v)
			if v.Status.ID != "IN_PROGRESS" || v.Operation != nil {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-jobs-jobid-checkpoints-triggerid-failed.json": func(t *testing.T, b []byte) {
			var v CheckpointOperation
			decodeStrict(t, b, &v)
			if v.Operation == nil || v.Operation.FailureCause == nil || !strings.Contains(v.Operation.FailureCause.StackTrace, "CheckpointException") {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-taskmanagers.json": func(t *testing.T, b []byte) {
			var v struct{ TaskManagers []TaskManagerInfo }
			decodeStrict(t, b, &v)
			if len(v.TaskManagers) != 2 || v.TaskManagers[0].RPCHost() != "10.0.1.23" || v.TaskManagers[0].Data != 40127 {
				t.Errorf("%+v", v)
			}
		},
		"synth-GET-taskmanagers-tmid.json": func(t *testing.T, b []byte) {
			var v TaskManagerDetails
			decodeStrict(t, b, &v)
			if v.ID != "10.0.1.23:36471-7b3c9e" || v.Metrics.HeapMax == 0 || len(v.Metrics.GarbageCollectors) == 0 {
				t.Errorf("%+v", v)
			}
		},
		"synth-error-404.json": func(t *testing.T, b []byte) {
			var v struct{ Errors []string }
			decodeStrict(t, b, &v)
			if len(v.Errors) != 1 || !strings.Contains(v.Errors[0], "NotFoundException") {
				t.Errorf("%+v", v)
			}
		},
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if check, ok := typed[name]; ok {
				seen[name] = true
				check(t, data)
				return
			}
			// Not an endpoint the client reads (savepoints, config, metrics lists): still JSON.
			dec := json.NewDecoder(bytes.NewReader(data))
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
		})
	}
	for name := range typed {
		if !seen[name] {
			t.Errorf("sample %s expected in %s but missing", name, dir)
		}
	}
}
