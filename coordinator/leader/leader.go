// Package leader elects one acting coordinator among several replicas on a Kubernetes Lease, so
// that only one of them evaluates, decides and carries decisions out while the others serve reads.
// It wraps client-go's leaderelection with tmwarden's configuration, a follower guard for the HTTP
// API, and a way for a leader that cannot act to step down and let another replica lead.
package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/tmwarden/tmwarden/api/httpv1"
)

// Environment variables the Helm chart sets on the coordinator's pods.
const (
	EnvLeaseName = "TMWARDEN_LEASE_NAME"
	EnvNamespace = "POD_NAMESPACE"
	EnvPodName   = "POD_NAME"
)

// HeaderLeader names the current leader on the follower guard's 503 answers.
const HeaderLeader = "X-Tmwarden-Leader"

// Config is the coordinator's `leader:` section. Election is on when a lease name is set (in
// the file or through TMWARDEN_LEASE_NAME); without one the coordinator acts alone.
type Config struct {
	// LeaseName is the coordination.k8s.io Lease the replicas compete for. Default
	// $TMWARDEN_LEASE_NAME; empty turns election off (a single coordinator always acts).
	LeaseName string `yaml:"lease_name"`
	// Namespace holds the Lease. Default $POD_NAMESPACE, else "default".
	Namespace string `yaml:"namespace"`
	// Identity is this replica's name in the Lease. Default $POD_NAME, else the hostname.
	Identity string `yaml:"identity"`
	// Kubeconfig is a kubeconfig path; empty means in-cluster. Default empty.
	Kubeconfig string `yaml:"kubeconfig"`
	// LeaseDuration is how long followers wait after the last renewal before they take the
	// Lease of a leader that vanished (a crash without release). Default 15s.
	LeaseDuration time.Duration `yaml:"lease_duration"`
	// RenewDeadline is how long the leader keeps trying to renew before it stops acting; it
	// must be shorter than LeaseDuration so a leader steps down before anyone else can take
	// over. Default 10s.
	RenewDeadline time.Duration `yaml:"renew_deadline"`
	// RetryPeriod is the wait between attempts to take or renew the Lease. Default 2s.
	RetryPeriod time.Duration `yaml:"retry_period"`
	// TakeOverTimeout is how long a new leader retries its take-over (reading what the cluster
	// shows marked) before it steps down and releases the Lease for a replica that can act.
	// Default 1m.
	TakeOverTimeout time.Duration `yaml:"take_over_timeout"`
}

// DefaultConfig returns the documented defaults (client-go's usual 15s/10s/2s).
func DefaultConfig() Config {
	return Config{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		TakeOverTimeout: time.Minute}
}

// Enabled reports whether the replicas elect a leader (a lease name is set).
func (c Config) Enabled() bool { return c.LeaseName != "" }

// WithEnv fills empty fields from the environment the Helm chart sets and the hostname, and
// zero durations from DefaultConfig.
func (c Config) WithEnv() Config {
	fill := func(s *string, vals ...string) {
		for _, v := range vals {
			if *s == "" {
				*s = v
			}
		}
	}
	host, _ := os.Hostname()
	fill(&c.LeaseName, os.Getenv(EnvLeaseName))
	fill(&c.Namespace, os.Getenv(EnvNamespace), "default")
	fill(&c.Identity, os.Getenv(EnvPodName), host)
	d := DefaultConfig()
	for _, p := range []struct{ v, d *time.Duration }{{&c.LeaseDuration, &d.LeaseDuration}, {&c.RenewDeadline, &d.RenewDeadline}, {&c.RetryPeriod, &d.RetryPeriod}, {&c.TakeOverTimeout, &d.TakeOverTimeout}} {
		if *p.v <= 0 {
			*p.v = *p.d
		}
	}
	return c
}

// Validate names every problem of an enabled configuration (after WithEnv).
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	if c.Identity == "" {
		errs = append(errs, errors.New("leader.identity: empty and neither POD_NAME nor the hostname is known"))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("leader.namespace: empty"))
	}
	// client-go's own rule: a leader must give up before a follower may take over.
	if c.LeaseDuration <= c.RenewDeadline {
		errs = append(errs, fmt.Errorf("leader.lease_duration %v must be longer than leader.renew_deadline %v", c.LeaseDuration, c.RenewDeadline))
	}
	if c.RenewDeadline <= time.Duration(leaderelection.JitterFactor*float64(c.RetryPeriod)) {
		errs = append(errs, fmt.Errorf("leader.renew_deadline %v must be longer than %v × leader.retry_period %v", c.RenewDeadline, leaderelection.JitterFactor, c.RetryPeriod))
	}
	return errors.Join(errs...)
}

// Elector campaigns for the Lease for as long as its Run runs.
type Elector struct {
	cfg  Config
	kube kubernetes.Interface
	log  *slog.Logger

	leading atomic.Bool
	mu      sync.Mutex
	holder  string
	// stepDown ends the current campaign (releasing the Lease); steppedDown says why.
	stepDown    context.CancelFunc
	steppedDown string
	terms       atomic.Int64
}

// New checks cfg (filled from the environment) and returns an Elector; log may be nil.
func New(cfg Config, kube kubernetes.Interface, log *slog.Logger) (*Elector, error) {
	cfg = cfg.WithEnv()
	if !cfg.Enabled() {
		return nil, errors.New("leader: no lease name (leader.lease_name or TMWARDEN_LEASE_NAME)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if kube == nil {
		return nil, errors.New("leader: no Kubernetes client")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Elector{cfg: cfg, kube: kube, log: log.With("lease", cfg.Namespace+"/"+cfg.LeaseName, "identity", cfg.Identity)}, nil
}

// Identity is this replica's name in the Lease.
func (e *Elector) Identity() string { return e.cfg.Identity }

// IsLeader reports whether this replica holds the Lease and may act now.
func (e *Elector) IsLeader() bool { return e.leading.Load() }

// Leader is the identity of the current Lease holder as last observed ("" before the first).
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder
}

// Terms counts how many times this replica became leader.
func (e *Elector) Terms() int64 { return e.terms.Load() }

// TakeOverTimeout is how long a new leader may try to take over before it must step down.
func (e *Elector) TakeOverTimeout() time.Duration { return e.cfg.TakeOverTimeout }

// SteppedDown is why this replica last stepped down, until it campaigns again ("" otherwise).
func (e *Elector) SteppedDown() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.steppedDown
}

// StepDown ends this replica's term and releases the Lease because it cannot act (why says
// so); it campaigns again only after a LeaseDuration, which gives the other replicas the first
// chance. Without a term it does nothing.
func (e *Elector) StepDown(why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stepDown == nil || !e.leading.Load() {
		return
	}
	e.steppedDown = why
	e.stepDown()
}

// Run campaigns until ctx ends. Each time this replica wins, onStarted runs with a context that
// ends when the leadership does; onStopped runs after every term, once onStarted returned. A
// replica that loses the Lease campaigns again, so onStarted must rebuild whatever it needs from
// the store and the cluster each time. On ctx's end the Lease is released, so a follower takes
// over within a RetryPeriod rather than a LeaseDuration.
func (e *Elector) Run(ctx context.Context, onStarted func(ctx context.Context), onStopped func()) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: e.cfg.LeaseName, Namespace: e.cfg.Namespace},
		Client:     e.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.cfg.Identity},
	}
	for ctx.Err() == nil {
		campaign, endCampaign := context.WithCancel(ctx)
		e.mu.Lock()
		e.stepDown, e.steppedDown = endCampaign, ""
		e.mu.Unlock()
		// termDone makes onStopped wait for onStarted: client-go runs OnStartedLeading in its own
		// goroutine and calls OnStoppedLeading without waiting for it, but the executor of the
		// old term must be stopped before anyone starts another.
		termDone := make(chan struct{})
		// client-go starts OnStartedLeading in a goroutine that may run after OnStoppedLeading
		// when the term ends at once; term guards the two so a late start does nothing.
		var term struct {
			sync.Mutex
			started, stopped bool
		}
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   e.cfg.LeaseDuration,
			RenewDeadline:   e.cfg.RenewDeadline,
			RetryPeriod:     e.cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            e.cfg.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					defer close(termDone)
					term.Lock()
					if term.stopped {
						term.Unlock()
						return
					}
					term.started = true
					e.terms.Add(1)
					e.leading.Store(true)
					term.Unlock()
					e.log.Info("leading: this coordinator acts")
					if onStarted != nil {
						onStarted(lctx)
					}
					<-lctx.Done()
				},
				OnStoppedLeading: func() {
					// client-go cancels the term's context before this call.
					term.Lock()
					e.leading.Store(false)
					term.stopped = true
					started := term.started
					term.Unlock()
					if !started {
						return // never led in this round of campaigning
					}
					<-termDone
					e.log.Info("stopped leading: this coordinator only serves reads")
					if onStopped != nil {
						onStopped()
					}
				},
				OnNewLeader: func(id string) {
					e.mu.Lock()
					e.holder = id
					e.mu.Unlock()
					if id != e.cfg.Identity {
						e.log.Info("following", "leader", id)
					}
				},
			},
		})
		if err != nil {
			endCampaign()
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(campaign)
		endCampaign()
		// A lost Lease ends le.Run; wait a little before campaigning again so that a replica that
		// cannot reach the API server does not spin. One that stepped down waits a LeaseDuration,
		// so that a follower, which retries every RetryPeriod, takes the released Lease first.
		wait := e.cfg.RetryPeriod
		e.mu.Lock()
		if why := e.steppedDown; why != "" {
			wait = e.cfg.LeaseDuration
			e.log.Warn("stepped down; campaigning again later", "reason", why, "after", wait)
		}
		e.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// FollowerGuard answers mutating requests (anything but GET and HEAD) with 503 on a follower,
// naming the leader in the body and in the X-Tmwarden-Leader header, because only the leader
// may change decisions: an approval recorded on a follower would never be carried out. Reads
// pass through so every replica serves the status page, the API and /metrics.
func (e *Elector) FollowerGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || e.IsLeader() {
			next.ServeHTTP(w, r)
			return
		}
		holder := e.Leader()
		msg := "this coordinator replica is a follower; send changes to the leader"
		if holder != "" {
			msg += " " + holder
			w.Header().Set(HeaderLeader, holder)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(httpv1.Error{Error: msg})
	})
}
