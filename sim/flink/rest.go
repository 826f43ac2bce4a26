package flinksim

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// jdouble is a Java double as Jackson writes it: Double.toString digits, NaN as the string "NaN".
type jdouble float64

func (d jdouble) MarshalJSON() ([]byte, error) {
	f := float64(d)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte(`"` + JavaDouble(f) + `"`), nil
	}
	return []byte(JavaDouble(f)), nil
}

type ioMetrics struct {
	ReadBytes         int64   `json:"read-bytes"`
	ReadBytesComplete bool    `json:"read-bytes-complete"`
	WriteBytes        int64   `json:"write-bytes"`
	WriteBytesCompl   bool    `json:"write-bytes-complete"`
	ReadRecords       int64   `json:"read-records"`
	ReadRecordsCompl  bool    `json:"read-records-complete"`
	WriteRecords      int64   `json:"write-records"`
	WriteRecordsCompl bool    `json:"write-records-complete"`
	AccBP             int64   `json:"accumulated-backpressured-time"`
	AccIdle           int64   `json:"accumulated-idle-time"`
	AccBusy           jdouble `json:"accumulated-busy-time"`
}

func (m *ioMetrics) add(st *subtask) {
	m.ReadBytes += int64(st.bytesIn)
	m.WriteBytes += int64(st.bytesOut)
	m.ReadRecords += int64(st.recIn)
	m.WriteRecords += int64(st.recOut)
	m.AccBP += int64(st.accBP)
	m.AccIdle += int64(st.accIdle)
	m.AccBusy += jdouble(math.Floor(st.accBusy))
	m.ReadBytesComplete, m.WriteBytesCompl, m.ReadRecordsCompl, m.WriteRecordsCompl = true, true, true, true
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// RESTHandler serves the JobManager REST endpoints the stand-in models.
func (c *Cluster) RESTHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /overview", c.getOverview)
	mux.HandleFunc("GET /jobs", c.getJobs)
	mux.HandleFunc("GET /jobs/overview", c.getJobsOverview)
	mux.HandleFunc("GET /jobs/{jobid}", c.withJob(c.getJob))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}", c.withVertex(c.getVertex))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/taskmanagers", c.withVertex(c.getVertexTaskManagers))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/backpressure", c.withVertex(c.getBackpressure))
	mux.HandleFunc("GET /jobs/{jobid}/checkpoints", c.withJob(c.getCheckpoints))
	mux.HandleFunc("POST /jobs/{jobid}/checkpoints", c.withJob(c.postCheckpoint))
	mux.HandleFunc("GET /jobs/{jobid}/checkpoints/{triggerid}", c.withJob(c.getCheckpointTrigger))
	mux.HandleFunc("GET /taskmanagers", c.getTaskManagers)
	mux.HandleFunc("GET /taskmanagers/{tmid}", c.getTaskManager)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "Not found: "+r.URL.Path)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string][]string{"errors": {msg}})
}

func (c *Cluster) withJob(h func(http.ResponseWriter, *http.Request, *job)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.advance()
		jid := r.PathValue("jobid")
		for _, j := range c.jobs {
			if j.id == jid {
				h(w, r, j)
				return
			}
		}
		writeErr(w, http.StatusNotFound, "org.apache.flink.runtime.rest.NotFoundException: Job "+jid+" not found")
	}
}

func (c *Cluster) withVertex(h func(http.ResponseWriter, *http.Request, *job, *vertex)) http.HandlerFunc {
	return c.withJob(func(w http.ResponseWriter, r *http.Request, j *job) {
		vid := r.PathValue("vertexid")
		for _, v := range j.vertices {
			if v.id == vid {
				h(w, r, j, v)
				return
			}
		}
		writeErr(w, http.StatusNotFound, "org.apache.flink.runtime.rest.NotFoundException: JobVertexId "+vid+" not found")
	})
}

func (c *Cluster) getOverview(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	slots, used := 0, 0
	for _, tm := range c.tms {
		slots += tm.slots
		used += c.usedSlots(tm)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"taskmanagers": len(c.tms), "slots-total": slots, "slots-available": slots - used,
		"jobs-running": len(c.jobs), "jobs-finished": 0, "jobs-cancelled": 0, "jobs-failed": 0,
		"flink-version": c.version, "flink-commit": "sim",
	})
}

func (c *Cluster) usedSlots(tm *taskManager) int {
	seen := map[string]bool{}
	for _, j := range c.jobs {
		for _, v := range j.vertices {
			for _, st := range v.subtasks {
				if st.tm == tm {
					seen[j.id+"/"+strconv.Itoa(st.index)] = true
				}
			}
		}
	}
	return len(seen)
}

func (c *Cluster) getJobs(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	type entry struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	out := struct {
		Jobs []entry `json:"jobs"`
	}{Jobs: []entry{}}
	for _, j := range c.jobs {
		out.Jobs = append(out.Jobs, entry{j.id, "RUNNING"})
	}
	writeJSON(w, http.StatusOK, out)
}

func taskCounts(n int, lower bool) map[string]int {
	states := []string{"CREATED", "SCHEDULED", "DEPLOYING", "RUNNING", "FINISHED", "CANCELING", "CANCELED", "FAILED", "RECONCILING", "INITIALIZING"}
	m := map[string]int{}
	for _, s := range states {
		if lower {
			s = strings.ToLower(s)
		}
		m[s] = 0
	}
	if lower {
		m["running"], m["total"] = n, n
	} else {
		m["RUNNING"] = n
	}
	return m
}

func (c *Cluster) getJobsOverview(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.advance()
	jobs := []map[string]any{}
	for _, j := range c.jobs {
		n := 0
		for _, v := range j.vertices {
			n += len(v.subtasks)
		}
		jobs = append(jobs, map[string]any{
			"jid": j.id, "name": j.name, "start-time": ms(j.start), "end-time": -1,
			"duration": now.Sub(j.start).Milliseconds(), "state": "RUNNING", "last-modification": ms(j.start),
			"jobType": "STREAMING", "schedulerType": "Default", "tasks": taskCounts(n, true), "pending-operators": 0,
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": jobs})
}

func (c *Cluster) getJob(w http.ResponseWriter, _ *http.Request, j *job) {
	now := c.last
	vertices := []map[string]any{}
	nodes := []map[string]any{}
	for vi, v := range j.vertices {
		var m ioMetrics
		for _, st := range v.subtasks {
			m.add(st)
		}
		vertices = append(vertices, map[string]any{
			"id": v.id, "slotSharingGroupId": hexID("ssg", j.id), "name": v.name, "maxParallelism": 128,
			"parallelism": v.parallelism, "status": "RUNNING", "start-time": ms(j.start), "end-time": -1,
			"duration": now.Sub(j.start).Milliseconds(), "tasks": taskCounts(len(v.subtasks), false), "metrics": m,
		})
		node := map[string]any{
			"id": v.id, "parallelism": v.parallelism, "operator": "", "operator_strategy": "",
			"description": v.name, "optimizer_properties": map[string]any{},
		}
		if vi > 0 {
			node["inputs"] = []map[string]any{{"num": 0, "id": j.vertices[vi-1].id, "ship_strategy": "HASH", "exchange": "pipelined_bounded"}}
		}
		nodes = append(nodes, node)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"jid": j.id, "name": j.name, "isStoppable": false, "state": "RUNNING", "job-type": "STREAMING",
		"start-time": ms(j.start), "end-time": -1, "duration": now.Sub(j.start).Milliseconds(),
		"maxParallelism": -1, "now": ms(now), "timestamps": map[string]int64{"RUNNING": ms(j.start), "CREATED": ms(j.start)},
		"vertices": vertices, "status-counts": taskCounts(len(j.vertices), false),
		"plan": map[string]any{"jid": j.id, "name": j.name, "type": "STREAMING", "nodes": nodes},
	})
}

func (c *Cluster) endpoint(tm *taskManager) string {
	return fmt.Sprintf("%s:%d", tm.info.Host, tm.info.DataPort)
}

func (c *Cluster) subtaskJSON(st *subtask, now time.Time) map[string]any {
	var m ioMetrics
	m.add(st)
	out := map[string]any{
		"subtask": st.index, "status": "RUNNING", "attempt": st.attempt, "endpoint": c.endpoint(st.tm),
		"start-time": ms(st.start), "start_time": ms(st.start), "end-time": -1,
		"duration": now.Sub(st.start).Milliseconds(), "metrics": m, "taskmanager-id": st.tm.info.ID,
		"status-duration": map[string]int64{"CREATED": 4, "SCHEDULED": 312, "DEPLOYING": 58, "INITIALIZING": 471, "RUNNING": now.Sub(st.start).Milliseconds()},
	}
	if c.version == Version120 {
		// Deprecated in 1.x, removed in 2.0 (FLINK-36355).
		out["host"] = st.tm.info.Host
	}
	return out
}

func (c *Cluster) getVertex(w http.ResponseWriter, _ *http.Request, j *job, v *vertex) {
	now := c.last
	subs := []map[string]any{}
	for _, st := range v.subtasks {
		subs = append(subs, c.subtaskJSON(st, now))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": v.id, "name": v.name, "parallelism": v.parallelism, "maxParallelism": 128, "now": ms(now),
		"subtasks": subs,
	})
}

func (c *Cluster) getVertexTaskManagers(w http.ResponseWriter, _ *http.Request, j *job, v *vertex) {
	now := c.last
	tms := []map[string]any{}
	for _, tm := range c.tms {
		var m ioMetrics
		n := 0
		for _, st := range v.subtasks {
			if st.tm == tm {
				m.add(st)
				n++
			}
		}
		if n == 0 {
			continue
		}
		e := map[string]any{
			"endpoint": c.endpoint(tm), "status": "RUNNING", "start-time": ms(j.start), "end-time": -1,
			"duration": now.Sub(j.start).Milliseconds(), "metrics": m, "status-counts": taskCounts(n, false),
			"taskmanager-id": tm.info.ID,
		}
		if c.version == Version120 {
			e["host"] = tm.info.Host
		}
		tms = append(tms, e)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": v.id, "name": v.name, "now": ms(now), "taskmanagers": tms})
}

func bpLevel(ratio float64) string {
	switch {
	case ratio <= 0.10:
		return "ok"
	case ratio <= 0.5:
		return "low"
	}
	return "high"
}

func (c *Cluster) getBackpressure(w http.ResponseWriter, _ *http.Request, j *job, v *vertex) {
	maxRatio := 0.0
	subs := []map[string]any{}
	for _, st := range v.subtasks {
		ratio := math.Round(st.bp) / 1000
		maxRatio = math.Max(maxRatio, ratio)
		subs = append(subs, map[string]any{
			"subtask": st.index, "backpressureLevel": bpLevel(ratio), "ratio": jdouble(ratio),
			"idleRatio": jdouble(math.Round(st.idle) / 1000), "busyRatio": jdouble(math.Round(st.busy) / 1000),
			"backpressure-level": bpLevel(ratio),
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "backpressureLevel": bpLevel(maxRatio), "end-timestamp": ms(c.last),
		"subtasks": subs, "backpressure-level": bpLevel(maxRatio),
	})
}

func (c *Cluster) checkpointJSON(r *checkpointRecord) map[string]any {
	if r == nil {
		return nil
	}
	class := map[string]string{"COMPLETED": "completed", "FAILED": "failed", "IN_PROGRESS": "in_progress"}[r.status]
	out := map[string]any{
		"className": class, "id": r.id, "status": r.status, "is_savepoint": false, "savepointFormat": nil,
		"trigger_timestamp": ms(r.trigger), "latest_ack_timestamp": ms(r.ack), "checkpointed_size": r.incremental,
		"state_size": r.full, "end_to_end_duration": r.durationMs, "alignment_buffered": 0, "processed_data": 0,
		"persisted_data": 0, "num_subtasks": r.subtasks, "num_acknowledged_subtasks": r.subtasks,
		"checkpoint_type": "CHECKPOINT", "tasks": map[string]any{},
	}
	switch r.status {
	case "COMPLETED":
		out["external_path"], out["discarded"] = r.path, false
	case "FAILED":
		out["failure_timestamp"], out["failure_message"] = ms(r.ack), r.failure
		out["checkpointed_size"], out["state_size"] = 0, 0
	}
	return out
}

func (c *Cluster) getCheckpoints(w http.ResponseWriter, _ *http.Request, j *job) {
	cs := &j.checkpoints
	hist := []map[string]any{}
	for _, r := range cs.history {
		hist = append(hist, c.checkpointJSON(r))
	}
	stat := func(v int64) map[string]int64 {
		return map[string]int64{"min": v, "max": v, "avg": v, "p50": v, "p90": v, "p95": v, "p99": v, "p999": v}
	}
	var last checkpointRecord
	if cs.latestDone != nil {
		last = *cs.latestDone
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"counts": map[string]int64{"restored": 0, "total": cs.completed + cs.failed, "in_progress": 0, "completed": cs.completed, "failed": cs.failed},
		"summary": map[string]any{
			"checkpointed_size": stat(last.incremental), "state_size": stat(last.full), "end_to_end_duration": stat(last.durationMs),
			"alignment_buffered": stat(0), "processed_data": stat(0), "persisted_data": stat(0),
		},
		"latest": map[string]any{
			"completed": c.checkpointJSON(cs.latestDone), "savepoint": nil, "failed": c.checkpointJSON(cs.latestFail), "restored": nil,
		},
		"history": hist,
	})
}

func (c *Cluster) postCheckpoint(w http.ResponseWriter, r *http.Request, j *job) {
	var req struct {
		CheckpointType string `json:"checkpointType"`
		TriggerID      string `json:"triggerId"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, "Request did not match expected format CheckpointTriggerRequestBody: "+err.Error())
		return
	}
	switch req.CheckpointType {
	case "", "CONFIGURED", "FULL":
	case "INCREMENTAL":
		writeErr(w, http.StatusBadRequest, "INCREMENTAL checkpoint type is not supported yet (FLINK-33723)")
		return
	default:
		writeErr(w, http.StatusBadRequest, "unknown checkpointType "+req.CheckpointType)
		return
	}
	id := j.checkpoints.trigger(j, c.last, req.TriggerID)
	writeJSON(w, http.StatusAccepted, map[string]string{"request-id": id})
}

func (c *Cluster) getCheckpointTrigger(w http.ResponseWriter, r *http.Request, j *job) {
	t := j.checkpoints.triggers[r.PathValue("triggerid")]
	if t == nil {
		writeErr(w, http.StatusNotFound, "org.apache.flink.runtime.rest.handler.RestHandlerException: There is no checkpoint operation with triggerId="+r.PathValue("triggerid"))
		return
	}
	switch {
	case t.cpID == 0:
		writeJSON(w, http.StatusOK, map[string]any{"status": map[string]string{"id": "IN_PROGRESS"}, "operation": nil})
	case t.failure != "":
		writeJSON(w, http.StatusOK, map[string]any{"status": map[string]string{"id": "COMPLETED"}, "operation": map[string]any{
			"failureCause": map[string]string{
				"class": "java.util.concurrent.CompletionException", "stack-trace": "org.apache.flink.runtime.checkpoint.CheckpointException: " + t.failure,
				"serialized-throwable": "",
			},
		}})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": map[string]string{"id": "COMPLETED"}, "operation": map[string]any{"checkpointId": t.cpID}})
	}
}

func (c *Cluster) taskManagerJSON(tm *taskManager) map[string]any {
	used := c.usedSlots(tm)
	res := func(frac float64) map[string]any {
		return map[string]any{
			"cpuCores": jdouble(float64(tm.slots) * frac), "taskHeapMemory": int(1408 * frac), "taskOffHeapMemory": 0,
			"managedMemory": int(512 * frac), "networkMemory": int(128 * frac), "extendedResources": map[string]any{},
		}
	}
	rpc, _, _ := strings.Cut(tm.info.ID, "-") // the ResourceID starts with <rpcHost>:<rpcPort>
	return map[string]any{
		"id": tm.info.ID, "path": "pekko.tcp://flink@" + rpc + "/user/rpc/taskmanager_0",
		"dataPort": tm.info.DataPort, "jmxPort": -1, "timeSinceLastHeartbeat": ms(c.last),
		"slotsNumber": tm.slots, "freeSlots": tm.slots - used,
		"totalResource": res(1), "freeResource": res(float64(tm.slots-used) / float64(tm.slots)),
		"hardware": map[string]any{"cpuCores": 4, "physicalMemory": int64(16478932992), "freeMemory": int64(1476395008), "managedMemory": int64(536870912)},
		"memoryConfiguration": map[string]any{
			"frameworkHeap": 134217728, "taskHeap": 1476395008, "frameworkOffHeap": 134217728, "taskOffHeap": 0,
			"networkMemory": 134217728, "managedMemory": 536870912, "jvmMetaspace": 268435456, "jvmOverhead": 214748368,
			"totalFlinkMemory": int64(2415919104), "totalProcessMemory": int64(2899102928),
		},
	}
}

func (c *Cluster) getTaskManagers(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	tms := []map[string]any{}
	for _, tm := range c.tms {
		tms = append(tms, c.taskManagerJSON(tm))
	}
	writeJSON(w, http.StatusOK, map[string]any{"taskmanagers": tms})
}

func (c *Cluster) getTaskManager(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	tm := c.tmByID(r.PathValue("tmid"))
	if tm == nil {
		writeErr(w, http.StatusNotFound, "org.apache.flink.runtime.resourcemanager.exceptions.UnknownTaskExecutorException: No TaskExecutor registered under "+r.PathValue("tmid")+".")
		return
	}
	out := c.taskManagerJSON(tm)
	out["allocatedSlots"] = []any{}
	out["metrics"] = map[string]any{
		"heapUsed": int64(1476395008 * (0.4 + 0.4*(1-tm.speed))), "heapCommitted": 1476395008, "heapMax": 1476395008,
		"garbageCollectors": []map[string]any{{"name": "G1_Young_Generation", "count": int64(tm.gcCount), "time": int64(tm.gcTimeMs)}},
	}
	writeJSON(w, http.StatusOK, out)
}
