package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Etcd is a store in etcd, for coordinators on VMs without Kubernetes. Several
// coordinators share it; SwapLatest is an etcd transaction on the latest key's
// modification revision, so etcd's consensus decides every race.
type Etcd struct {
	cli    *clientv3.Client
	prefix string
}

var _ Store = (*Etcd)(nil)

// OpenEtcd connects to the etcd endpoints; every key lives under prefix.
func OpenEtcd(endpoints []string, prefix string) (*Etcd, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return &Etcd{cli: cli, prefix: strings.TrimSuffix(prefix, "/") + "/"}, nil
}

// Close ends the connection.
func (e *Etcd) Close() error { return e.cli.Close() }

func (e *Etcd) latestKey() string { return e.prefix + "latest" }

// Get implements Store.
func (e *Etcd) Get(ctx context.Context, key string) ([]byte, error) {
	if !ValidKey(key) || key == "latest" {
		return nil, fmt.Errorf("store: invalid key %q", key)
	}
	r, err := e.cli.Get(ctx, e.prefix+key)
	if err != nil {
		return nil, fmt.Errorf("store: etcd get %s: %w", key, err)
	}
	if len(r.Kvs) == 0 {
		return nil, ErrNotFound
	}
	return r.Kvs[0].Value, nil
}

// Put implements Store.
func (e *Etcd) Put(ctx context.Context, key string, value []byte) error {
	if !ValidKey(key) || key == "latest" {
		return fmt.Errorf("store: invalid key %q", key)
	}
	if _, err := e.cli.Put(ctx, e.prefix+key, string(value)); err != nil {
		return fmt.Errorf("store: etcd put %s: %w", key, err)
	}
	return nil
}

// Delete implements Store.
func (e *Etcd) Delete(ctx context.Context, key string) error {
	if !ValidKey(key) || key == "latest" {
		return fmt.Errorf("store: invalid key %q", key)
	}
	if _, err := e.cli.Delete(ctx, e.prefix+key); err != nil {
		return fmt.Errorf("store: etcd delete %s: %w", key, err)
	}
	return nil
}

// List implements Store.
func (e *Etcd) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	r, err := e.cli.Get(ctx, e.prefix+prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("store: etcd list %s: %w", prefix, err)
	}
	out := make(map[string][]byte, len(r.Kvs))
	for _, kv := range r.Kvs {
		k := strings.TrimPrefix(string(kv.Key), e.prefix)
		if k != "latest" {
			out[k] = kv.Value
		}
	}
	return out, nil
}

// Latest implements Store; the version is the key's modification revision.
func (e *Etcd) Latest(ctx context.Context) ([]byte, Version, error) {
	r, err := e.cli.Get(ctx, e.latestKey())
	if err != nil {
		return nil, "", fmt.Errorf("store: etcd get latest: %w", err)
	}
	if len(r.Kvs) == 0 {
		return nil, "", ErrNotFound
	}
	return r.Kvs[0].Value, Version(strconv.FormatInt(r.Kvs[0].ModRevision, 10)), nil
}

// SwapLatest implements Store.
func (e *Etcd) SwapLatest(ctx context.Context, old Version, value []byte) (Version, error) {
	return e.swap(ctx, e.latestKey(), old, value)
}

// GetVersion implements Store; the version is the key's modification revision.
func (e *Etcd) GetVersion(ctx context.Context, key string) ([]byte, Version, error) {
	if !ValidKey(key) || key == "latest" {
		return nil, "", fmt.Errorf("store: invalid key %q", key)
	}
	r, err := e.cli.Get(ctx, e.prefix+key)
	if err != nil {
		return nil, "", fmt.Errorf("store: etcd get %s: %w", key, err)
	}
	if len(r.Kvs) == 0 {
		return nil, "", ErrNotFound
	}
	return r.Kvs[0].Value, Version(strconv.FormatInt(r.Kvs[0].ModRevision, 10)), nil
}

// Swap implements Store.
func (e *Etcd) Swap(ctx context.Context, key string, old Version, value []byte, also ...Record) (Version, error) {
	for _, k := range append([]string{key}, keys(also)...) {
		if !ValidKey(k) || k == "latest" {
			return "", fmt.Errorf("store: invalid key %q", k)
		}
	}
	return e.swap(ctx, e.prefix+key, old, value, also...)
}

// swap is one etcd transaction on the key's revisions, which also puts also.
func (e *Etcd) swap(ctx context.Context, key string, old Version, value []byte, also ...Record) (Version, error) {
	var cmp clientv3.Cmp
	if old == "" {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	} else {
		rev, err := strconv.ParseInt(string(old), 10, 64)
		if err != nil {
			return "", ErrConflict // a version this backend never gave out
		}
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	ops := []clientv3.Op{clientv3.OpPut(key, string(value))}
	for _, a := range also {
		ops = append(ops, clientv3.OpPut(e.prefix+a.Key, string(a.Value)))
	}
	r, err := e.cli.Txn(ctx).If(cmp).Then(ops...).Commit()
	if err != nil {
		return "", fmt.Errorf("store: etcd swap %s: %w", strings.TrimPrefix(key, e.prefix), err)
	}
	if !r.Succeeded {
		return "", ErrConflict
	}
	return Version(strconv.FormatInt(r.Header.Revision, 10)), nil
}

// Watch implements Store with an etcd watch on the latest key.
func (e *Etcd) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		for resp := range e.cli.Watch(clientv3.WithRequireLeader(ctx), e.latestKey()) {
			if resp.Err() != nil {
				continue
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch
}
