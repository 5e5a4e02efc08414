package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

const latestFile = "latest"

// File is a store in a directory: one file per key, each replaced atomically
// (write a temporary file, fsync it, rename it over the old one, fsync the
// directory), so a crash at any point leaves the old or the new content, never a
// mix. Swaps hold an exclusive flock so processes sharing the directory
// cannot both win.
//
// Swaps that arrive while another is being written are written together
// (group commit): one takes the lock, checks each in turn against the
// store as the ones before it leave it, and writes the records of all that
// hold with one directory sync. A lease's durable write is most of an
// enrolment's time in the store; ten at once used to queue for ten times
// four fsyncs.
type File struct {
	dir  string
	poll time.Duration

	mu      sync.Mutex
	queue   []*swapReq // swaps waiting for the next group
	leading bool       // a swap is writing a group
}

// swapReq is one swap waiting in a group, and its outcome.
type swapReq struct {
	name  string
	old   Version
	value []byte
	also  []Record
	lead  chan struct{} // closed when this swap is to write the next group
	done  chan struct{} // closed when its outcome is set
	v     Version
	err   error
}

var _ Store = (*File)(nil)

// OpenFile opens (and creates) a file store in dir.
func OpenFile(dir string) (*File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &File{dir: dir, poll: 500 * time.Millisecond}, nil
}

// Dir is the store's directory.
func (f *File) Dir() string { return f.dir }

// Get implements Store.
func (f *File) Get(_ context.Context, key string) ([]byte, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	return f.read(key)
}

func (f *File) read(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return b, nil
}

// Put implements Store.
func (f *File) Put(_ context.Context, key string, value []byte) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	return atomicfile.Write(f.dir, key, value)
}

// Delete implements Store.
func (f *File) Delete(_ context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(f.dir, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// List implements Store.
func (f *File) List(_ context.Context, prefix string) (map[string][]byte, error) {
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || CheckKey(name) != nil {
			continue // temporary files start with '.'
		}
		b, err := f.read(name)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, nil
}

// Latest implements Store.
func (f *File) Latest(_ context.Context) ([]byte, Version, error) {
	b, err := f.read(latestFile)
	if err != nil {
		return nil, "", err
	}
	return b, version(b), nil
}

// SwapLatest implements Store.
func (f *File) SwapLatest(_ context.Context, old Version, value []byte) (Version, error) {
	return f.swap(latestFile, old, value)
}

// GetVersion implements Store; the version is the value's SHA-256.
func (f *File) GetVersion(_ context.Context, key string) ([]byte, Version, error) {
	if err := CheckKey(key); err != nil {
		return nil, "", err
	}
	b, err := f.read(key)
	if err != nil {
		return nil, "", err
	}
	return b, version(b), nil
}

// Swap implements Store.
func (f *File) Swap(_ context.Context, key string, old Version, value []byte, also ...Record) (Version, error) {
	if err := CheckSwap(key, also); err != nil {
		return "", err
	}
	return f.swap(key, old, value, also...)
}

// Remove implements Store.
func (f *File) Remove(_ context.Context, key string, old Version, also ...string) error {
	if err := CheckRemove(key, old, also); err != nil {
		return err
	}
	unlock, err := f.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := f.at(key, old); err != nil {
		return err
	}
	for _, k := range append([]string{key}, also...) {
		if err := os.Remove(filepath.Join(f.dir, k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: %w", err)
		}
	}
	return nil
}

// lock takes the store's lock (one for every key: swaps are short and rare
// next to reads) and returns its release.
func (f *File) lock() (func(), error) {
	lock, err := os.OpenFile(filepath.Join(f.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	return func() {
		unix.Flock(int(lock.Fd()), unix.LOCK_UN)
		lock.Close()
	}, nil
}

// swap compares and swaps the file name, with the records also, in the
// next group.
func (f *File) swap(name string, old Version, value []byte, also ...Record) (Version, error) {
	r := &swapReq{name: name, old: old, value: value, also: also, lead: make(chan struct{}), done: make(chan struct{})}
	f.mu.Lock()
	f.queue = append(f.queue, r)
	lead := !f.leading
	f.leading = true
	f.mu.Unlock()
	if !lead {
		select {
		case <-r.done:
			return r.v, r.err
		case <-r.lead:
		}
	}
	f.commit(r)
	return r.v, r.err
}

// commit writes the group that r leads: every swap queued once the lock
// is held. Then it hands the lead to the first swap queued since, if any.
func (f *File) commit(r *swapReq) {
	unlock, err := f.lock()
	f.mu.Lock()
	group := f.queue
	f.queue = nil
	f.mu.Unlock()
	if err == nil {
		err = f.write(group)
		unlock()
	}
	for _, g := range group {
		if g.err == nil {
			g.err = err
		}
		if g.err != nil {
			g.v = ""
		}
		if g != r {
			close(g.done)
		}
	}
	f.mu.Lock()
	if len(f.queue) > 0 {
		close(f.queue[0].lead)
	} else {
		f.leading = false
	}
	f.mu.Unlock()
}

// write checks each swap of group against the store as the swaps before
// it leave it, and writes the records of those that hold. A swap that
// does not hold gets ErrConflict; an error reading or writing is the
// caller's to give them all. The caller holds the lock.
func (f *File) write(group []*swapReq) error {
	written := map[string]Version{} // by the group so far
	at := func(name string, v Version) error {
		if cur, ok := written[name]; ok {
			if v == "" || v != cur {
				return ErrConflict
			}
			return nil
		}
		return f.at(name, v)
	}
	var files []atomicfile.File
	for _, g := range group {
		err := at(g.name, g.old)
		for _, a := range g.also {
			if err == nil {
				err = at(a.Key, a.Old)
			}
		}
		if errors.Is(err, ErrConflict) {
			g.err = err
			continue
		}
		if err != nil {
			return err
		}
		g.v = version(g.value)
		written[g.name] = g.v
		files = append(files, atomicfile.File{Name: g.name, Data: g.value})
		for _, a := range g.also {
			written[a.Key] = version(a.Value)
			files = append(files, atomicfile.File{Name: a.Key, Data: a.Value})
		}
	}
	if len(files) == 0 {
		return nil
	}
	if err := atomicfile.WriteAll(f.dir, files); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// at is nil if the record name is at version v ("" for none), ErrConflict if
// it is not. The caller holds the lock.
func (f *File) at(name string, v Version) error {
	cur, err := f.read(name)
	switch {
	case errors.Is(err, ErrNotFound):
		if v != "" {
			return ErrConflict
		}
		return nil
	case err != nil:
		return err
	case v == "" || version(cur) != v:
		return ErrConflict
	}
	return nil
}

// Watch implements Store by polling: a directory has no cheaper portable signal,
// and the latest pointer changes rarely.
func (f *File) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		_, last, _ := f.Latest(ctx)
		t := time.NewTicker(f.poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			_, v, _ := f.Latest(ctx)
			if v != last {
				last = v
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch
}

func version(b []byte) Version {
	s := sha256.Sum256(b)
	return Version(hex.EncodeToString(s[:]))
}

// SetPoll sets how often Watch looks for a change (tests shorten it).
func (f *File) SetPoll(d time.Duration) { f.poll = d }
