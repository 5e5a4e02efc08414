// Package atomicfile replaces a file so that a crash at any point leaves either
// the old content or the new, never a mix or nothing.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// AfterStep, when set, is called after each step of Write with the step's name:
// crash tests kill the process there.
var AfterStep func(step string)

// Steps of Write, in order.
var Steps = []string{"created", "written", "synced", "closed", "renamed", "dir-synced"}

func step(s string) {
	if AfterStep != nil {
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
	tmp, err := os.CreateTemp(dir, "."+name+".*"+TempSuffix)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	step("created")
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	step("written")
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return fmt.Errorf("sync %s: %w", name, err)
		}
		step("synced")
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	step("closed")
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	step("renamed")
	if !sync {
		return nil
	}
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
