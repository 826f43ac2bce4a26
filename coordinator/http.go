package coordinator

import (
	"cmp"
	"crypto/subtle"
	"math"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/statuspage"
	"github.com/tmwarden/tmwarden/coordinator/store"
	"github.com/tmwarden/tmwarden/coordinator/topology"
)

// Handler serves the HTTP API under /api/v1/, /healthz, /readyz and /metrics.
func (c *Coordinator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpv1.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !c.ready.Load() {
			httpv1.WriteJSON(w, http.StatusServiceUnavailable, httpv1.Error{Error: "not ready: not serving agents yet, or shutting down"})
			return
		}
		// Followers refuse agents, so the Service must not send traffic their way.
		if c.elector != nil && !c.elector.IsLeader() {
			msg := "follower: the leader is " + c.elector.Leader()
			if why := c.elector.SteppedDown(); why != "" {
				msg = "stepped down, it cannot act: " + why
			}
			httpv1.WriteJSON(w, http.StatusServiceUnavailable, httpv1.Error{Error: msg})
			return
		}
		// Ready means able to act: a replica still taking over (or failing to) is not.
		if acting, why := c.actState(); !acting {
			msg := "not acting yet: taking over"
			if why != "" {
				msg = "cannot act: " + why
			}
			httpv1.WriteJSON(w, http.StatusServiceUnavailable, httpv1.Error{Error: msg})
			return
		}
		httpv1.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("GET /metrics", c.tel.Handler)
	mux.HandleFunc("GET /api/v1/nodes", func(w http.ResponseWriter, _ *http.Request) {
		httpv1.WriteJSON(w, http.StatusOK, httpv1.NodeList{Nodes: c.Nodes()})
	})
	mux.HandleFunc("GET /api/v1/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		d, ok := c.NodeDetail(r.PathValue("name"))
		if !ok {
			httpv1.WriteJSON(w, http.StatusNotFound, httpv1.Error{Error: "no node named " + strconv.Quote(r.PathValue("name"))})
			return
		}
		httpv1.WriteJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("GET /api/v1/rounds", func(w http.ResponseWriter, _ *http.Request) {
		httpv1.WriteJSON(w, http.StatusOK, httpv1.RoundList{Rounds: c.Rounds()})
	})
	mux.HandleFunc("GET /api/v1/topology", func(w http.ResponseWriter, _ *http.Request) {
		httpv1.WriteJSON(w, http.StatusOK, c.topo.Snapshot())
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 10000 {
				httpv1.WriteJSON(w, http.StatusBadRequest, httpv1.Error{Error: "limit: want a whole number from 1 to 10000"})
				return
			}
			limit = n
		}
		evs, err := c.Events(limit, r.URL.Query().Get("node"))
		if err != nil {
			httpv1.WriteJSON(w, http.StatusInternalServerError, httpv1.Error{Error: err.Error()})
			return
		}
		httpv1.WriteJSON(w, http.StatusOK, httpv1.EventList{Events: evs})
	})
	mux.HandleFunc("GET /api/v1/commands", func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 10000 {
				httpv1.WriteJSON(w, http.StatusBadRequest, httpv1.Error{Error: "limit: want a whole number from 1 to 10000"})
				return
			}
			limit = n
		}
		cmds, err := c.Commands(limit, r.URL.Query().Get("node"))
		if err != nil {
			httpv1.WriteJSON(w, http.StatusInternalServerError, httpv1.Error{Error: err.Error()})
			return
		}
		httpv1.WriteJSON(w, http.StatusOK, httpv1.CommandList{Commands: cmds})
	})
	dh := c.eval.decisions.Handler()
	mux.Handle("/api/v1/decisions", dh)
	mux.Handle("/api/v1/decisions/", dh)
	// "/" without a method: "GET /" would conflict with "/api/" in the mux.
	mux.Handle("/", statuspage.Handler())
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		httpv1.WriteJSON(w, http.StatusNotFound, httpv1.Error{Error: "no such API path: " + r.Method + " " + r.URL.Path})
	})
	h := http.Handler(mux)
	if c.elector != nil {
		h = c.elector.FollowerGuard(h) // mutating requests go to the leader
	}
	return c.requireToken(h)
}

// requireToken guards every mutating request with the bearer token when one is configured.
// Reads stay open: operators and dashboards look, only the holders of the token act.
func (c *Coordinator) requireToken(next http.Handler) http.Handler {
	if c.apiToken == "" {
		return next
	}
	want := []byte("Bearer " + c.apiToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="tmwarden"`)
				httpv1.WriteJSON(w, http.StatusUnauthorized, httpv1.Error{Error: "this request changes state and needs the API bearer token (Authorization: Bearer ...)"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Nodes returns every known node's summary, sorted by name.
func (c *Coordinator) Nodes() []httpv1.Node {
	states := c.nodeStates()
	out := make([]httpv1.Node, 0, len(states))
	for _, ns := range states {
		out = append(out, c.summary(ns))
	}
	return out
}

// NodeDetail returns one node's summary, last report and recent events.
func (c *Coordinator) NodeDetail(name string) (httpv1.NodeDetail, bool) {
	c.mu.RLock()
	ns := c.nodes[name]
	c.mu.RUnlock()
	if ns == nil {
		return httpv1.NodeDetail{}, false
	}
	d := httpv1.NodeDetail{Node: c.summary(ns)}
	ns.mu.Lock()
	last := ns.lastReport()
	ns.mu.Unlock()
	if last != nil {
		d.LastReport, _ = protojson.MarshalOptions{UseProtoNames: true}.Marshal(last)
	}
	evs, err := c.Events(50, name)
	if err != nil {
		c.log.Warn("reading node events", "node", name, "err", err)
	}
	d.Events = evs
	d.TaskManagerList = taskManagers(last, c.topo)
	if ds, ok := c.eval.decisions.NodeDetail(name); ok {
		d.Decision = &ds
	}
	return d, true
}

// taskManagers turns the report's TaskManagers into the API's view.
// Job and vertex names come from the topology when a JobManager told it: the scrape's labels
// carry them sanitised ("Source: orders" arrives as "Source:_orders").
func taskManagers(r *tmwardenv1.Report, topo *topology.Topology) []httpv1.TaskManager {
	out := []httpv1.TaskManager{}
	if r == nil {
		return out
	}
	for _, tm := range r.TaskManagers {
		v := httpv1.TaskManager{ResourceID: tm.ResourceId, PID: tm.Pid, Pod: tm.PodName, Namespace: tm.PodNamespace,
			MetricsEndpoint: tm.MetricsEndpoint, ScrapeError: tm.ScrapeError, Subtasks: []httpv1.Subtask{}}
		if j := tm.Jvm; j != nil {
			v.CPULoad, v.HeapUsedBytes, v.HeapMaxBytes, v.GCTimeMsPerSec = finite(j.CpuLoad), j.HeapUsedBytes, j.HeapMaxBytes, finite(j.GcTimeMsPerSecond)
		}
		for _, s := range tm.Subtasks {
			st := httpv1.Subtask{JobID: s.JobId, JobName: s.JobName, VertexID: s.VertexId, VertexName: s.VertexName, Index: s.SubtaskIndex,
				BusyMsPerSecond: finite(s.BusyMsPerSecond), BackPressuredMsPerSec: finite(s.BackpressuredMsPerSecond),
				RecordsInPerSecond: finite(s.RecordsInPerSecond), RecordsOutPerSecond: finite(s.RecordsOutPerSecond)}
			if p, ok := topo.Locate(topology.Key{JobID: s.JobId, VertexID: s.VertexId, Index: int(s.SubtaskIndex)}); ok {
				st.JobName, st.VertexName = cmp.Or(p.JobName, st.JobName), cmp.Or(p.VertexName, st.VertexName)
			}
			// Sources have no records in; what they emit is what they process.
			records := s.RecordsInPerSecond
			if s.IsSource {
				records = s.RecordsOutPerSecond
			}
			if s.BusyMsPerSecond > 0 {
				st.TrueProcessingRate = finite(records / (s.BusyMsPerSecond / 1000))
			}
			v.Subtasks = append(v.Subtasks, st)
		}
		out = append(out, v)
	}
	return out
}

// finite returns nil for NaN and infinities, which JSON cannot carry.
func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

func (c *Coordinator) summary(ns *nodeState) httpv1.Node {
	c.mu.RLock()
	_, connected := c.sessions[ns.rec.Name]
	c.mu.RUnlock()
	health, cause, verdict, score, would := "healthy", "", "healthy", 0.0, ""
	if ds, ok := c.eval.decisions.NodeDetail(ns.rec.Name); ok {
		health, cause, verdict, score, would = ds.State, ds.Cause, ds.Verdict, ds.Score, ds.WouldMigrate
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	rec := ns.rec
	n := httpv1.Node{
		Name: rec.Name, State: httpv1.StateUnreachable, Connected: connected, AgentVersion: rec.AgentVersion,
		InstanceID: rec.InstanceID, Hostname: rec.Hostname, Labels: rec.Labels, IntervalSeconds: rec.IntervalSeconds,
		FirstSeen: rec.FirstSeen, LastSeen: rec.LastSeen, LastSequence: rec.LastSequence, ReportsReceived: rec.ReportsReceived,
		SequenceGaps: rec.SequenceGaps, DroppedByAgent: rec.DroppedByAgent, Collectors: []httpv1.Collector{},
		Health: health, Cause: cause, Verdict: verdict, Score: score, WouldMigrate: would,
	}
	if rec.Reachable {
		n.State = httpv1.StateReachable
	} else {
		// What the node shows is what its agent last said before it went silent.
		n.Stale = ns.last != nil
	}
	if !rec.LastReportAt.IsZero() {
		t := rec.LastReportAt
		n.LastReportAt = &t
	}
	for _, cs := range ns.collectors {
		n.Collectors = append(n.Collectors, httpv1.Collector{Name: cs.Name, State: collectorState(cs.State), Reason: cs.Reason})
	}
	round := c.LastRound()
	for _, v := range round.Verdicts {
		if v.Node == rec.Name && v.TaskManager == "" && v.Culprit != nil {
			cu := httpv1.Culprit(*v.Culprit)
			n.Culprit = &cu
		}
	}
	for _, f := range round.Findings {
		if f.Node == rec.Name {
			hf := httpv1.Finding{Kind: f.Kind, Class: f.Class, Speed: f.Speed, Cause: string(f.Cause), Detail: f.Detail, Since: f.Since}
			if !f.Until.IsZero() {
				until := f.Until
				hf.Until = &until
			}
			if f.Culprit != nil {
				cu := httpv1.Culprit(*f.Culprit)
				hf.Culprit = &cu
			}
			n.Findings = append(n.Findings, hf)
		}
	}
	if ns.last != nil {
		n.Host, n.TaskManagers, n.Subtasks = ns.lastSum.host, ns.lastSum.taskManagers, ns.lastSum.subtasks
	}
	return n
}

func hostSummary(h *tmwardenv1.HostSignals) *httpv1.HostSummary {
	if h == nil {
		return nil
	}
	s := &httpv1.HostSummary{NumCPUs: h.NumCpus, Load1: h.Load1}
	if cpu := h.Cpu; cpu != nil {
		s.CPUBusy = 1 - cpu.Idle - cpu.Iowait
		s.CPUSteal, s.CPUIOWait = cpu.Steal, cpu.Iowait
	}
	if m := h.Memory; m != nil && m.TotalBytes > 0 {
		s.MemUsedRatio = 1 - float64(m.AvailableBytes)/float64(m.TotalBytes)
	}
	if h.Tcp != nil {
		s.TCPRetransmit = h.Tcp.RetransmitsPerSecond
	}
	return s
}

// collectorState turns STATE_DEGRADED into "degraded".
func collectorState(s tmwardenv1.CollectorStatus_State) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATE_"))
}

// Commands returns the records of the commands sent to agents (of one node when node is not
// empty), the most recently updated first, as the API shows them.
func (c *Coordinator) Commands(limit int, node string) ([]httpv1.Command, error) {
	recs, err := c.st.Commands(node, limit)
	out := make([]httpv1.Command, len(recs))
	for i, r := range recs {
		out[i] = httpv1.Command{ID: r.ID, Node: r.Node, Kind: r.Kind, Reason: r.Reason, State: commandStateToAPI[r.State],
			Message: r.Message, DoneBytes: r.DoneBytes, TotalBytes: r.TotalBytes, Sends: r.Sends, SentAt: r.SentAt, UpdatedAt: r.UpdatedAt}
		if out[i].State == "" {
			out[i].State = string(r.State)
		}
		if !r.Deadline.IsZero() {
			d := r.Deadline
			out[i].Deadline = &d
		}
	}
	return out, err
}

var commandStateToAPI = map[store.CommandState]string{
	store.CommandSent: httpv1.CommandSent, store.CommandAcknowledged: httpv1.CommandAcknowledged,
	store.CommandProgress: httpv1.CommandProgress, store.CommandDone: httpv1.CommandDone, store.CommandFailed: httpv1.CommandFailed,
}

// Events returns the newest limit events (of one node when node is not empty), oldest first, as
// the API shows them: the one place stored events become API events.
func (c *Coordinator) Events(limit int, node string) ([]httpv1.Event, error) {
	evs, err := c.st.LatestEvents(limit, node)
	out := make([]httpv1.Event, len(evs))
	for i, e := range evs {
		out[i] = httpv1.Event{ID: e.ID, Time: e.Time, Node: e.Node, Type: e.Type, Message: e.Message, Attrs: e.Attrs}
	}
	return out, err
}

// pprofHandler serves net/http/pprof on its own mux (pprof_addr), never on the API's.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
