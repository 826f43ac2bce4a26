package statuspage_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestApproveAndDrillDownByClicking drives the page in headless Chromium over the DevTools
// protocol: clicking a node row opens its drill-down, clicking approve POSTs the approval.
func TestApproveAndDrillDownByClicking(t *testing.T) {
	bin := chromium(t)
	fake := &fakeDecisions{}
	base := startCoordinator(t, fake)

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	var detail, collectors string
	err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`tr[data-node="worker-3"]`, chromedp.ByQuery),
		chromedp.Click(`tr[data-node="worker-3"] td.cause`, chromedp.ByQuery),
		chromedp.WaitVisible(`#detail`, chromedp.ByID),
		chromedp.WaitVisible(`#collectors tr[data-collector="runqueue"]`, chromedp.ByQuery),
		chromedp.Text(`#detail-name`, &detail, chromedp.ByID),
		chromedp.Text(`#collectors`, &collectors, chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("drill-down by click: %v", err)
	}
	if detail != "worker-3" || !strings.Contains(collectors, "kernel lacks BTF on worker-3") {
		t.Errorf("drill-down shows %q with collectors %q", detail, collectors)
	}

	err = chromedp.Run(ctx,
		chromedp.WaitVisible(`button[data-approve="d-2"]`, chromedp.ByQuery),
		chromedp.Click(`button[data-approve="d-2"]`, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("clicking approve: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fake.mu.Lock()
		got := slices.Clone(fake.approved)
		fake.mu.Unlock()
		if len(got) > 0 {
			if !slices.Equal(got, []string{"d-2"}) {
				t.Errorf("approvals posted: %v, want [d-2]", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("clicking approve posted nothing to /api/v1/decisions/d-2/approve")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var errText string
	if err := chromedp.Run(ctx, chromedp.Sleep(200*time.Millisecond), chromedp.Evaluate(`document.querySelector("#error").hidden ? "" : document.querySelector("#error").textContent`, &errText)); err != nil {
		t.Fatal(err)
	}
	if errText != "" {
		t.Errorf("page shows an error after approving: %q", errText)
	}
}
