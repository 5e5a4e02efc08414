package mesh

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
)

// PluginTimes records how long each plugin exec of a chain took, by command
// and plugin: it shows which plugin the difference between two chains sits
// in, and a chain's ADD less its plugins' execs is libcni's own work and
// whatever the caller timed with it.
type PluginTimes struct {
	invoke.DefaultExec
	mu    sync.Mutex
	times map[PluginExec][]time.Duration
}

// PluginExec names the execs of one plugin for one CNI command.
type PluginExec struct {
	Command string // CNI_COMMAND: ADD, DEL, ...
	Plugin  string // the plugin binary's name
}

func newPluginTimes() *PluginTimes {
	return &PluginTimes{
		DefaultExec: invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}},
		times:       map[PluginExec][]time.Duration{},
	}
}

// ExecPlugin times the plugin's exec, from its start to its exit.
func (p *PluginTimes) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	t0 := time.Now()
	out, err := p.DefaultExec.ExecPlugin(ctx, path, stdin, environ)
	d := time.Since(t0)
	key := PluginExec{Command: "?", Plugin: filepath.Base(path)}
	for _, e := range environ {
		if v, ok := strings.CutPrefix(e, "CNI_COMMAND="); ok {
			key.Command = v
		}
	}
	p.mu.Lock()
	p.times[key] = append(p.times[key], d)
	p.mu.Unlock()
	return out, err
}

// Take returns the times recorded since the last Take, and forgets them.
func (p *PluginTimes) Take() map[PluginExec][]time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.times
	p.times = map[PluginExec][]time.Duration{}
	return t
}
