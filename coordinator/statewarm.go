package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

// stateWarmer makes state follow the tasks. When subtasks of a job start running on a node they
// did not run on before (a migration, a failover), it asks that node's agent to prefetch the
// job's latest completed checkpoint into its cache: from the gateway of the node the subtasks
// left (peer transfer) when that node still answers, else from the object store. Flink's
// restore then reads from the local cache instead of downloading the state again.
// Whether a prefetch was already asked for is its command record in the store, so a restarted
// or newly elected coordinator does not ask again.
type stateWarmer struct {
	c     *Coordinator
	since time.Time
}

func newStateWarmer(c *Coordinator) *stateWarmer {
	return &stateWarmer{c: c, since: c.now()}
}

// warmTarget is one job arriving on one node.
type warmTarget struct {
	job, toNode, fromNode string
}

func (w *stateWarmer) round(ctx context.Context) {
	moves := w.c.topo.MovesSince(w.since)
	if len(moves) == 0 {
		return
	}
	w.since = moves[len(moves)-1].At
	var targets []warmTarget
	seen := map[warmTarget]bool{}
	for _, m := range moves {
		if m.ToNode == "" || m.ToNode == m.FromNode {
			continue
		}
		t := warmTarget{job: m.JobID, toNode: m.ToNode, fromNode: m.FromNode}
		if !seen[t] {
			seen[t] = true
			targets = append(targets, t)
		}
	}
	for _, t := range targets {
		if err := w.warm(ctx, t); err != nil {
			w.c.log.Warn("cannot warm state on the receiving node", "job", t.job, "node", t.toNode, "err", err)
		}
	}
}

func (w *stateWarmer) warm(ctx context.Context, t warmTarget) error {
	to, ok := w.c.nodeRecord(t.toNode)
	if !ok || to.GatewayEndpoint == "" {
		return nil // the receiving agent has no state cache: nothing to warm
	}
	path, id, err := w.c.poller.latestCheckpoint(ctx, t.job)
	if err != nil {
		return err
	}
	if path == "" {
		return nil // no completed checkpoint yet
	}
	bucket, prefix, err := splitS3Path(path)
	if err != nil {
		return err
	}
	source := ""
	if from, ok := w.c.nodeRecord(t.fromNode); ok && from.Reachable && from.GatewayEndpoint != "" {
		source = from.GatewayEndpoint
	}
	// The checkpoint's own directory, then the shared directory incremental checkpoints
	// reference (<checkpoint dir>/<job>/shared next to chk-N).
	prefixes := []string{strings.TrimSuffix(prefix, "/") + "/"}
	if i := strings.LastIndex(strings.TrimSuffix(prefix, "/"), "/"); i >= 0 {
		prefixes = append(prefixes, prefix[:i]+"/shared/")
	}
	for i, p := range prefixes {
		cmdID := fmt.Sprintf("warm/%s/%s/%d/%d", t.job, t.toNode, id, i)
		switch _, err := w.c.st.Command(cmdID); {
		case err == nil:
			continue // asked before, by this process or a predecessor
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		cmd := &tmwardenv1.Command{Id: cmdID, Deadline: timestamppb.New(w.c.now().Add(30 * time.Minute)),
			Reason: fmt.Sprintf("subtasks of job %s moved to %s: warm checkpoint %d", t.job, t.toNode, id),
			Action: &tmwardenv1.Command_Prefetch{Prefetch: &tmwardenv1.PrefetchCommand{Bucket: bucket, Prefix: p, Priority: 1, SourcePeer: source}}}
		if err := w.c.SendCommand(ctx, t.toNode, cmd); err != nil {
			return err
		}
		from := source
		if from == "" {
			from = "the object store"
		}
		w.c.event(t.toNode, "state_prefetch", fmt.Sprintf("asked %s to prefetch s3://%s/%s from %s (job %s moved there)", t.toNode, bucket, p, from, t.job),
			map[string]string{"job": t.job, "command": cmdID, "source": source, "from_node": t.fromNode})
	}
	return nil
}

// splitS3Path splits s3://bucket/key/prefix (also s3a:// and s3p://) into bucket and prefix.
func splitS3Path(p string) (bucket, prefix string, err error) {
	u, err := url.Parse(p)
	if err != nil || !strings.HasPrefix(u.Scheme, "s3") || u.Host == "" {
		return "", "", fmt.Errorf("checkpoint path %q is not an s3:// path", p)
	}
	return u.Host, strings.TrimPrefix(u.Path, "/"), nil
}
