package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble"
)

// pebbleKV is the embedded default: one process's store on local disk under --data-dir.
type pebbleKV struct {
	mu       sync.RWMutex // held for reading by every call, for writing by close
	db       *pebble.DB
	closed   bool
	createMu sync.Mutex
}

func openPebble(dir string) (*pebbleKV, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("opening store in %s: %w", dir, err)
	}
	return &pebbleKV{db: db}, nil
}

func (s Sync) opts() *pebble.WriteOptions {
	if s {
		return pebble.Sync
	}
	return pebble.NoSync
}

func (p *pebbleKV) get(key string) ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, ErrClosed
	}
	v, closer, err := p.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

func (p *pebbleKV) set(sync Sync, pairs ...[]byte) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	b := p.db.NewBatch()
	defer b.Close()
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := b.Set(pairs[i], pairs[i+1], nil); err != nil {
			return err
		}
	}
	return b.Commit(sync.opts())
}

func (p *pebbleKV) create(key, value []byte) (bool, func() error, error) {
	p.createMu.Lock() // one process owns a pebble directory: a mutex makes get-then-set atomic
	defer p.createMu.Unlock()
	if _, err := p.get(string(key)); err == nil {
		return false, nil, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, nil, err
	}
	// The read lock is held until durable returns, so close waits for the fsync.
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return false, nil, ErrClosed
	}
	// Applied now (the next get sees it), synced later: pebble's commit pipeline gives writes
	// waiting for the WAL at the same time one fsync.
	b := p.db.NewBatch()
	err := b.Set(key, value, nil)
	if err == nil {
		err = p.db.ApplyNoSyncWait(b, pebble.Sync)
	}
	if err != nil {
		b.Close()
		p.mu.RUnlock()
		return false, nil, err
	}
	return true, func() error {
		defer p.mu.RUnlock()
		defer b.Close()
		return b.SyncWait()
	}, nil
}

func (p *pebbleKV) scan(prefix string, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	o := &pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixUpper(prefix)}
	if from != nil && !reverse {
		o.LowerBound = from
	}
	if from != nil && reverse {
		o.UpperBound = append(append([]byte(nil), from...), 0) // inclusive
	}
	it, err := p.db.NewIter(o)
	if err != nil {
		return err
	}
	defer it.Close()
	step, ok := it.Next, it.First()
	if reverse {
		step, ok = it.Prev, it.Last()
	}
	for ; ok; ok = step() {
		more, err := fn(it.Key(), it.Value())
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	return it.Error()
}

func (p *pebbleKV) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if err := p.db.Flush(); err != nil {
		p.db.Close()
		return fmt.Errorf("flushing store: %w", err)
	}
	return p.db.Close()
}

// quietLogger keeps pebble's informational chatter out of the daemon's structured log.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	slog.Error("pebble", "msg", fmt.Sprintf(format, args...))
}
func (quietLogger) Fatalf(format string, args ...any) {
	slog.Error("pebble", "msg", fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}
