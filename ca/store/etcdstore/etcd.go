// Package etcdstore is the coordinators' store in etcd, for coordinators on VMs
// without Kubernetes. It is a package of its own so that only the coordinator
// links etcd's client.
package etcdstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sealmesh/sealmesh/ca/store"
)

// Store is a store in etcd, for coordinators on VMs without Kubernetes. Several
// coordinators share it; SwapLatest is an etcd transaction on the latest key's
// modification revision, so etcd's consensus decides every race.
type Store struct {
	cli    *clientv3.Client
	prefix string

	mu         sync.Mutex
	queue      []*pendingSwap // Swaps waiting for a transaction
	committing bool           // a Swap's goroutine is sending the queue
}

var _ store.Store = (*Store)(nil)

// Open connects to the etcd endpoints; every key lives under prefix.
func Open(endpoints []string, prefix string) (*Store, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return &Store{cli: cli, prefix: strings.TrimSuffix(prefix, "/") + "/"}, nil
}

// Close ends the connection.
func (e *Store) Close() error { return e.cli.Close() }

func (e *Store) latestKey() string { return e.prefix + "latest" }

// Get implements store.Store.
func (e *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	r, err := e.cli.Get(ctx, e.prefix+key)
	if err != nil {
		return nil, fmt.Errorf("store: etcd get %s: %w", key, err)
	}
	if len(r.Kvs) == 0 {
		return nil, store.ErrNotFound
	}
	return r.Kvs[0].Value, nil
}

// Put implements store.Store.
func (e *Store) Put(ctx context.Context, key string, value []byte) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	if _, err := e.cli.Put(ctx, e.prefix+key, string(value)); err != nil {
		return fmt.Errorf("store: etcd put %s: %w", key, err)
	}
	return nil
}

// Delete implements store.Store.
func (e *Store) Delete(ctx context.Context, key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	if _, err := e.cli.Delete(ctx, e.prefix+key); err != nil {
		return fmt.Errorf("store: etcd delete %s: %w", key, err)
	}
	return nil
}

// List implements store.Store.
func (e *Store) List(ctx context.Context, prefix string) (map[string][]byte, error) {
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

// Latest implements store.Store; the version is the key's modification revision.
func (e *Store) Latest(ctx context.Context) ([]byte, store.Version, error) {
	r, err := e.cli.Get(ctx, e.latestKey())
	if err != nil {
		return nil, "", fmt.Errorf("store: etcd get latest: %w", err)
	}
	if len(r.Kvs) == 0 {
		return nil, "", store.ErrNotFound
	}
	return r.Kvs[0].Value, store.Version(strconv.FormatInt(r.Kvs[0].ModRevision, 10)), nil
}

// SwapLatest implements store.Store.
func (e *Store) SwapLatest(ctx context.Context, old store.Version, value []byte) (store.Version, error) {
	return e.swap(ctx, e.latestKey(), old, value)
}

// GetVersion implements store.Store; the version is the key's modification revision.
func (e *Store) GetVersion(ctx context.Context, key string) ([]byte, store.Version, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, "", err
	}
	r, err := e.cli.Get(ctx, e.prefix+key)
	if err != nil {
		return nil, "", fmt.Errorf("store: etcd get %s: %w", key, err)
	}
	if len(r.Kvs) == 0 {
		return nil, "", store.ErrNotFound
	}
	return r.Kvs[0].Value, store.Version(strconv.FormatInt(r.Kvs[0].ModRevision, 10)), nil
}

// Swap implements store.Store. Swaps made at the same time go to etcd together,
// as one transaction (see commit).
func (e *Store) Swap(ctx context.Context, key string, old store.Version, value []byte, also ...store.Record) (store.Version, error) {
	if err := store.CheckSwap(key, also); err != nil {
		return "", err
	}
	if len(also) >= maxBatchOps {
		return "", fmt.Errorf("store: a swap of %d records (at most %d)", len(also)+1, maxBatchOps)
	}
	recs := []store.Record{{Key: e.prefix + key, Old: old, Value: value}}
	for _, a := range also {
		recs = append(recs, store.Record{Key: e.prefix + a.Key, Old: a.Old, Value: a.Value})
	}
	return e.queue1(ctx, key, &pendingSwap{ctx: ctx, recs: recs, done: make(chan struct{})})
}

// queue1 queues p for the next transaction and waits for its outcome.
func (e *Store) queue1(ctx context.Context, key string, p *pendingSwap) (store.Version, error) {
	e.mu.Lock()
	e.queue = append(e.queue, p)
	lead := !e.committing
	e.committing = true
	e.mu.Unlock()
	if lead {
		go e.commit()
	}
	select {
	case <-p.done:
		return p.version, p.err
	case <-ctx.Done():
		// Not sent if it is still queued; if it is in flight, it may be
		// made: as with any request whose answer was lost, the caller
		// cannot know.
		return "", fmt.Errorf("store: etcd swap %s: %w", key, ctx.Err())
	}
}

// Remove implements store.Store: one transaction, sent with the swaps made at the
// same time (group commit).
func (e *Store) Remove(ctx context.Context, key string, old store.Version, also ...string) error {
	if err := store.CheckRemove(key, old, also); err != nil {
		return err
	}
	if len(also) >= maxBatchOps {
		return fmt.Errorf("store: a remove of %d records (at most %d)", len(also)+1, maxBatchOps)
	}
	recs := []store.Record{{Key: e.prefix + key, Old: old}}
	for _, a := range also {
		recs = append(recs, store.Record{Key: e.prefix + a})
	}
	_, err := e.queue1(ctx, key, &pendingSwap{ctx: ctx, recs: recs, remove: true, done: make(chan struct{})})
	return err
}

// maxBatchOps bounds the puts (and the comparisons) of one transaction, below
// etcd's default --max-txn-ops of 128.
const maxBatchOps = 64

// swapTimeout bounds one transaction: it carries swaps of several callers,
// so none of their contexts can be its own.
const swapTimeout = 30 * time.Second

// pendingSwap is a Swap waiting for its transaction.
type pendingSwap struct {
	ctx  context.Context // the caller's: once done, the swap is not sent
	recs []store.Record  // full keys
	// remove: the records are deleted, on condition that the first is at
	// its Old (a Remove).
	remove  bool
	done    chan struct{}
	version store.Version
	err     error
}

// commit sends the queued swaps until none are left: whatever queued while
// a transaction was in flight goes in the next one, together. This is group
// commit: under load, one transaction (one gRPC call, one raft entry) carries
// many enrolments' leases, and a lone swap waits for nothing. The Swap that
// finds no commit running starts one.
func (e *Store) commit() {
	for {
		e.mu.Lock()
		batch, rest := takeBatch(e.queue)
		e.queue = rest
		if len(batch) == 0 {
			e.committing = false
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		batch = slices.DeleteFunc(batch, func(p *pendingSwap) bool {
			if p.ctx.Err() != nil {
				p.err = p.ctx.Err()
				close(p.done)
				return true
			}
			return false
		})
		if len(batch) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), swapTimeout)
		e.send(ctx, batch)
		cancel()
		for _, p := range batch {
			close(p.done)
		}
	}
}

// takeBatch splits the queue into the swaps of the next transaction (in
// order, as many as fit, no key twice: etcd refuses a transaction that puts
// one key twice) and the rest.
func takeBatch(queue []*pendingSwap) (batch, rest []*pendingSwap) {
	seen := map[string]bool{}
	ops := 0
	for _, p := range queue {
		clash := ops+len(p.recs) > maxBatchOps
		for _, r := range p.recs {
			clash = clash || seen[r.Key]
		}
		if clash {
			rest = append(rest, p)
			continue
		}
		for _, r := range p.recs {
			seen[r.Key] = true
		}
		ops += len(p.recs)
		batch = append(batch, p)
	}
	return batch, rest
}

// send makes the swaps in one etcd transaction and sets each one's outcome.
// Each swap is a transaction of its own nested in it (etcd since 3.3), with
// its own comparisons: one that lost leaves the others made, so a lost
// address costs only its own enrolment another try.
func (e *Store) send(ctx context.Context, batch []*pendingSwap) {
	var sent []*pendingSwap
	var ops []clientv3.Op
	for _, p := range batch {
		cmps, puts, ok := p.ops()
		if !ok {
			p.err = store.ErrConflict // a version this backend never gave out
			continue
		}
		sent = append(sent, p)
		ops = append(ops, clientv3.OpTxn(cmps, puts, nil))
	}
	if len(sent) == 0 {
		return
	}
	r, err := e.cli.Txn(ctx).Then(ops...).Commit()
	for i, p := range sent {
		switch {
		case err != nil:
			p.err = fmt.Errorf("store: etcd swap %s: %w", strings.TrimPrefix(p.recs[0].Key, e.prefix), err)
		case !r.Responses[i].GetResponseTxn().GetSucceeded():
			p.err = store.ErrConflict
		default:
			p.version = store.Version(strconv.FormatInt(r.Header.Revision, 10))
		}
	}
}

// ops are the swap's comparisons (every record at its version) and puts;
// false for a version this backend never gave out.
func (p *pendingSwap) ops() ([]clientv3.Cmp, []clientv3.Op, bool) {
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	if p.remove {
		cmp, ok := at(p.recs[0].Key, p.recs[0].Old)
		if !ok {
			return nil, nil, false
		}
		for _, r := range p.recs {
			puts = append(puts, clientv3.OpDelete(r.Key))
		}
		return []clientv3.Cmp{cmp}, puts, true
	}
	for _, r := range p.recs {
		cmp, ok := at(r.Key, r.Old)
		if !ok {
			return nil, nil, false
		}
		cmps = append(cmps, cmp)
		puts = append(puts, clientv3.OpPut(r.Key, string(r.Value)))
	}
	return cmps, puts, true
}

// at is the comparison "key is at version old" ("" for none); false for a
// version etcd never gave out.
func at(key string, old store.Version) (clientv3.Cmp, bool) {
	if old == "" {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0), true
	}
	rev, err := strconv.ParseInt(string(old), 10, 64)
	if err != nil {
		return clientv3.Cmp{}, false
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", rev), true
}

// swap is one etcd transaction on the key's revision (the latest pointer's).
func (e *Store) swap(ctx context.Context, key string, old store.Version, value []byte) (store.Version, error) {
	cmps, puts, ok := (&pendingSwap{recs: []store.Record{{Key: key, Old: old, Value: value}}}).ops()
	if !ok {
		return "", store.ErrConflict
	}
	r, err := e.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
	if err != nil {
		return "", fmt.Errorf("store: etcd swap %s: %w", strings.TrimPrefix(key, e.prefix), err)
	}
	if !r.Succeeded {
		return "", store.ErrConflict
	}
	return store.Version(strconv.FormatInt(r.Header.Revision, 10)), nil
}

// Watch implements store.Store with an etcd watch on the latest key.
func (e *Store) Watch(ctx context.Context) <-chan struct{} {
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

var _ store.Follower = (*Store)(nil)

// Follow implements store.Follower: a listing, then an etcd watch on the prefix
// from the listing's revision, so no change falls between the two. A watch
// etcd ends (its history compacted past it, or no leader) is followed by a
// new listing.
func (e *Store) Follow(ctx context.Context, prefix string) <-chan store.Update {
	ch := make(chan store.Update, 16)
	go func() {
		defer close(ch)
		for {
			r, err := e.cli.Get(ctx, e.prefix+prefix, clientv3.WithPrefix())
			if err != nil {
				if !store.RetryWait(ctx) {
					return
				}
				continue
			}
			u := store.Update{Reset: true}
			for _, kv := range r.Kvs {
				if c := e.change(kv.Key, kv.Value, kv.ModRevision, false); c.Key != "latest" {
					u.Changes = append(u.Changes, c)
				}
			}
			if !store.SendUpdate(ctx, ch, u) {
				return
			}
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for resp := range e.cli.Watch(wctx, e.prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(r.Header.Revision+1)) {
				if resp.Err() != nil {
					break
				}
				var u store.Update
				for _, ev := range resp.Events {
					if c := e.change(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, ev.Type == clientv3.EventTypeDelete); c.Key != "latest" {
						u.Changes = append(u.Changes, c)
					}
				}
				if len(u.Changes) > 0 && !store.SendUpdate(ctx, ch, u) {
					break
				}
			}
			cancel()
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return ch
}

func (e *Store) change(key, value []byte, rev int64, deleted bool) store.Change {
	c := store.Change{Key: strings.TrimPrefix(string(key), e.prefix), Deleted: deleted}
	if !deleted {
		c.Value, c.Version = value, store.Version(strconv.FormatInt(rev, 10))
	}
	return c
}
