package store_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/store"
	"github.com/tmwarden/tmwarden/coordinator/store/etcdtest"
)

// TestBackends runs the same reads and writes against the embedded pebble store and a real etcd:
// the event log in both directions across etcd's pages, node records, command records, and event
// ids that stay unique when two replicas append to one etcd at once.
func TestBackends(t *testing.T) {
	endpoint := etcdtest.Start(t)
	for _, backend := range []string{store.BackendPebble, store.BackendEtcd} {
		t.Run(backend, func(t *testing.T) {
			cfg := store.DefaultConfig()
			cfg.Backend, cfg.Etcd.Endpoints, cfg.Etcd.Prefix = backend, []string{endpoint}, "/"+t.Name()+"/"
			dir := filepath.Join(t.TempDir(), "db")
			st, err := store.OpenConfig(cfg, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			// More events than one etcd page, of two nodes.
			for i := range 1200 {
				if _, err := st.AppendEvent(store.Event{Node: fmt.Sprintf("n%d", i%2), Type: "t", Message: fmt.Sprint(i)}); err != nil {
					t.Fatal(err)
				}
			}
			latest, err := st.LatestEvents(700, "n1")
			if err != nil || len(latest) != 600 || latest[0].Message != "1" || latest[599].Message != "1199" {
				t.Fatalf("latest of n1: %d events, %v", len(latest), err)
			}
			after, err := st.Events(1000, 0, "")
			if err != nil || len(after) != 200 || after[0].ID != 1001 || after[199].ID != 1200 {
				t.Fatalf("events after 1000: %d, %v", len(after), err)
			}
			if err := st.PutNode(store.NodeRecord{Name: "n1", LastSequence: 7}, []byte("report"), store.Buffered); err != nil {
				t.Fatal(err)
			}
			nodes, err := st.Nodes()
			if b, _ := st.LastReport("n1"); err != nil || len(nodes) != 1 || nodes[0].LastSequence != 7 || string(b) != "report" {
				t.Fatalf("nodes %+v %q %v", nodes, b, err)
			}
			now := time.Now().UTC()
			if _, err := st.UpdateCommand("d1/drain", func(r *store.CommandRecord) bool { return r.Sent("n1", "drain", "slow", time.Time{}, now) }); err != nil {
				t.Fatal(err)
			}
			if rec, err := st.Command("d1/drain"); err != nil || rec.State != store.CommandSent || rec.Node != "n1" {
				t.Fatalf("command %+v %v", rec, err)
			}

			// A second replica on the same backend (etcd only: pebble is one process's).
			if backend != store.BackendEtcd {
				return
			}
			other, err := store.OpenConfig(cfg, "")
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if rec, err := other.Command("d1/drain"); err != nil || rec.State != store.CommandSent {
				t.Fatalf("the other replica reads command %+v %v", rec, err)
			}
			var wg sync.WaitGroup
			for _, s := range []*store.Store{st, other} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 50 {
						if _, err := s.AppendEvent(store.Event{Type: "race"}); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			all, err := st.Events(0, 0, "")
			if err != nil || len(all) != 1300 {
				t.Fatalf("%d events after both replicas appended, want 1300: %v", len(all), err)
			}
			for i, e := range all {
				if e.ID != uint64(i+1) {
					t.Fatalf("event %d has id %d: ids must be unique and dense", i, e.ID)
				}
			}
		})
	}
}
