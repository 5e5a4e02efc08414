// Package atomicfile replaces a file so that a crash at any point leaves either
// the old content or the new, never a mix or nothing.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// AfterStep, when set, is called after each step of Write with the step's name:
// crash tests kill the process there.
var AfterStep func(step string)

// Steps of Write, in order.
var Steps = []string{"created", "written", "synced", "closed", "renamed", "dir-synced"}

// stepMu keeps AfterStep's calls apart: WriteAll stages its files at once.
var stepMu sync.Mutex

func step(s string) {
	if AfterStep != nil {
		stepMu.Lock()
		defer stepMu.Unlock()
		AfterStep(s)
	}
}

// TempSuffix ends every temporary file Write makes, so that a directory's
// watchers can tell them from real ones (a CNI runtime reads .conf, .conflist
// and .json files; this is none of them).
const TempSuffix = ".sealmesh-tmp"

// Write replaces dir/name with data (mode 0600): temporary file in the same
// directory, fsync, rename over the old file, fsync of the directory.
func Write(dir, name string, data []byte) error { return WriteMode(dir, name, data, 0o600) }

// WriteMode is Write with the file mode perm.
func WriteMode(dir, name string, data []byte, perm os.FileMode) error {
	return write(dir, name, data, perm, true)
}

// WriteUnsynced is Write without the fsyncs, for a file that needs to
// outlive its process but not its machine: a crash of the process leaves
// the old content or the new (the rename is atomic), while after a crash
// of the machine the file may be old, new, empty or gone. An agent's
// record of a pod's attachment is such a file: the pods and their
// tunnels do not outlive the machine either. Two fsyncs cost about a
// millisecond on this machine's disks, a tenth of a pod's ADD.
func WriteUnsynced(dir, name string, data []byte) error { return write(dir, name, data, 0o600, false) }

func write(dir, name string, data []byte, perm os.FileMode, sync bool) error {
	tmp, err := stage(dir, name, data, perm, sync)
	if err != nil {
		return err
	}
	if err := replace(dir, tmp, name); err != nil {
		return err
	}
	if !sync {
		return nil
	}
	return syncDir(dir)
}

// File is one file of WriteAll.
type File struct {
	Name string
	Data []byte
}

// WriteAll replaces each of files in dir (mode 0600) as Write does, with
// one directory sync for them all: every temporary file is written and
// fsynced (at once, so that the filesystem can commit them together),
// then each is renamed over its file in order, then the directory is
// synced. A crash leaves each file old or new, never a mix; which of them
// are new is not said until WriteAll returns nil. A name given twice ends
// with the later data.
func WriteAll(dir string, files []File) error {
	if len(files) == 1 {
		return Write(dir, files[0].Name, files[0].Data)
	}
	tmps := make([]string, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Go(func() { tmps[i], errs[i] = stage(dir, f.Name, f.Data, 0o600, true) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, t := range tmps {
			if t != "" {
				os.Remove(t)
			}
		}
		return err
	}
	for i, f := range files {
		if err := replace(dir, tmps[i], f.Name); err != nil {
			for _, t := range tmps[i:] {
				os.Remove(t)
			}
			return err
		}
	}
	return syncDir(dir)
}

// stage writes data to a new temporary file beside name, fsynced if sync,
// and returns its path; on error it leaves nothing.
func stage(dir, name string, data []byte, perm os.FileMode, sync bool) (string, error) {
	tmp, err := os.CreateTemp(dir, "."+name+".*"+TempSuffix)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	fail := func(err error) (string, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	step("created")
	if err := tmp.Chmod(perm); err != nil {
		return fail(fmt.Errorf("write %s: %w", name, err))
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(fmt.Errorf("write %s: %w", name, err))
	}
	step("written")
	if sync {
		if err := tmp.Sync(); err != nil {
			return fail(fmt.Errorf("sync %s: %w", name, err))
		}
		step("synced")
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("close %s: %w", name, err)
	}
	step("closed")
	return tmp.Name(), nil
}

// replace renames the temporary file tmp over dir/name.
func replace(dir, tmp, name string) error {
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", name, err)
	}
	step("renamed")
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	step("dir-synced")
	return nil
}
