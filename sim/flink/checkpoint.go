package flinksim

import (
	"fmt"
	"math"
	"time"
)

type checkpointRecord struct {
	id          int64
	status      string // COMPLETED, FAILED, IN_PROGRESS
	trigger     time.Time
	ack         time.Time
	incremental int64
	full        int64
	durationMs  int64
	path        string
	failure     string
	subtasks    int
}

type pendingTrigger struct {
	requestID string
	cpID      int64
	at        time.Time
	doneAt    time.Time
	failure   string
}

type checkpointState struct {
	next         int64
	lastPeriodic time.Time
	history      []*checkpointRecord // newest first, at most 10
	completed    int64
	failed       int64
	latestDone   *checkpointRecord
	latestFail   *checkpointRecord
	triggers     map[string]*pendingTrigger
	failReason   string
}

// checkpointDuration grows with back-pressure: barriers queue behind full buffers.
func checkpointDuration(j *job) time.Duration {
	maxBP := 0.0
	for _, v := range j.vertices {
		for _, st := range v.subtasks {
			maxBP = math.Max(maxBP, st.bp)
		}
	}
	return 400*time.Millisecond + time.Duration(maxBP*3)*time.Millisecond
}

func (cs *checkpointState) record(j *job, at time.Time, failure string) *checkpointRecord {
	n := 0
	for _, v := range j.vertices {
		n += len(v.subtasks)
	}
	d := checkpointDuration(j)
	r := &checkpointRecord{
		id: cs.next, trigger: at, ack: at.Add(d), durationMs: d.Milliseconds(), subtasks: n,
		incremental: 40_000 + cs.next%7*1000, full: 800_000_000 + cs.next*10_000,
	}
	cs.next++
	if failure != "" {
		r.status, r.failure = "FAILED", failure
		cs.failed++
		cs.latestFail = r
	} else {
		r.status = "COMPLETED"
		r.path = fmt.Sprintf("s3://flink-state/checkpoints/%s/chk-%d", j.id, r.id)
		cs.completed++
		cs.latestDone = r
	}
	cs.history = append([]*checkpointRecord{r}, cs.history...)
	if len(cs.history) > 10 {
		cs.history = cs.history[:10]
	}
	return r
}

// advance completes periodic checkpoints and triggered ones whose time has come.
func (cs *checkpointState) advance(c *Cluster, j *job, now time.Time) {
	for !now.Before(cs.lastPeriodic.Add(c.cfg.CheckpointInterval)) {
		cs.lastPeriodic = cs.lastPeriodic.Add(c.cfg.CheckpointInterval)
		cs.record(j, cs.lastPeriodic, cs.failReason)
	}
	for _, t := range cs.triggers {
		if t.cpID == 0 && !now.Before(t.doneAt) {
			r := cs.record(j, t.at, cs.failReason)
			t.cpID = r.id
			t.failure = r.failure
		}
	}
}

// trigger starts a manual checkpoint; a known triggerID returns the same request (Flink makes
// triggering idempotent on the caller's trigger id).
func (cs *checkpointState) trigger(j *job, now time.Time, triggerID string) string {
	if cs.triggers == nil {
		cs.triggers = map[string]*pendingTrigger{}
	}
	if triggerID == "" {
		triggerID = hexID("trigger", j.id, now.String(), fmt.Sprint(len(cs.triggers)))
	}
	if _, ok := cs.triggers[triggerID]; !ok {
		cs.triggers[triggerID] = &pendingTrigger{requestID: triggerID, at: now, doneAt: now.Add(checkpointDuration(j))}
	}
	return triggerID
}

// FailCheckpoints makes the job's checkpoints fail with reason; "" makes them succeed again.
func (c *Cluster) FailCheckpoints(jobName, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	for _, j := range c.jobs {
		if j.name == jobName {
			j.checkpoints.failReason = reason
			return nil
		}
	}
	return fmt.Errorf("flinksim: no job %q", jobName)
}

// LatestCheckpointPath is the external path of a job's latest completed checkpoint ("" before
// the first), as the REST API's checkpoint statistics report it.
func (c *Cluster) LatestCheckpointPath(jobID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	for _, j := range c.jobs {
		if j.id == jobID && j.checkpoints.latestDone != nil {
			return j.checkpoints.latestDone.path
		}
	}
	return ""
}
