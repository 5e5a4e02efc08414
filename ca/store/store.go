// Package store keeps the coordinator's shared state in a place the coordinator
// does not trust: content-addressed objects (manifests, transitions, the CA
// certificate), one mutable latest pointer changed only by compare-and-swap, and a
// few public bookkeeping records. Nothing secret goes here; everything that
// matters is signed or content-addressed and verified by package history.
package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
)

// Errors every backend returns.
var (
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the latest pointer (or the record given to Swap) is not at
	// the version the caller named.
	ErrConflict = errors.New("store: changed since it was read")
)

// Version identifies one value of a record written by compare-and-swap (the
// latest pointer, or a record written with Swap); opaque, backend-specific.
type Version string

// Store is what every backend implements. The linearisable part (SwapLatest) is
// always the backend's own engine: a lock on a file, etcd's transactions, the
// Kubernetes API server's resourceVersion.
type Store interface {
	// Get returns the value stored under key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put stores value under key, replacing any value.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes key; removing a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns every key starting with prefix and its value.
	List(ctx context.Context, prefix string) (map[string][]byte, error)
	// Latest returns the latest pointer and its version, or ErrNotFound.
	Latest(ctx context.Context) ([]byte, Version, error)
	// SwapLatest replaces the latest pointer if it is still at old ("" means
	// there is none yet); otherwise ErrConflict and nothing changes.
	SwapLatest(ctx context.Context, old Version, value []byte) (Version, error)
	// GetVersion is Get with the value's version, for Swap.
	GetVersion(ctx context.Context, key string) ([]byte, Version, error)
	// Swap replaces the value under key if it is still at old ("" means key
	// must not exist yet), and each of also if it is still at its Old: all
	// of them or none (otherwise ErrConflict). Records written with Swap are
	// written only with Swap (and Delete). The version returned is key's.
	Swap(ctx context.Context, key string, old Version, value []byte, also ...Record) (Version, error)
	// Remove deletes key if it is still at old, and with it the keys in
	// also, whatever their versions: all of them, or none if key is not at
	// old (ErrConflict; also when key is gone already).
	Remove(ctx context.Context, key string, old Version, also ...string) error
	// Watch sends after the latest pointer changes (by anyone), until ctx ends.
	// Notifications may be merged; readers re-read Latest.
	Watch(ctx context.Context) <-chan struct{}
}

// Record is one more record a Swap writes: Value goes under Key if Key is
// still at Old ("" means it must not exist yet).
type Record struct {
	Key   string
	Old   Version
	Value []byte
}

// The length is checked apart: a counted repetition compiles to that many
// copies of its pattern.
var keyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

func keys(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Key
	}
	return out
}

// CheckSwap checks the keys of a Swap: valid, and not the latest pointer's
// (which only SwapLatest writes).
func CheckSwap(key string, also []Record) error {
	for _, k := range append([]string{key}, keys(also)...) {
		if err := CheckKey(k); err != nil {
			return err
		}
	}
	return nil
}

// CheckKey refuses a key that is not usable in every backend, or that names
// the latest pointer (which only SwapLatest writes): every backend's Get,
// Put, Delete and Swap check their keys with it.
func CheckKey(key string) error {
	if !ValidKey(key) || key == "latest" {
		return fmt.Errorf("store: invalid key %q", key)
	}
	return nil
}

// CheckRemove checks the keys of a Remove as CheckSwap does those of a Swap,
// and that key is named at a version.
func CheckRemove(key string, old Version, also []string) error {
	if old == "" {
		return fmt.Errorf("store: remove %s at no version", key)
	}
	recs := make([]Record, len(also))
	for i, a := range also {
		recs[i].Key = a
	}
	return CheckSwap(key, recs)
}

// ValidKey reports whether key is usable in every backend.
func ValidKey(key string) bool { return len(key) <= 201 && keyRE.MatchString(key) }
