package cluster_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/test/tools"
)

// freePort is a loopback port free for both UDP and TCP, as memberlist binds
// both (a UDP-only check raced outgoing connections' TCP ports in CI).
func freePort(t *testing.T) int {
	for range 100 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		u.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return 0
}

type member struct {
	mu      sync.Mutex
	local   api.Member
	changes atomic.Int32
	c       *cluster.Cluster
	cancel  context.CancelFunc
}

func (m *member) set(gen uint64, state string) {
	m.mu.Lock()
	m.local.Generation, m.local.State = gen, state
	m.mu.Unlock()
}

func start(t *testing.T, name string, port int, join []string) *member {
	m := &member{local: api.Member{API: "https://" + name, State: api.StateRecovering}}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	c, err := cluster.Start(ctx, cluster.Config{
		Name: name, Bind: fmt.Sprintf("127.0.0.1:%d", port), Join: join,
		Local:    func() api.Member { m.mu.Lock(); defer m.mu.Unlock(); return m.local },
		OnChange: func() { m.changes.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	m.c = c
	t.Cleanup(cancel)
	return m
}

// eventually polls cond for up to 20 s: gossip converges in well under a
// second here, the bound only keeps a broken build from hanging.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("not within 20s: %s", what)
}

func TestMembersSeeEachOther(t *testing.T) {
	ports := []int{freePort(t), freePort(t), freePort(t)}
	seed := []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}
	a := start(t, "a", ports[0], nil)
	b := start(t, "b", ports[1], seed)
	c := start(t, "c", ports[2], seed)

	eventually(t, "three members everywhere", func() bool {
		return len(a.c.Members()) == 3 && len(b.c.Members()) == 3 && len(c.c.Members()) == 3
	})
	ms := b.c.Members()
	if !ms[0].Self || ms[0].Name != "b" || ms[1].Name != "a" || ms[1].API != "https://a" || ms[1].State != api.StateRecovering {
		t.Fatalf("b's view: %+v", ms)
	}

	// A new announcement reaches the others, and wakes them.
	before := c.changes.Load()
	a.set(7, api.StateReady)
	eventually(t, "c sees a at generation 7", func() bool {
		for _, m := range c.c.Members() {
			if m.Name == "a" && m.Generation == 7 && m.State == api.StateReady {
				return true
			}
		}
		return false
	})
	eventually(t, "c was told", func() bool { return c.changes.Load() > before })

	// A member that leaves is gone from the others' view.
	b.cancel()
	eventually(t, "b left", func() bool { return len(a.c.Members()) == 2 && len(c.c.Members()) == 2 })
}

// Members given one DNS name (as a headless Service gives) find each other at
// all of its addresses.
func TestJoinByDNSName(t *testing.T) {
	port := freePort(t)
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	r := tools.ServeDNS(t, map[string][]string{"coordinators.sealmesh.test": ips})
	var ms []*cluster.Cluster
	for i, ip := range ips {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		c, err := cluster.Start(ctx, cluster.Config{
			Name: fmt.Sprintf("m%d", i), Bind: fmt.Sprintf("%s:%d", ip, port),
			Join: []string{fmt.Sprintf("coordinators.sealmesh.test:%d", port)}, Resolver: r,
			Local: func() api.Member { return api.Member{API: "https://" + ip, State: api.StateReady} },
		})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, c)
	}
	eventually(t, "three members everywhere", func() bool {
		for _, c := range ms {
			if len(c.Members()) != 3 {
				return false
			}
		}
		return true
	})
}
