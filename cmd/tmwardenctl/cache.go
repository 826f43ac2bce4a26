package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tmwarden/tmwarden/localstate"
)

// cacheOptions: the cache commands talk to one agent's admin API (localstate.AdminHandler,
// mounted on the agent's HTTP server, default 127.0.0.1:9712 under /cache/v1/), not to the coordinator.
type cacheOptions struct {
	g     *globalOptions
	agent string
}

func newCacheCommand(g *globalOptions) *cobra.Command {
	o := &cacheOptions{g: g}
	def := os.Getenv("TMWARDEN_AGENT")
	if def == "" {
		def = "http://127.0.0.1:9712"
	}
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Inspect and warm a node's state cache (talks to the agent's HTTP API, --agent)",
	}
	cmd.PersistentFlags().StringVar(&o.agent, "agent", def, "agent HTTP address (env TMWARDEN_AGENT)")
	cmd.AddCommand(o.lsCommand(), o.statsCommand(), o.prefetchCommand())
	return cmd
}

func (o *cacheOptions) do(ctx context.Context, method, path string, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(o.agent, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", o.agent, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", o.agent, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		_ = json.Unmarshal(raw, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return nil, fmt.Errorf("agent %s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("agent %s %s: decode: %w", method, path, err)
		}
	}
	return bytes.TrimSpace(raw), nil
}

func (o *cacheOptions) lsCommand() *cobra.Command {
	var bucket, prefix string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List cached objects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if bucket != "" {
				q.Set("bucket", bucket)
			}
			if prefix != "" {
				q.Set("prefix", prefix)
			}
			var objs []localstate.CacheObject
			raw, err := o.do(cmd.Context(), http.MethodGet, localstate.AdminPrefix+"objects?"+q.Encode(), nil, &objs)
			if err != nil {
				return err
			}
			if o.g.output == "json" {
				return writeRaw(cmd.OutOrStdout(), raw)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "BUCKET\tKEY\tSIZE\tJOB\tLAST ACCESS\tPINNED")
			for _, ob := range objs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", ob.Bucket, ob.Key, humanBytes(ob.Size), ob.JobID,
					ob.LastAccess.Local().Format(time.DateTime), ob.Pinned)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&bucket, "bucket", "", "only this bucket")
	cmd.Flags().StringVar(&prefix, "prefix", "", "only keys with this prefix")
	return cmd
}

func (o *cacheOptions) statsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show cache usage, hit ratio and cached checkpoint directories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s localstate.CacheStats
			raw, err := o.do(cmd.Context(), http.MethodGet, localstate.AdminPrefix+"stats", nil, &s)
			if err != nil {
				return err
			}
			if o.g.output == "json" {
				return writeRaw(cmd.OutOrStdout(), raw)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "used %s of %s in %d objects, hit ratio %.1f%% (%d hits, %d misses), %d loading\n",
				humanBytes(s.UsedBytes), humanBytes(s.CapacityBytes), s.Objects, 100*s.HitRatio, s.Hits, s.Misses, s.Loading)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "BUCKET\tPREFIX\tJOB\tOBJECTS\tSIZE")
			for _, p := range s.Prefixes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Bucket, p.Prefix, p.JobID, p.Objects, humanBytes(int64(p.Bytes)))
			}
			return tw.Flush()
		},
	}
}

func (o *cacheOptions) prefetchCommand() *cobra.Command {
	var req localstate.PrefetchRequest
	var noWait bool
	cmd := &cobra.Command{
		Use:   "prefetch --bucket B (--prefix P | --key K ...)",
		Short: "Warm the cache from the object store or a peer agent, with a progress bar",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Bucket == "" || (req.Prefix == "" && len(req.Keys) == 0) {
				return fmt.Errorf("prefetch needs --bucket and --prefix or --key")
			}
			var st localstate.PrefetchStatus
			raw, err := o.do(cmd.Context(), http.MethodPost, localstate.AdminPrefix+"prefetch", req, &st)
			if err != nil {
				return err
			}
			if noWait {
				if o.g.output == "json" {
					return writeRaw(cmd.OutOrStdout(), raw)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "prefetch %s started\n", st.ID)
				return nil
			}
			bar := cmd.ErrOrStderr()
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for st.State == "running" {
				if o.g.output != "json" {
					drawBar(bar, st)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-tick.C:
				}
				if raw, err = o.do(cmd.Context(), http.MethodGet, localstate.AdminPrefix+"prefetch/"+st.ID, nil, &st); err != nil {
					return err
				}
			}
			if o.g.output == "json" {
				if err := writeRaw(cmd.OutOrStdout(), raw); err != nil {
					return err
				}
			} else {
				drawBar(bar, st)
				fmt.Fprintln(bar)
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d/%d objects, %s from %s in %s\n", st.State, st.DoneObjects, st.Objects,
					humanBytes(st.DoneBytes), st.Source, st.Finished.Sub(st.Started).Round(time.Millisecond))
			}
			if st.State != "succeeded" {
				return fmt.Errorf("prefetch %s failed: %s", st.ID, st.Error)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Bucket, "bucket", "", "bucket")
	f.StringVar(&req.Prefix, "prefix", "", "every object under this prefix (e.g. flink-checkpoints/<job-id>/)")
	f.StringSliceVar(&req.Keys, "key", nil, "an object key (repeatable)")
	f.StringVar(&req.SourcePeer, "peer", "", "a peer agent's gateway host:port to fetch from (default: the object store)")
	f.IntVar(&req.Priority, "priority", 0, "order among prefetches (Flink's own reads always come first)")
	f.BoolVar(&req.Pin, "pin", false, "keep the objects from eviction until first read")
	f.BoolVar(&noWait, "no-wait", false, "start the prefetch and return its id")
	return cmd
}

// drawBar redraws a one-line progress bar in place.
func drawBar(w io.Writer, st localstate.PrefetchStatus) {
	const width = 30
	frac := 0.0
	if st.TotalBytes > 0 {
		frac = float64(st.DoneBytes) / float64(st.TotalBytes)
	}
	n := int(frac * width)
	el := time.Since(st.Started).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(st.DoneBytes) / el
	}
	fmt.Fprintf(w, "\r[%s%s] %5.1f%% %s/%s %d/%d objects %s/s   ", strings.Repeat("=", n), strings.Repeat(" ", width-n),
		100*frac, humanBytes(st.DoneBytes), humanBytes(st.TotalBytes), st.DoneObjects, st.Objects, humanBytes(int64(rate)))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
