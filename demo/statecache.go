package demo

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tmwarden/tmwarden/agent"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/localstate"
)

// The simulated TaskManagers' S3 credential for their node's state cache, and the agents' peer
// credential. Demo values: the caches listen on loopback only.
const (
	demoFlinkKey, demoFlinkSecret = "demo-flink", "demo-flink-secret-key"
	demoPeerKey, demoPeerSecret   = "demo-peer", "demo-peer-secret-key"
	// checkpointObjectBytes is what each simulated TaskManager writes per checkpoint.
	checkpointObjectBytes = 256 << 10
)

// demoStateCache is a simulated node's state cache: the documented defaults (an explicit zero
// is refused, so a bare literal would not start), on loopback, in its own directory, in front of
// the shared upstream, with the demo's peer credential.
func demoStateCache(up localstate.UpstreamConfig, dir string) localstate.Config {
	c := localstate.DefaultConfig()
	c.Enabled, c.Listen, c.Dir = true, "127.0.0.1:0", dir
	c.AccessKey, c.SecretKey = demoFlinkKey, demoFlinkSecret
	c.Peer = localstate.PeerConfig{AccessKey: demoPeerKey, SecretKey: demoPeerSecret}
	timeout, pathStyle := c.Upstream.Timeout, c.Upstream.PathStyle
	c.Upstream = up
	if c.Upstream.Timeout == 0 {
		c.Upstream.Timeout = timeout
	}
	if c.Upstream.PathStyle == nil {
		c.Upstream.PathStyle = pathStyle
	}
	if c.Upstream.Region == "" {
		c.Upstream.Region = "us-east-1"
	}
	return c
}

// simulatedDrain drains a simulated node as Flink answers a drained TaskManager: every subtask
// of the node's TaskManagers restarts on a TaskManager of another node that still has its agent.
type simulatedDrain struct {
	cluster *simulatedCluster
	node    string

	mu   sync.Mutex
	done map[string]bool // command ids already run: the coordinator may send a drain again
}

func (d *simulatedDrain) Handle(_ context.Context, cmd *tmwardenv1.Command, progress func(*tmwardenv1.CommandProgress)) error {
	dr := cmd.GetDrain()
	if dr == nil {
		return fmt.Errorf("command %s: %w: not a drain", cmd.GetId(), agent.ErrUnsupportedCommand)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done[cmd.GetId()] || dr.GetDryRun() {
		return nil
	}
	target := ""
	for _, n := range d.cluster.Nodes() {
		if n != d.node && n != d.cluster.LastNode() {
			target = n
			break
		}
	}
	tms := d.cluster.flink.TaskManagersOn(target)
	if len(tms) == 0 {
		return fmt.Errorf("simulated drain of %s: no other node to restart its subtasks on", d.node)
	}
	for _, tm := range d.cluster.flink.TaskManagersOn(d.node) {
		if err := d.cluster.flink.MoveTaskManagerTasks(tm.ID, tms[0].ID); err != nil {
			return fmt.Errorf("simulated drain of %s: %w", d.node, err)
		}
	}
	if d.done == nil {
		d.done = map[string]bool{}
	}
	d.done[cmd.GetId()] = true
	progress(&tmwardenv1.CommandProgress{State: tmwardenv1.CommandProgress_STATE_RUNNING,
		Message: fmt.Sprintf("subtasks of %s restarted on %s", d.node, target)})
	return nil
}

// writeCheckpoints plays Flink's checkpoint writes: each time a job completes a checkpoint,
// every simulated TaskManager running its subtasks writes its part under the checkpoint's path
// through its node's state cache. It returns when ctx ends.
func writeCheckpoints(ctx context.Context, c *simulatedCluster, agents map[string]*agent.Agent, every time.Duration, log *slog.Logger) {
	if c.flink == nil {
		return
	}
	clients := map[string]*s3.Client{}
	written := map[string]string{} // job -> last checkpoint path written
	body := bytes.Repeat([]byte("tmwarden demo checkpoint state\n"), checkpointObjectBytes/31+1)[:checkpointObjectBytes]
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		writers := map[string]map[string]bool{} // job -> TaskManager ids running its subtasks
		tmNode := map[string]string{}
		for _, p := range c.flink.Placements() {
			if writers[p.JobID] == nil {
				writers[p.JobID] = map[string]bool{}
			}
			writers[p.JobID][p.TaskManagerID] = true
			tmNode[p.TaskManagerID] = p.Node
		}
		for job, tms := range writers {
			latest := c.flink.LatestCheckpointPath(job)
			if latest == "" || written[job] == latest {
				continue
			}
			// TaskManagers upload a checkpoint's state while it runs, before it completes: the
			// files of the next checkpoint go up now, so that a completed checkpoint always has
			// its files (and the very first one gets them late, once).
			paths := []string{nextCheckpoint(latest)}
			if written[job] == "" {
				paths = append(paths, latest)
			}
			written[job] = latest
			for _, path := range paths {
				writeCheckpoint(ctx, path, tms, tmNode, agents, clients, body, log)
			}
		}
	}
}

// nextCheckpoint is the path of the checkpoint after .../chk-N.
func nextCheckpoint(path string) string {
	i := strings.LastIndex(path, "chk-")
	if i < 0 {
		return path
	}
	n, err := strconv.Atoi(path[i+4:])
	if err != nil {
		return path
	}
	return path[:i] + "chk-" + strconv.Itoa(n+1)
}

// writeCheckpoint writes each TaskManager's part of one checkpoint through its node's cache.
func writeCheckpoint(ctx context.Context, path string, tms map[string]bool, tmNode map[string]string, agents map[string]*agent.Agent,
	clients map[string]*s3.Client, body []byte, log *slog.Logger) {
	u, err := url.Parse(path)
	if err != nil {
		return
	}
	bucket, prefix := u.Host, strings.TrimPrefix(u.Path, "/")
	for tm := range tms {
		node := tmNode[tm]
		a := agents[node]
		if a == nil || a.GatewayEndpoint() == "" {
			continue
		}
		cl := clients[node]
		if cl == nil {
			cl = s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + a.GatewayEndpoint()), UsePathStyle: true,
				Credentials: credentials.NewStaticCredentialsProvider(demoFlinkKey, demoFlinkSecret, ""), RetryMaxAttempts: 1,
				RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired})
			clients[node] = cl
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := cl.PutObject(pctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(prefix + "/" + tm + "-state"),
			Body: bytes.NewReader(body)})
		cancel()
		if err != nil {
			// A node whose agent was taken away has no cache to write through.
			log.Debug("simulated checkpoint write failed", "node", node, "path", path, "err", err)
		}
	}
}

// agentHTTPAddrs waits until every agent given has bound its HTTP port and returns the
// addresses by node.
func agentHTTPAddrs(ctx context.Context, agents map[string]*agent.Agent) (map[string]string, error) {
	out := map[string]string{}
	deadline := time.Now().Add(time.Minute)
	for name, a := range agents {
		for a.HTTPAddr() == "" {
			if ctx.Err() != nil || time.Now().After(deadline) {
				return nil, fmt.Errorf("agent %s did not bind its HTTP port within a minute", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		out[name] = a.HTTPAddr()
	}
	return out, nil
}
