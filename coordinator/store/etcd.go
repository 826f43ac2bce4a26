package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Backends.
const (
	BackendPebble = "pebble"
	BackendEtcd   = "etcd"
)

// Config is the coordinator's `store:` section.
type Config struct {
	// Backend is pebble (default): an embedded store on this replica's disk under data_dir, or
	// etcd: every replica reads and writes one etcd, so a new leader finds the whole decision
	// log, audit, command records, node records and event history (docs/high-availability.md).
	Backend string     `yaml:"backend" json:"backend"`
	Etcd    EtcdConfig `yaml:"etcd" json:"etcd"`
}

// EtcdConfig is `store.etcd:`.
type EtcdConfig struct {
	// Endpoints are the etcd client URLs. Required with backend etcd.
	Endpoints []string `yaml:"endpoints" json:"endpoints"`
	// Prefix is put before every key, so one etcd can hold more than one tmwarden. Default /tmwarden/.
	Prefix string `yaml:"prefix" json:"prefix"`
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout" json:"dial_timeout"`
	// RequestTimeout bounds one request. Default 10s.
	RequestTimeout time.Duration `yaml:"request_timeout" json:"request_timeout"`
	// CAFile, CertFile and KeyFile turn on TLS (client certificate optional). Default off.
	CAFile   string `yaml:"ca_file" json:"ca_file"`
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Backend: BackendPebble, Etcd: EtcdConfig{Prefix: "/tmwarden/", DialTimeout: 5 * time.Second, RequestTimeout: 10 * time.Second}}
}

// Validate refuses an unknown backend and, with etcd, a missing endpoint or a zero timeout.
func (c Config) Validate() error {
	switch c.Backend {
	case "", BackendPebble:
		return nil
	case BackendEtcd:
	default:
		return fmt.Errorf("store.backend %q: want %s or %s", c.Backend, BackendPebble, BackendEtcd)
	}
	var errs []error
	if len(c.Etcd.Endpoints) == 0 {
		errs = append(errs, errors.New("store.etcd.endpoints: at least one etcd URL is required with store.backend etcd"))
	}
	if c.Etcd.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("store.etcd.dial_timeout %v: must be positive", c.Etcd.DialTimeout))
	}
	if c.Etcd.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("store.etcd.request_timeout %v: must be positive", c.Etcd.RequestTimeout))
	}
	return errors.Join(errs...)
}

// etcdPage is how many keys one range request reads.
const etcdPage = 500

// etcdKV keeps the store's keys in etcd under a prefix.
type etcdKV struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
}

func openEtcd(cfg EtcdConfig) (*etcdKV, error) {
	d := DefaultConfig().Etcd
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("store.etcd.endpoints: at least one etcd URL is required with store.backend etcd")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = d.Prefix
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = d.DialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	var tc *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" {
		var err error
		tc, err = transport.TLSInfo{TrustedCAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("store.etcd TLS: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: cfg.DialTimeout, TLS: tc, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd %v: %w", cfg.Endpoints, err)
	}
	e := &etcdKV{cli: cli, prefix: cfg.Prefix, timeout: cfg.RequestTimeout}
	// Fail at start, with the reason, rather than at the first write.
	ctx, cancel := e.ctx()
	defer cancel()
	if _, err := cli.Get(ctx, e.prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("reaching etcd %v: %w", cfg.Endpoints, err)
	}
	return e, nil
}

func (e *etcdKV) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), e.timeout)
}

func (e *etcdKV) get(key string) ([]byte, error) {
	ctx, cancel := e.ctx()
	defer cancel()
	r, err := e.cli.Get(ctx, e.prefix+key)
	if err != nil {
		return nil, fmt.Errorf("reading %s from etcd: %w", key, err)
	}
	if len(r.Kvs) == 0 {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return r.Kvs[0].Value, nil
}

// set ignores Sync: etcd commits every write to a quorum's disks before it answers.
func (e *etcdKV) set(_ Sync, pairs ...[]byte) error {
	var ops []clientv3.Op
	for i := 0; i+1 < len(pairs); i += 2 {
		ops = append(ops, clientv3.OpPut(e.prefix+string(pairs[i]), string(pairs[i+1])))
	}
	ctx, cancel := e.ctx()
	defer cancel()
	if _, err := e.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("writing to etcd: %w", err)
	}
	return nil
}

func (e *etcdKV) create(key, value []byte) (bool, func() error, error) {
	k := e.prefix + string(key)
	ctx, cancel := e.ctx()
	defer cancel()
	r, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, string(value))).Commit()
	if err != nil {
		return false, nil, fmt.Errorf("writing %s to etcd: %w", key, err)
	}
	// etcd answers after its quorum has the write: durable already.
	return r.Succeeded, func() error { return nil }, nil
}

// scan reads etcdPage keys per request, so a long event log is never read in one answer.
func (e *etcdKV) scan(prefix string, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	lo, hi := e.prefix+prefix, e.prefix+string(prefixUpper(prefix))
	if from != nil && !reverse {
		lo = e.prefix + string(from)
	}
	if from != nil && reverse {
		hi = e.prefix + string(from) + "\x00"
	}
	order := clientv3.SortAscend
	if reverse {
		order = clientv3.SortDescend
	}
	for lo < hi {
		ctx, cancel := e.ctx()
		r, err := e.cli.Get(ctx, lo, clientv3.WithRange(hi), clientv3.WithLimit(etcdPage), clientv3.WithSort(clientv3.SortByKey, order))
		cancel()
		if err != nil {
			return fmt.Errorf("scanning %s in etcd: %w", prefix, err)
		}
		for _, kv := range r.Kvs {
			more, err := fn(kv.Key[len(e.prefix):], kv.Value)
			if err != nil || !more {
				return err
			}
		}
		if !r.More || len(r.Kvs) == 0 {
			return nil
		}
		last := string(r.Kvs[len(r.Kvs)-1].Key)
		if reverse {
			hi = last
		} else {
			lo = last + "\x00"
		}
	}
	return nil
}

func (e *etcdKV) close() error { return e.cli.Close() }
