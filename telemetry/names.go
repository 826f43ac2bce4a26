package telemetry

// Kind is an instrument's kind, as far as its exported name depends on it (Prometheus adds
// _total to counters).
type Kind int

// Instrument kinds.
const (
	Gauge Kind = iota
	Counter
	UpDownCounter
	Histogram
)

// Instrument names one metric tmwarden exports. The table below is the contract the Grafana
// dashboards are checked against: a panel may only query a metric listed here.
type Instrument struct {
	Name, Unit, Description string
	Kind                    Kind
}

// Names of the report metrics (RegisterReportMetrics). Semantic-convention names where one
// exists; tmwarden.* for signals the conventions do not cover.
const (
	MetricCPUUtilization     = "system.cpu.utilization"
	MetricCPULogicalCount    = "system.cpu.logical.count"
	MetricLoadAverage1m      = "system.cpu.load_average.1m"
	MetricMemoryUsage        = "system.memory.usage"
	MetricMemoryUtilization  = "system.memory.utilization"
	MetricDiskIO             = "system.disk.io"
	MetricDiskOperations     = "system.disk.operations"
	MetricDiskOperationTime  = "system.disk.operation_time"
	MetricDiskIOTime         = "system.disk.io_time"
	MetricNetworkIO          = "system.network.io"
	MetricNetworkPackets     = "system.network.packets"
	MetricNetworkErrors      = "system.network.errors"
	MetricNetworkDropped     = "system.network.dropped"
	MetricNetworkConnections = "system.network.connections"
	MetricPressure           = "tmwarden.pressure"
	MetricRunqueueLatency    = "tmwarden.runqueue.latency"
	MetricBlockIOLatency     = "tmwarden.blockio.latency"
	MetricTCPRetransmits     = "tmwarden.tcp.retransmits"
	MetricTaskManagers       = "tmwarden.taskmanagers"
	MetricSubtasks           = "tmwarden.subtasks"
	MetricTMCPULoad          = "tmwarden.taskmanager.cpu.load"
	MetricTMGCShare          = "tmwarden.taskmanager.gc.share"
	MetricTMHeapUsage        = "tmwarden.taskmanager.heap.usage"
	MetricTMBusy             = "tmwarden.taskmanager.busy"
	MetricTMBackpressured    = "tmwarden.taskmanager.backpressured"
	MetricCacheCapacity      = "tmwarden.cache.capacity"
	MetricCacheUsage         = "tmwarden.cache.usage"
	MetricCacheObjects       = "tmwarden.cache.objects"
	MetricCacheHitRatio      = "tmwarden.cache.hit_ratio"
)

// Names the coordinator's decision engine (coordinator/evaluate.go) and the state cache
// (localstate/metrics.go) record; the dashboards query them. Attributes in brackets.
const (
	// MetricNodeScore is a node's slowness score from peer comparison [k8s.node.name, cause].
	MetricNodeScore = "tmwarden.node.score"
	// MetricNodeState is 1 for the state a node is in [k8s.node.name, state].
	MetricNodeState = "tmwarden.node.state"
	// MetricNodeTransitions counts changes of a node's health [k8s.node.name, from, to].
	MetricNodeTransitions = "tmwarden.node.transitions"
	// MetricDetections counts verdicts that flagged a node [cause].
	MetricDetections = "tmwarden.detections"
	// MetricDecisions counts decisions taken [action, mode, outcome].
	MetricDecisions = "tmwarden.decisions"
	// MetricMigrations counts migrations when they end [outcome, mode]; dry runs as outcome dry_run.
	MetricMigrations = "tmwarden.migrations"
	// MetricEvaluationDuration is the time one evaluation round took.
	MetricEvaluationDuration = "tmwarden.evaluation.duration"
	// MetricCircuitBreakerOpen is 1 while the circuit breaker holds all migrations.
	MetricCircuitBreakerOpen = "tmwarden.circuit_breaker.open"
	// MetricCacheRequests counts gateway reads [result=hit|miss|partial].
	MetricCacheRequests = "tmwarden.cache.requests"
	// MetricCacheBytesServed counts bytes served by the gateway [source=local|upstream|peer].
	MetricCacheBytesServed = "tmwarden.cache.served"
	// MetricPrefetchBytes counts bytes a prefetch has fetched [source=peer|upstream].
	MetricPrefetchBytes = "tmwarden.cache.prefetch.fetched"
	// MetricPrefetchPending is the bytes prefetches still have to fetch.
	MetricPrefetchPending = "tmwarden.cache.prefetch.pending"
)

// Instruments lists every metric tmwarden exports, with the unit and kind that decide its
// Prometheus name.
var Instruments = []Instrument{
	// Report metrics (agent, RegisterReportMetrics).
	{MetricCPUUtilization, "1", "Share of CPU time per mode over the last interval [cpu.mode].", Gauge},
	{MetricCPULogicalCount, "{cpu}", "Logical CPUs.", UpDownCounter},
	{MetricLoadAverage1m, "{thread}", "One-minute load average.", Gauge},
	{MetricMemoryUsage, "By", "Memory in use per state [system.memory.state].", UpDownCounter},
	{MetricMemoryUtilization, "1", "Share of memory not available to new allocations [system.memory.state=used].", Gauge},
	{MetricDiskIO, "By", "Bytes read and written [system.device, disk.io.direction].", Counter},
	{MetricDiskOperations, "{operation}", "Reads and writes completed [system.device, disk.io.direction].", Counter},
	{MetricDiskOperationTime, "s", "Time reads and writes took, summed over operations [system.device, disk.io.direction].", Counter},
	{MetricDiskIOTime, "s", "Time the device had IO in flight [system.device].", Counter},
	{MetricNetworkIO, "By", "Bytes received and sent [network.interface.name, network.io.direction].", Counter},
	{MetricNetworkPackets, "{packet}", "Packets received and sent [network.interface.name, network.io.direction].", Counter},
	{MetricNetworkErrors, "{error}", "Receive and transmit errors [network.interface.name, network.io.direction].", Counter},
	{MetricNetworkDropped, "{packet}", "Packets dropped [network.interface.name, network.io.direction].", Counter},
	{MetricNetworkConnections, "{connection}", "TCP connections [network.transport, network.connection.state].", UpDownCounter},
	{MetricPressure, "1", "Linux PSI: share of the interval tasks stalled [resource=cpu|memory|io, level=some|full].", Gauge},
	{MetricRunqueueLatency, "s", "Run-queue latency from eBPF over the interval [cgroup, stat=mean|p50|p99].", Gauge},
	{MetricBlockIOLatency, "s", "Block-IO latency from eBPF over the interval [system.device, stat=mean|p50|p99].", Gauge},
	{MetricTCPRetransmits, "{segment}", "TCP segments retransmitted.", Counter},
	{MetricTaskManagers, "{taskmanager}", "Flink TaskManagers on the node.", Gauge},
	{MetricSubtasks, "{subtask}", "Flink subtasks on the node.", Gauge},
	{MetricTMCPULoad, "1", "TaskManager JVM CPU load [flink.taskmanager.id, k8s.pod.name].", Gauge},
	{MetricTMGCShare, "1", "Share of wall time the TaskManager spent in GC [flink.taskmanager.id, k8s.pod.name].", Gauge},
	{MetricTMHeapUsage, "By", "TaskManager heap in use [flink.taskmanager.id, k8s.pod.name].", Gauge},
	{MetricTMBusy, "1", "Mean busy share of the TaskManager's subtasks [flink.taskmanager.id, k8s.pod.name].", Gauge},
	{MetricTMBackpressured, "1", "Mean backpressured share of the TaskManager's subtasks [flink.taskmanager.id, k8s.pod.name].", Gauge},
	{MetricCacheCapacity, "By", "State cache capacity.", Gauge},
	{MetricCacheUsage, "By", "State cache bytes in use.", Gauge},
	{MetricCacheObjects, "{object}", "Objects in the state cache.", Gauge},
	{MetricCacheHitRatio, "1", "Share of gateway reads served from the cache.", Gauge},

	// Agent process (agent/agent.go).
	{"tmwarden.agent.reports.collected", "{report}", "Reports built by the collect loop.", Counter},
	{"tmwarden.agent.reports.sent", "{report}", "Reports written to the coordinator stream.", Counter},
	{"tmwarden.agent.reports.dropped", "{report}", "Reports dropped from the full buffer.", Counter},
	{"tmwarden.agent.stream.sessions", "{session}", "Stream sessions the coordinator welcomed.", Counter},
	{"tmwarden.agent.buffer.reports", "{report}", "Reports waiting in the buffer.", Gauge},
	{"tmwarden.agent.connected", "", "1 while the coordinator stream is up.", Gauge},
	{"tmwarden.collector.duration", "s", "Time one collector took for one round [collector].", Histogram},
	{"tmwarden.collector.cpu_time", "s", "Process CPU time used while the collector ran (collectors run one at a time) [collector].", Counter},
	{"tmwarden.collector.success", "", "1 when the collector's last round fully succeeded [collector].", Gauge},
	{"tmwarden.collector.state", "", "1 for the state the collector is in, 0 for the others; the reason is in /debug/status and the node's API record [collector, state=ok|degraded|disabled|failed].", Gauge},

	// Coordinator process (coordinator/coordinator.go).
	{"tmwarden.coordinator.reports", "{report}", "Reports received from agents [outcome=stored|duplicate|rejected].", Counter},
	{"tmwarden.coordinator.sessions", "{session}", "Agent streams open.", UpDownCounter},
	{"tmwarden.coordinator.nodes", "{node}", "Known nodes by reachability [state=reachable|unreachable].", Gauge},

	// Decision engine (coordinator/evaluate.go) and state cache (localstate/metrics.go).
	{MetricNodeScore, "", "Node slowness score from peer comparison [k8s.node.name, cause].", Gauge},
	{MetricNodeState, "", "1 for the state a node is in [k8s.node.name, state].", Gauge},
	{MetricNodeTransitions, "{transition}", "Changes of a node's health (decision state) [k8s.node.name, from, to].", Counter},
	{MetricDetections, "{verdict}", "Verdicts that flagged a node [cause].", Counter},
	{MetricDecisions, "{decision}", "Decisions taken [action, mode, outcome].", Counter},
	{MetricMigrations, "{migration}", "Migrations that ended [outcome=succeeded|failed|node_gone|dry_run, mode].", Counter},
	{MetricEvaluationDuration, "s", "Time one evaluation round took.", Histogram},
	{MetricCircuitBreakerOpen, "", "1 while the circuit breaker holds all migrations.", Gauge},
	{MetricCacheRequests, "{request}", "Gateway reads [result=hit|miss|partial].", Counter},
	{MetricCacheBytesServed, "By", "Bytes the gateway served [source=local|upstream|peer].", Counter},
	{MetricPrefetchBytes, "By", "Bytes prefetches fetched [source=peer|upstream].", Counter},
	{MetricPrefetchPending, "By", "Bytes prefetches still have to fetch.", Gauge},
}

// SecondsBuckets are the bucket bounds of duration histograms in seconds: the SDK's defaults
// are meant for milliseconds and would put every round in the first buckets.
var SecondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
