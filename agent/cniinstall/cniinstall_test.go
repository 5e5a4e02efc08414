package cniinstall_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/sealmesh/sealmesh/agent/cniinstall"
)

var entry = map[string]any{"agentSocket": "/run/sealmesh/agent.sock", "mtu": float64(1400)}

// primaries are real configurations of common primary CNIs, as they write
// them into /etc/cni/net.d.
var primaries = []struct {
	file    string
	plugins []string // the chain as the primary wrote it
}{
	{"10-bridge.conf", []string{"bridge"}},
	{"10-flannel.conflist", []string{"flannel", "portmap"}},
	{"10-calico.conflist", []string{"calico", "portmap", "bandwidth"}},
	{"05-cilium.conflist", []string{"cilium-cni"}},
}

// confDir is a directory holding copies of the named testdata files.
func confDir(t *testing.T, files ...string) string {
	dir := t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// chain is the plugin types of the configuration the runtime would load.
func chain(t *testing.T, dir string) (string, []string) {
	t.Helper()
	path, err := cniinstall.Primary(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := cniinstall.Load(path)
	if err != nil {
		t.Fatalf("the runtime could not load %s: %v", path, err)
	}
	var types []string
	for _, p := range l.Plugins {
		types = append(types, p.Network.Type)
	}
	return filepath.Base(path), types
}

func noTemporaries(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.Contains(e.Name(), "sealmesh-tmp") {
				t.Errorf("temporary file left behind: %s", e.Name())
			}
		}
	}
}

func TestInsertAndRemove(t *testing.T) {
	for _, p := range primaries {
		t.Run(p.file, func(t *testing.T) {
			dir := confDir(t, p.file)
			orig, _ := os.ReadFile(filepath.Join(dir, p.file))

			path, err := cniinstall.Insert(dir, entry)
			if err != nil {
				t.Fatal(err)
			}
			name, types := chain(t, dir)
			wantName := strings.TrimSuffix(p.file, filepath.Ext(p.file)) + ".conflist"
			if name != wantName || filepath.Base(path) != wantName {
				t.Fatalf("the runtime loads %s (Insert wrote %s), want %s", name, path, wantName)
			}
			if want := append(append([]string{}, p.plugins...), cniinstall.PluginType); strings.Join(types, ",") != strings.Join(want, ",") {
				t.Fatalf("chain %v, want %v", types, want)
			}
			if _, err := os.Stat(filepath.Join(dir, p.file)); p.file != wantName && !os.IsNotExist(err) {
				t.Fatalf("the converted %s is still there: %v", p.file, err)
			}
			l, _ := libcni.ConfListFromFile(filepath.Join(dir, wantName))
			if got := string(l.Plugins[len(l.Plugins)-1].Bytes); !strings.Contains(got, `"agentSocket":"/run/sealmesh/agent.sock"`) {
				t.Fatalf("sealmesh's entry lost its settings: %s", got)
			}

			// Again: nothing changes, not even the file's inode.
			before, _ := os.Stat(filepath.Join(dir, wantName))
			if _, err := cniinstall.Insert(dir, entry); err != nil {
				t.Fatal(err)
			}
			after, _ := os.Stat(filepath.Join(dir, wantName))
			if before.Sys().(*syscall.Stat_t).Ino != after.Sys().(*syscall.Stat_t).Ino {
				t.Fatal("a second Insert rewrote an unchanged file")
			}

			changed, err := cniinstall.Remove(dir)
			if err != nil || len(changed) != 1 {
				t.Fatalf("Remove: %v, changed %v", err, changed)
			}
			got, err := os.ReadFile(filepath.Join(dir, p.file))
			if err != nil || string(got) != string(orig) {
				t.Fatalf("after Remove %s is\n%s\nwant the original\n%s (%v)", p.file, got, orig, err)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Fatalf("after Remove the directory holds %d files, want only %s", len(ents), p.file)
			}
			noTemporaries(t, dir)
		})
	}
}

// The primary is what the runtime loads: name order over .conf, .conflist and
// .json, the first valid one; other files are left alone.
func TestPrimary(t *testing.T) {
	dir := confDir(t, "10-flannel.conflist", "10-calico.conflist")
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("00-broken.conf", `{"cniVersion": "1.0.0", "name": `)
	write("01-empty.conflist", `{"cniVersion": "1.0.0", "name": "x", "plugins": []}`)
	write("02-notes.txt", `{"cniVersion": "1.0.0", "name": "x", "type": "bridge"}`)
	write("03-old.conflist.sealmesh-tmp", `{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "bridge"}]}`)
	if p, err := cniinstall.Primary(dir); err != nil || filepath.Base(p) != "10-calico.conflist" {
		t.Fatalf("primary %s (%v), want 10-calico.conflist (sorts before 10-flannel)", p, err)
	}
	write("09-extra.json", `{"cniVersion": "1.0.0", "name": "extra", "type": "macvlan"}`)
	if p, _ := cniinstall.Primary(dir); filepath.Base(p) != "09-extra.json" {
		t.Fatalf("primary %s, want 09-extra.json", p)
	}
	if _, err := cniinstall.Insert(dir, entry); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "09-extra.conflist")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "10-calico.conflist"))
	if strings.Contains(string(b), cniinstall.PluginType) {
		t.Fatal("a configuration the runtime does not load was changed")
	}

	if _, err := cniinstall.Insert(t.TempDir(), entry); !errors.Is(err, cniinstall.ErrNoPrimary) {
		t.Fatalf("Insert into an empty directory: %v, want ErrNoPrimary", err)
	}
}

// A primary that changes its file after sealmesh went in keeps its change when
// sealmesh is removed.
func TestRemoveKeepsThePrimarysChanges(t *testing.T) {
	dir := confDir(t, "10-flannel.conflist")
	path, err := cniinstall.Insert(dir, entry)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	b = []byte(strings.Replace(string(b), `"hairpinMode": true`, `"hairpinMode": false`, 1))
	os.WriteFile(path, b, 0o644)
	if _, err := cniinstall.Remove(dir); err != nil {
		t.Fatal(err)
	}
	_, types := chain(t, dir)
	if strings.Join(types, ",") != "flannel,portmap" {
		t.Fatalf("chain after Remove %v", types)
	}
	got, _ := os.ReadFile(path)
	if !strings.Contains(string(got), `"hairpinMode": false`) {
		t.Fatalf("the primary's change was lost:\n%s", got)
	}
}

// The binary is replaced by rename, so a copy running at that moment (a pod's
// ADD in progress) neither blocks the install nor is disturbed.
func TestCopyBinaryOverARunningOne(t *testing.T) {
	bin := t.TempDir()
	if _, err := cniinstall.CopyBinary("/bin/sleep", bin, cniinstall.PluginType); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(bin, cniinstall.PluginType)
	cmd := exec.Command(dst, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// What a plain copy would meet.
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		f.Close()
		t.Fatal("a running binary could be opened for writing: the test does not show what it should")
	}
	if !errors.Is(err, syscall.ETXTBSY) {
		t.Fatalf("writing the running binary: %v, want ETXTBSY", err)
	}
	copied, err := cniinstall.CopyBinary("/bin/true", bin, cniinstall.PluginType)
	if err != nil || !copied {
		t.Fatalf("replacing the running binary: copied %v, %v", copied, err)
	}
	if out, err := exec.Command(dst).CombinedOutput(); err != nil {
		t.Fatalf("the new binary does not run: %v %s", err, out)
	}
	if cmd.ProcessState != nil {
		t.Fatal("the running copy stopped")
	}
	if copied, _ := cniinstall.CopyBinary("/bin/true", bin, cniinstall.PluginType); copied {
		t.Fatal("an identical binary was copied again")
	}
	fi, _ := os.Stat(dst)
	if fi.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v, want 0755", fi.Mode().Perm())
	}
	noTemporaries(t, bin)
}

// Run keeps the plugin chained when the primary CNI rewrites its file (as
// flannel and calico do when they restart) and when its binary is removed,
// and is ready only while it is installed.
func TestRunReinserts(t *testing.T) {
	dir, bin := confDir(t, "10-calico.conflist"), t.TempDir()
	orig, _ := os.ReadFile(filepath.Join(dir, "10-calico.conflist"))
	in, err := cniinstall.New(cniinstall.Config{ConfDir: dir, BinDir: bin, Binary: "/bin/true", Entry: entry,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if in.Ready() == nil {
		t.Fatal("ready before installing")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually := func(what string, cond func() error) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if err = cond(); err == nil {
				return
			}
		}
		t.Fatalf("%s: %v", what, err)
	}
	installed := func() error { return cniinstall.Installed(dir, bin) }
	eventually("installed at start", func() error {
		if err := installed(); err != nil {
			return err
		}
		return in.Ready()
	})

	// The primary rewrites its file without sealmesh.
	if err := os.WriteFile(filepath.Join(dir, "10-calico.conflist"), orig, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually("chained again after the primary rewrote its file", installed)

	// Someone deletes the binary.
	os.Remove(filepath.Join(bin, cniinstall.PluginType))
	eventually("binary back", installed)

	// The primary goes away: not ready (pods would not get sealmesh).
	os.Remove(filepath.Join(dir, "10-calico.conflist"))
	eventually("not ready without a primary", func() error {
		if in.Ready() == nil {
			return errors.New("still ready")
		}
		return nil
	})
	noTemporaries(t, dir, bin)
}
