// Package store keeps the coordinator's state in a place the coordinator does not
// trust to keep secrets: only public data goes here.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// ErrNotFound is returned by Get for a name never written.
var ErrNotFound = errors.New("store: not found")

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// File is a store in a directory: one file per name, replaced atomically (write a
// temporary file, fsync it, rename it over the old one, fsync the directory) so a
// crash at any point leaves either the old or the new content, never a mix.
type File struct {
	dir string
}

// OpenFile opens (and creates) a file store in dir.
func OpenFile(dir string) (*File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &File{dir: dir}, nil
}

// Get returns the content stored under name.
func (f *File) Get(name string) ([]byte, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("store: invalid name %q", name)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return b, nil
}

// Put replaces the content stored under name.
func (f *File) Put(name string, data []byte) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("store: invalid name %q", name)
	}
	tmp, err := os.CreateTemp(f.dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("store: write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("store: sync %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(f.dir, name)); err != nil {
		return fmt.Errorf("store: replace %s: %w", name, err)
	}
	d, err := os.Open(f.dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync directory: %w", err)
	}
	return nil
}
