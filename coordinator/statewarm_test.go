package coordinator_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/agent"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

// commandLog records the commands an agent receives instead of running them.
type commandLog struct {
	mu   sync.Mutex
	cmds []*tmwardenv1.Command
}

func (l *commandLog) Handle(_ context.Context, cmd *tmwardenv1.Command, _ func(*tmwardenv1.CommandProgress)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cmds = append(l.cmds, cmd)
	return nil
}

func (l *commandLog) prefetches() []*tmwardenv1.PrefetchCommand {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*tmwardenv1.PrefetchCommand
	for _, c := range l.cmds {
		if p := c.GetPrefetch(); p != nil {
			out = append(out, p)
		}
	}
	return out
}

// TestStateFollowsMovedTasks moves a TaskManager's subtasks to another node in the Flink
// stand-in: the receiving node's agent must be asked to prefetch the job's latest checkpoint,
// from the gateway of the node the subtasks left.
func TestStateFollowsMovedTasks(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fcfg := flinksim.DemoConfig(2, 2)
	fcfg.CheckpointInterval = 200 * time.Millisecond
	fc, err := flinksim.Start(ctx, fcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	c := startCoordinator(t, t.TempDir(), "127.0.0.1:0", func(cfg *coordinator.Config) {
		cfg.Flink.JobManagers = []coordinator.JobManagerConfig{{URL: fc.RESTURL()}}
		cfg.Flink.PollInterval, cfg.Detection.Interval = 100*time.Millisecond, 100*time.Millisecond
	})
	defer c.stop(t)

	logs := map[string]*commandLog{}
	for _, node := range fc.Nodes() {
		logs[node] = &commandLog{}
		startFlinkAgent(t, ctx, fc, node, c.GRPCAddr(), func(cfg *agent.Config, opts *[]agent.Option) {
			// A real state cache, so the agent announces its gateway; its upstream is not needed here.
			sc := &cfg.StateCache // the agent's defaults, as a configuration file would start from
			sc.Enabled, sc.Listen, sc.AccessKey, sc.SecretKey, sc.Dir = true, "127.0.0.1:0", "flink", "flink-secret-key", t.TempDir()
			sc.Upstream.Endpoint, sc.Upstream.AccessKey, sc.Upstream.SecretKey = "http://127.0.0.1:1", "up", "up-secret"
			*opts = append(*opts, agent.WithCommandHandler(logs[node]))
		})
	}
	from, to := fc.Nodes()[0], fc.Nodes()[1]
	waitFor(t, 20*time.Second, "both nodes' subtasks placed and their gateways announced", func() bool {
		d1, ok1 := c.NodeDetail(from)
		d2, ok2 := c.NodeDetail(to)
		return ok1 && ok2 && d1.Subtasks > 0 && d2.Subtasks > 0 && c.Topology().Snapshot().Unplaced == 0
	})
	// Reconnect-time Hellos carry the bound gateway address; wait until it is known.
	time.Sleep(300 * time.Millisecond)
	if err := fc.MoveTaskManagerTasks(fc.TaskManagersOn(from)[0].ID, fc.TaskManagersOn(to)[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a prefetch command on the receiving node", func() bool { return len(logs[to].prefetches()) >= 2 })
	for _, p := range logs[to].prefetches() {
		if p.Bucket != "flink-state" || !strings.HasPrefix(p.Prefix, "checkpoints/") {
			t.Errorf("prefetch of s3://%s/%s, want the job's checkpoint in s3://flink-state/checkpoints/...", p.Bucket, p.Prefix)
		}
		if p.SourcePeer == "" {
			t.Errorf("prefetch from the object store; want from %s's gateway", from)
		}
	}
	if n := len(logs[from].prefetches()); n != 0 {
		t.Errorf("the node the subtasks left got %d prefetches", n)
	}
}
