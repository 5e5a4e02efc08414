package cniinstall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Config is what Run keeps installed.
type Config struct {
	ConfDir string // the runtime's network configurations, e.g. /etc/cni/net.d
	BinDir  string // the runtime's plugins, e.g. /opt/cni/bin
	// Binary is the sealmesh-cni to copy into BinDir.
	Binary string
	// Entry is sealmesh-cni's plugin configuration (agentSocket, mtu, ...).
	Entry map[string]any
	Log   *slog.Logger
	// Resync re-checks this often even without a change notification
	// (default 30 s): a missed event must not leave pods unencrypted.
	Resync time.Duration
}

// Installer keeps sealmesh-cni installed; Ready reports whether it is.
type Installer struct {
	cfg   Config
	ready atomic.Pointer[error]
}

// New checks cfg.
func New(cfg Config) (*Installer, error) {
	if cfg.ConfDir == "" || cfg.BinDir == "" || cfg.Binary == "" {
		return nil, errors.New("cniinstall: the CNI configuration and binary directories and the plugin binary are required")
	}
	if cfg.Resync == 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	i := &Installer{cfg: cfg}
	err := errors.New("cniinstall: not installed yet")
	i.ready.Store(&err)
	return i, nil
}

// Ready is nil while the plugin is installed and chained last in the primary
// configuration.
func (i *Installer) Ready() error { return *i.ready.Load() }

// Once installs the binary and the entry and records readiness.
func (i *Installer) Once() error {
	err := i.once()
	if err == nil {
		err = Installed(i.cfg.ConfDir, i.cfg.BinDir)
	}
	i.ready.Store(&err)
	return err
}

func (i *Installer) once() error {
	copied, err := CopyBinary(i.cfg.Binary, i.cfg.BinDir, PluginType)
	if err != nil {
		return err
	}
	if copied {
		i.cfg.Log.Info("installed the plugin binary", "dir", i.cfg.BinDir)
	}
	path, err := Insert(i.cfg.ConfDir, i.cfg.Entry)
	if err != nil {
		return err
	}
	i.cfg.Log.Debug("chained", "file", path)
	return nil
}

// Run installs, then re-installs whenever the configuration directory changes
// (the primary CNI rewrote its file, someone removed the plugin) and every
// Resync, until ctx ends. It does not uninstall: pods created while the agent
// is away must fail (sealmesh-cni answers "try again later") rather than start
// without their encrypted interface. Uninstall with Remove.
func (i *Installer) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("cniinstall: watch: %w", err)
	}
	defer w.Close()
	if err := w.Add(i.cfg.ConfDir); err != nil {
		return fmt.Errorf("cniinstall: watch %s: %w", i.cfg.ConfDir, err)
	}
	if err := w.Add(i.cfg.BinDir); err != nil {
		return fmt.Errorf("cniinstall: watch %s: %w", i.cfg.BinDir, err)
	}
	tick := time.NewTicker(i.cfg.Resync)
	defer tick.Stop()
	// A burst of events (a primary writing several files) settles first.
	settle := time.NewTimer(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			i.cfg.Log.Warn("watching the CNI directories", "err", err)
		case ev := <-w.Events:
			if strings.HasSuffix(ev.Name, tmpSuffix) {
				continue // our own writes in progress
			}
			settle.Reset(100 * time.Millisecond)
		case <-tick.C:
			settle.Reset(0)
		case <-settle.C:
			before := i.Ready()
			if err := i.Once(); err != nil {
				i.cfg.Log.Warn("sealmesh-cni is not installed; retrying on the next change", "err", err)
			} else if before != nil {
				i.cfg.Log.Info("sealmesh-cni chained into the primary network configuration")
			}
		}
	}
}
