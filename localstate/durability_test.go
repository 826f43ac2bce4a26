package localstate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// TestKill9MidUploadLosesNothingAcknowledged runs the gateway as a child process, writes
// through it from several clients, kills it with SIGKILL while uploads are in flight, and
// checks that every acknowledged write is in the upstream and that the cache reopens
// consistent: every entry it still has verifies, and reads through a new gateway are right.
func TestKill9MidUploadLosesNothingAcknowledged(t *testing.T) {
	up := startUpstream(t, 0)
	cfg := testConfig(t, up)
	cfg.Listen = freeAddr(t)
	raw, _ := json.Marshal(cfg)
	gw := startChild(t, cfg.Listen, helperEnv+"=gateway", "TMW_CONFIG="+string(raw))
	c := gatewayClient("http://"+cfg.Listen, gwAccess, gwSecret)

	var mu sync.Mutex
	acked := map[string][]byte{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := ckptKey(fmt.Sprintf("shared/w%d-%d", w, i))
				data := randomBytes(t, (1<<20)+w*4099+i)
				_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key), Body: bytes.NewReader(data)})
				if err != nil {
					return
				}
				mu.Lock()
				acked[key] = data
				mu.Unlock()
			}
		}(w)
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 24 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	gw.kill()
	cancel()
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	for key, data := range acked {
		upstreamHas(t, up, key, data)
	}

	// The same cache directory, opened again in-process.
	cfg.Listen = "127.0.0.1:0"
	g, c2 := startGateway(t, cfg)
	for _, e := range g.store.list("", "") {
		f, err := g.store.open(e)
		if err != nil {
			t.Fatalf("cache entry %s inconsistent after kill -9: %v", e.Key, err)
		}
		_ = f.Close()
		if want, ok := acked[e.Key]; ok && e.Size != int64(len(want)) {
			t.Fatalf("cache entry %s has %d bytes, acknowledged %d", e.Key, e.Size, len(want))
		}
	}
	for key, data := range acked {
		if got := getObject(t, c2, key, ""); !bytes.Equal(got, data) {
			t.Fatalf("%s differs after restart", key)
		}
	}
	t.Logf("%d acknowledged writes survived, %d were cached", len(acked), g.store.stats().Objects)
}

// TestEvictionSparesObjectsInUse fills a small cache: least recently used objects go, an
// object with an open reader stays, pinned objects stay.
func TestEvictionSparesObjectsInUse(t *testing.T) {
	up := startUpstream(t, 0)
	cfg := testConfig(t, up)
	cfg.CapacityBytes = 5 << 20
	g, c := startGateway(t, cfg)
	blob := randomBytes(t, 1<<20)
	for i := 0; i < 3; i++ {
		putObject(t, c, ckptKey(fmt.Sprintf("shared/o%d", i)), blob)
	}
	// Hold o0 open (oldest, would go first).
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(ckptKey("shared/o0"))})
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 10)
	if _, err := io.ReadFull(out.Body, first); err != nil {
		t.Fatal(err)
	}
	g.store.setPinned(testBucket, ckptKey("shared/o1"), true)
	time.Sleep(5 * time.Millisecond)
	for i := 3; i < 8; i++ {
		putObject(t, c, ckptKey(fmt.Sprintf("shared/o%d", i)), blob)
	}
	s := g.store.stats()
	// The reader holds o0 while the server streams it; it must survive.
	rest, err := io.ReadAll(out.Body)
	_ = out.Body.Close()
	if err != nil || !bytes.Equal(append(first, rest...), blob) {
		t.Fatalf("reader of an object under eviction pressure got wrong bytes: %v", err)
	}
	if s.Used > cfg.CapacityBytes+int64(len(blob)) {
		t.Fatalf("cache uses %d bytes over a %d quota", s.Used, cfg.CapacityBytes)
	}
	if _, ok := g.store.peek(testBucket, ckptKey("shared/o1")); !ok {
		t.Fatal("pinned object evicted")
	}
	if _, ok := g.store.peek(testBucket, ckptKey("shared/o2")); ok {
		for _, e := range g.store.list("", "") {
			t.Log(e.Key, e.LastAccess.Format(time.RFC3339Nano), e.Pinned)
		}
		t.Fatal("least recently used unpinned object kept")
	}
	if _, ok := g.store.peek(testBucket, ckptKey("shared/o7")); !ok {
		t.Fatal("newest object evicted")
	}
}

// TestPrefetchFromPeerAndUpstream: node A wrote a checkpoint; node B prefetches it through
// the Prefetch command, once from A's gateway (peer transfer, with the upstream down to prove
// the bytes came from A) and once from the upstream, reporting progress both times.
func TestPrefetchFromPeerAndUpstream(t *testing.T) {
	up := startUpstream(t, 0)
	cfgA := testConfig(t, up)
	cfgA.Peer = PeerConfig{AccessKey: "peer-key", SecretKey: "peer-secret-0123456789"}
	a, ca := startGateway(t, cfgA)
	objs := map[string][]byte{}
	for i := 0; i < 5; i++ {
		k := ckptKey(fmt.Sprintf("shared/sst-%d", i))
		objs[k] = randomBytes(t, 2<<20+i)
		putObject(t, ca, k, objs[k])
	}
	putObject(t, up.client, ckptKey("chk-9/_metadata"), []byte("not on A"))

	cfgB := testConfig(t, up)
	cfgB.Peer = cfgA.Peer
	b, cb := startGateway(t, cfgB)
	h := b.PrefetchHandler()

	// With the upstream down, the bytes can only come from A (HEADs of cached objects are
	// answered by A's cache too).
	up.kill()
	keys := make([]string, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	var last *tmwardenv1.CommandProgress
	var calls int
	err := h.Handle(context.Background(), &tmwardenv1.Command{Id: "c1", Action: &tmwardenv1.Command_Prefetch{Prefetch: &tmwardenv1.PrefetchCommand{
		Bucket: testBucket, Keys: keys, Priority: 5, SourcePeer: a.Addr()}}},
		func(p *tmwardenv1.CommandProgress) { calls++; last = p })
	if err != nil {
		t.Fatalf("peer prefetch: %v", err)
	}
	if last == nil || last.State != tmwardenv1.CommandProgress_STATE_SUCCEEDED || last.DoneBytes != last.TotalBytes || last.TotalBytes == 0 {
		t.Fatalf("final progress: %+v after %d calls", last, calls)
	}
	for k, v := range objs {
		e, ok := b.store.peek(testBucket, k)
		if !ok || e.Size != int64(len(v)) || !e.Pinned {
			t.Fatalf("%s not prefetched and pinned on B: %+v", k, e)
		}
		if got := getObject(t, cb, k, ""); !bytes.Equal(got, v) {
			t.Fatalf("%s differs on B", k)
		}
	}
	// A wrong peer credential is refused by A.
	bad := testConfig(t, up)
	bad.Peer = PeerConfig{AccessKey: "peer-key", SecretKey: "wrong"}
	bg, _ := startGateway(t, bad)
	if _, err := bg.Prefetch(context.Background(), PrefetchRequest{Bucket: testBucket, Keys: []string{ckptKey("shared/sst-0")}, SourcePeer: a.Addr()}, nil); err == nil {
		t.Fatal("peer accepted a bad signature")
	}

	up.start()
	// A prefix is listed through the peer (which asks the upstream); the data comes from A's cache.
	b2cfg := testConfig(t, up)
	b2cfg.Peer = cfgA.Peer
	b2, _ := startGateway(t, b2cfg)
	hitsBefore := a.store.stats().Hits
	if st, err := b2.Prefetch(context.Background(), PrefetchRequest{Bucket: testBucket, Prefix: ckptKey("shared/"), SourcePeer: a.Addr()}, nil); err != nil || st.Objects != len(objs) {
		t.Fatalf("peer prefix prefetch: %v %+v", err, st)
	}
	if hits := a.store.stats().Hits - hitsBefore; hits < uint64(len(objs)) {
		t.Fatalf("peer served %d cache hits for %d objects", hits, len(objs))
	}
	err = h.Handle(context.Background(), &tmwardenv1.Command{Id: "c2", Action: &tmwardenv1.Command_Prefetch{Prefetch: &tmwardenv1.PrefetchCommand{
		Bucket: testBucket, Keys: []string{ckptKey("chk-9/_metadata")}}}}, func(p *tmwardenv1.CommandProgress) { last = p })
	if err != nil || last.State != tmwardenv1.CommandProgress_STATE_SUCCEEDED {
		t.Fatalf("upstream prefetch: %v %+v", err, last)
	}
	if _, ok := b.store.peek(testBucket, ckptKey("chk-9/_metadata")); !ok {
		t.Fatal("upstream prefetch did not cache")
	}
	if err := h.Handle(context.Background(), &tmwardenv1.Command{Id: "c3", Action: &tmwardenv1.Command_Drain{Drain: &tmwardenv1.DrainCommand{}}}, nil); err == nil {
		t.Fatal("drain command accepted by the prefetch handler")
	}
}

// TestAdminAPI drives the admin endpoints tmwardenctl cache uses.
func TestAdminAPI(t *testing.T) {
	up := startUpstream(t, 0)
	g, c := startGateway(t, testConfig(t, up))
	putObject(t, c, ckptKey("chk-1/a"), []byte("aaaa"))
	putObject(t, up.client, ckptKey("chk-1/b"), []byte("bbbbbb"))
	srv := httptest.NewServer(g.AdminHandler())
	defer srv.Close()

	resp, err := http.Post(srv.URL+AdminPrefix+"prefetch", "application/json",
		strings.NewReader(`{"bucket":"`+testBucket+`","prefix":"`+ckptKey("chk-1/")+`"}`))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start prefetch: %v %v", err, resp)
	}
	var st PrefetchStatus
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for st.State == "running" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		r, err := http.Get(srv.URL + AdminPrefix + "prefetch/" + st.ID)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(r.Body).Decode(&st)
		r.Body.Close()
	}
	if st.State != "succeeded" || st.DoneBytes != 10 || st.Objects != 2 {
		t.Fatalf("prefetch status: %+v", st)
	}
	var objs []CacheObject
	r, _ := http.Get(srv.URL + AdminPrefix + "objects?bucket=" + testBucket)
	_ = json.NewDecoder(r.Body).Decode(&objs)
	r.Body.Close()
	if len(objs) != 2 || objs[0].JobID != jobID {
		t.Fatalf("objects: %+v", objs)
	}
	var stats CacheStats
	r, _ = http.Get(srv.URL + AdminPrefix + "stats")
	_ = json.NewDecoder(r.Body).Decode(&stats)
	r.Body.Close()
	if stats.Objects != 2 || stats.UsedBytes != 10 || len(stats.Prefixes) != 1 {
		t.Fatalf("stats: %+v", stats)
	}
	r, _ = http.Post(srv.URL+AdminPrefix+"prefetch", "application/json", strings.NewReader(`{"bucket":""}`))
	if r.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad prefetch request: %d", r.StatusCode)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "access_key") || !strings.Contains(err.Error(), "upstream.endpoint") {
		t.Fatalf("want missing credential and endpoint errors, got %v", err)
	}
	if _, err := New(Config{}, slog.Default()); err == nil {
		t.Fatal("New accepted an empty config")
	}
	if c.Listen != "127.0.0.1:9713" || c.CapacityBytes != 10<<30 || !*c.Janitor.DryRun {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestJobIDFromKey(t *testing.T) {
	for key, want := range map[string]string{
		"flink-checkpoints/" + jobID + "/shared/uuid":  jobID,
		"a/b/" + jobID + "/chk-42/_metadata":           jobID,
		jobID + "/taskowned/x":                         jobID,
		"savepoints/savepoint-012345-abcdef/_metadata": "",
		"x/" + jobID + "/other/y":                      "",
	} {
		if got := jobIDFromKey(key); got != want {
			t.Errorf("%s: got %q want %q", key, got, want)
		}
	}
	if p := checkpointPrefix("a/" + jobID + "/shared/u"); p != "a/"+jobID+"/" {
		t.Errorf("prefix: %q", p)
	}
}
