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
// and plugin: a chain's ADD less the sum of its plugins is libcni's own work
// (its cache, the conflist's versions), and the sum shows which plugin the
// difference between two chains sits in.
type PluginTimes struct {
	invoke.DefaultExec
	mu    sync.Mutex
	times map[string][]time.Duration // "ADD sealmesh-cni"
}

func newPluginTimes() *PluginTimes {
	return &PluginTimes{
		DefaultExec: invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}},
		times:       map[string][]time.Duration{},
	}
}

// ExecPlugin times the plugin's exec, from its start to its exit.
func (p *PluginTimes) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	t0 := time.Now()
	out, err := p.DefaultExec.ExecPlugin(ctx, path, stdin, environ)
	d := time.Since(t0)
	cmd := "?"
	for _, e := range environ {
		if v, ok := strings.CutPrefix(e, "CNI_COMMAND="); ok {
			cmd = v
		}
	}
	key := cmd + " " + filepath.Base(path)
	p.mu.Lock()
	p.times[key] = append(p.times[key], d)
	p.mu.Unlock()
	return out, err
}

// Take returns the times recorded since the last Take, and forgets them.
func (p *PluginTimes) Take() map[string][]time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.times
	p.times = map[string][]time.Duration{}
	return t
}
