package statuspage_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tmwarden/tmwarden/demo"
	"github.com/tmwarden/tmwarden/demo/demotest"
)

// TestPageAgainstALiveCluster drives the page in headless Chromium against a real coordinator
// fed by the demo's cluster: real agents over gRPC, each scraping a Flink stand-in TaskManager
// (Flink itself cannot run here; the stand-in speaks Flink's Prometheus format), in approve
// mode with an API token. After the demo's fault (a noisy neighbour on node-2) the page must
// show node-2's health, score, cause and evidence rows; the decision and its audit trail; an
// approval that fails without the token and succeeds with it; and, once three more agents are
// cut off at once, the circuit breaker banner. Screenshots of each state are kept in
// coordinator/statuspage/testdata/screenshots (gitignored); the test prints the path.
func TestPageAgainstALiveCluster(t *testing.T) {
	bin := chromium(t)
	const token = "h14-page-token"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shots, err := filepath.Abs(filepath.Join("testdata", "screenshots"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)

	run := demotest.Start(t, demo.Options{
		SimNodes: 5, Interval: time.Second, FaultAfter: 2 * time.Second, Mode: "approve", APITokenFile: tokenFile})
	base := "http://" + run.HTTPAddr

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(chromiumDataDir(t)),
		chromedp.WindowSize(1024, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// Generous: detection needs several report rounds and this machine may be shared and loaded.
	bctx, cancelT := context.WithTimeout(bctx, 15*time.Minute)
	defer cancelT()

	shot := func(name string) {
		var buf []byte
		if err := chromedp.Run(bctx, chromedp.FullScreenshot(&buf, 100)); err != nil {
			t.Errorf("screenshot %s: %v", name, err)
			return
		}
		if err := os.WriteFile(filepath.Join(shots, strings.ReplaceAll(name, " ", "-")+".png"), buf, 0o644); err != nil {
			t.Error(err)
		}
	}
	// waitJS polls a predicate in the page (the page refreshes itself every 5 s).
	waitJS := func(what, expr string) {
		t.Helper()
		deadline := time.Now().Add(4 * time.Minute)
		for {
			var ok bool
			if err := chromedp.Run(bctx, chromedp.Evaluate(expr, &ok)); err != nil {
				shot("failed-" + what)
				t.Fatalf("waiting for %s: %v", what, err)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				shot("failed-" + what)
				var state string
				_ = chromedp.Run(bctx, chromedp.Evaluate(`document.querySelector("main").innerText`, &state))
				t.Fatalf("timed out waiting for %s; the page shows:\n%s", what, state)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// onPage runs actions on the page, again when the element it found was replaced before the
	// action reached it: the page re-renders its tables on every refresh, and on a loaded
	// machine a refresh can land between chromedp's query and its action on the node it found.
	onPage := func(actions ...chromedp.Action) error {
		var err error
		for range 10 {
			if err = chromedp.Run(bctx, actions...); err == nil || !strings.Contains(err.Error(), "Could not find node with given id") {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
		return err
	}
	textOf := func(sel string) string {
		t.Helper()
		var s string
		if err := onPage(chromedp.Text(sel, &s, chromedp.ByQuery)); err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	if err := chromedp.Run(bctx, chromedp.Navigate(base+"/#node/node-2")); err != nil {
		t.Fatal(err)
	}
	// The slowed node: health, score and cause in its row, evidence rows in its drill-down.
	waitJS("node-2 judged slow with evidence", `(() => {
		const r = document.querySelector('tr[data-node="node-2"]');
		return !!r && ["slow","migrating","quarantined"].includes(r.dataset.health) &&
			r.querySelector("td.score").textContent !== "0.00" && r.querySelector("td.cause").textContent !== "–" &&
			document.querySelectorAll("#evidence-subtasks tbody tr, #evidence-host tbody tr").length > 0;
	})()`)
	shot("1-node-slow")
	row := textOf(`tr[data-node="node-2"]`)
	cause := textOf(`tr[data-node="node-2"] td.cause`)
	if cause == "" || cause == "–" {
		t.Errorf("node-2 row %q names no cause", row)
	}
	var first string
	if err := chromedp.Run(bctx, chromedp.Evaluate(`document.querySelector("#nodes tbody tr").dataset.node`, &first)); err != nil {
		t.Fatal(err)
	}
	if first != "node-2" && first != "node-5" {
		t.Errorf("first row is %s; the most severe nodes (node-2 slow, node-5 unreachable) come first", first)
	}
	evidence := textOf("#detail")
	if !strings.Contains(evidence, "Sink") && !strings.Contains(evidence, "Source") && !strings.Contains(evidence, "cpu") && !strings.Contains(evidence, "steal") {
		t.Errorf("evidence names no vertex or host signal: %q", evidence)
	}

	// One spelling of vertex names: the JobManager's ("Sink: orders-out"), never the scrape's
	// sanitised label value ("Sink:_orders_out").
	if ev := textOf("#evidence-subtasks"); strings.Contains(ev, ":_") {
		t.Errorf("evidence shows sanitised vertex names: %q", ev)
	}

	// The proposed migration: no token, refused (401 shown); with the token, approved.
	waitJS("a proposed migration for node-2", `!!document.querySelector('#decisions tr[data-status="proposed"] button[data-approve]')`)
	var id string
	if err := chromedp.Run(bctx, chromedp.Evaluate(`document.querySelector('#decisions tr[data-status="proposed"]').dataset.decision`, &id)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(id, "-migrate-node-2") {
		t.Errorf("proposed decision %q is not node-2's migration", id)
	}
	if err := onPage(chromedp.Click(`#decisions button[data-approve="`+id+`"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS("the refusal without a token", `!document.querySelector("#error").hidden && document.querySelector("#error").textContent.includes("401")`)
	shot("2-approve-without-token")
	if err := chromedp.Run(bctx, chromedp.SendKeys("#token", token, chromedp.ByID), chromedp.Click("#token-form button", chromedp.ByQuery),
		chromedp.WaitVisible(`//span[@id="token-state"][text()="token set"]`)); err != nil {
		t.Fatal(err)
	}
	// A proposal can be withdrawn before the click lands (the node looked healthy again for a
	// few rounds on a loaded machine); then the next proposal is approved instead.
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			waitJS("another proposed migration", `!!document.querySelector('#decisions tr[data-status="proposed"] button[data-approve]')`)
			if err := chromedp.Run(bctx, chromedp.Evaluate(`document.querySelector('#decisions tr[data-status="proposed"]').dataset.decision`, &id)); err != nil {
				t.Fatal(err)
			}
		}
		if err := onPage(chromedp.WaitVisible(`#decisions button[data-approve="`+id+`"]:not([disabled])`, chromedp.ByQuery),
			chromedp.Click(`#decisions button[data-approve="`+id+`"]`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		waitJS("the approval to settle", `(() => { const r = document.querySelector('#decisions tr[data-decision="`+id+`"]');
			return !!r && r.dataset.status !== "proposed" && !r.querySelector("button"); })()`)
		var status string
		if err := chromedp.Run(bctx, chromedp.Evaluate(`document.querySelector('#decisions tr[data-decision="`+id+`"]').dataset.status`, &status)); err != nil {
			t.Fatal(err)
		}
		if status == "pending" || status == "running" || status == "succeeded" || status == "blocked" {
			break
		}
		t.Logf("decision %s ended %s before the approval took (attempt %d)", id, status, attempt)
		if attempt == 3 {
			t.Fatalf("three proposals withdrawn before they could be approved")
		}
	}

	// The decision's drill-down: frozen evidence, steps and the audit trail with the approval.
	if err := onPage(chromedp.Click(`#decisions tr[data-decision="`+id+`"] td`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS("the decision's audit trail", `!document.querySelector("#decision-detail").hidden &&
		!!document.querySelector('#decision-audit tr[data-audit="created"]') && !!document.querySelector('#decision-audit tr[data-audit="approved"]') &&
		document.querySelectorAll("#decision-evidence tbody tr").length > 0`)
	shot("3-decision-drill-down")
	if a := textOf("#decision-audit"); !strings.Contains(a, "status page") {
		t.Errorf("audit trail does not name the approver: %q", a)
	}

	// Three more agents cut off at once: more vanish than the breaker allows.
	for _, n := range []string{"node-1", "node-3", "node-4"} {
		run.CutOff(n)
	}
	waitJS("the circuit breaker banner", `!document.querySelector("#breaker").hidden && document.querySelector("#breaker").textContent.includes("Circuit breaker open")`)
	waitJS("the unreachable nodes marked stale", `(() => { const r = document.querySelector('tr[data-node="node-1"]');
		return !!r && r.dataset.health === "unreachable" && r.textContent.includes("stale"); })()`)
	shot("4-breaker-open")

	// Usable at 1024 px: nothing makes the page itself wider than the window.
	var overflow bool
	if err := chromedp.Run(bctx, chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow)); err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Errorf("the page is wider than a 1024 px window")
	}
}
