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
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

const latestFile = "latest"

// File is a store in a directory: one file per key, each replaced atomically
// (write a temporary file, fsync it, rename it over the old one, fsync the
// directory), so a crash at any point leaves the old or the new content, never a
// mix. SwapLatest holds an exclusive flock so processes sharing the directory
// cannot both win.
type File struct {
	dir  string
	poll time.Duration
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

// swap compares and swaps the file name under the store's lock.
func (f *File) swap(name string, old Version, value []byte, also ...Record) (Version, error) {
	unlock, err := f.lock()
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := f.at(name, old); err != nil {
		return "", err
	}
	for _, a := range also {
		if err := f.at(a.Key, a.Old); err != nil {
			return "", err
		}
	}
	if err := atomicfile.Write(f.dir, name, value); err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	for _, a := range also {
		if err := atomicfile.Write(f.dir, a.Key, a.Value); err != nil {
			return "", fmt.Errorf("store: %w", err)
		}
	}
	return version(value), nil
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
