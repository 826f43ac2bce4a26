package store

import "errors"

// ErrClosed is returned by every call after Close: a write racing shutdown fails with an error
// its caller logs, instead of reaching a closed database.
var ErrClosed = errors.New("store is closed")

// kv is what the store needs of its backend: ordered keys, prefix scans both ways, batches, and
// a create-if-absent that makes event ids unique when replicas share the backend. pebble (one
// process, on local disk) and etcd (every replica) implement it.
type kv interface {
	get(key string) ([]byte, error) // ErrNotFound when absent
	// set writes the pairs (key, value, key, value, ...) atomically.
	set(sync Sync, pairs ...[]byte) error
	// create writes key only if it does not exist yet, and says whether it did. The write is
	// visible when create returns and durable when durable returns nil: callers that hold a lock
	// around create wait for the disk after releasing it.
	create(key, value []byte) (created bool, durable func() error, err error)
	// scan calls fn for the keys under prefix from from (inclusive; nil: the first or, reverse,
	// the last) in key order or reverse order, until fn returns false.
	scan(prefix string, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error
	close() error
}
