package ha

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
)

// load is agents enrolling without pause: every enrolment a new workload with
// a new key, through a client that knows every coordinator.
type load struct {
	mu     sync.Mutex
	ips    map[string]string // overlay IP → workload
	certs  []string          // a sample of issued certificates (PEM)
	ca     string
	ok     int
	failed []error
	stop   context.CancelFunc
	done   sync.WaitGroup
}

func (l *lab) startLoad(workers int, prev *load) *load {
	ctx, cancel := context.WithCancel(context.Background())
	ld := &load{ips: map[string]string{}, stop: cancel}
	if prev != nil {
		ld.ips, ld.certs = prev.ips, prev.certs
	}
	for k := range workers {
		ld.done.Add(1)
		go func() {
			defer ld.done.Done()
			// One client per worker, as one agent keeps one: a client per
			// enrolment would leave its idle connections open on the
			// coordinators until they time out, and from one source
			// address they pass the coordinator's per-source cap.
			c := l.all(k)
			for n := 0; ctx.Err() == nil; n++ {
				name := fmt.Sprintf("w%d-%d-%d", k, n, time.Now().UnixNano())
				// Each enrolment gets up to 30 s of retries across coordinators.
				ectx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				e, err := enrol.Workload(ectx, c, l.workload, api.Workload{Namespace: "load", Name: name})
				cancel()
				ld.mu.Lock()
				if err != nil {
					ld.failed = append(ld.failed, err)
				} else {
					ld.ok++
					if other, dup := ld.ips[e.IP]; dup {
						ld.failed = append(ld.failed, fmt.Errorf("%s given to %s and to %s", e.IP, other, name))
					}
					ld.ips[e.IP] = name
					if n%10 == 0 {
						ld.certs = append(ld.certs, e.Certificate)
					}
					ld.ca = e.CA
				}
				ld.mu.Unlock()
			}
		}()
	}
	return ld
}

// end stops the load and fails the test for any failed enrolment or address
// given twice.
func (ld *load) end(t *testing.T, what string) {
	t.Helper()
	ld.stop()
	ld.done.Wait()
	t.Logf("%s: %d enrolments, %d failed, %d distinct addresses so far", what, ld.ok, len(ld.failed), len(ld.ips))
	for i, err := range ld.failed {
		if i == 5 {
			t.Errorf("... and %d more", len(ld.failed)-5)
			break
		}
		t.Error(err)
	}
	if ld.ok == 0 {
		t.Fatal("no enrolment succeeded")
	}
}

func (l *lab) waitReady(t *testing.T, i int) {
	t.Helper()
	if err := l.wait(func() error { return l.ready(i) }, fmt.Sprintf("c%d ready", i+1)); err != nil {
		t.Fatal(err)
	}
}

// converged waits until every coordinator is ready at the same head and sees
// every other member alive in gossip.
func (l *lab) converged(t *testing.T) *api.Status {
	t.Helper()
	var first *api.Status
	err := l.wait(func() error {
		var sts []*api.Status
		for i := range l.ns {
			st, err := l.status(i)
			if err != nil {
				return err
			}
			if st.State != api.StateReady {
				return fmt.Errorf("c%d is %s: %s", i+1, st.State, st.Message)
			}
			alive := 0
			for _, m := range st.Members {
				if m.Health == "alive" && m.State == api.StateReady {
					alive++
				}
			}
			if alive != len(l.ns) {
				return fmt.Errorf("c%d sees %d ready members: %+v", i+1, alive, st.Members)
			}
			sts = append(sts, st)
		}
		for i, st := range sts[1:] {
			if st.Head != sts[0].Head || st.CAFingerprint != sts[0].CAFingerprint {
				return fmt.Errorf("c%d at %d/%s, c1 at %d/%s", i+2, st.Generation, st.Head, sts[0].Generation, sts[0].Head)
			}
		}
		first = sts[0]
		return nil
	}, "the cluster converging")
	if err != nil {
		t.Fatal(err)
	}
	return first
}

func logHas(t *testing.T, l *lab, i int, s string) bool { return count(t, l, i, s) > 0 }

func count(t *testing.T, l *lab, i int, s string) int {
	b, err := os.ReadFile(l.path(fmt.Sprintf("c%d.log", i+1)))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), s)
}

// TestCoordinatorCluster: three coordinators over one etcd find each other by
// gossip; the two without secrets recover them from the first through attested
// TLS; then the cluster keeps enrolling, without a failure or an address given
// twice, while one is killed and replaced, while one is partitioned from the
// others, and after all of them restart from the store.
func TestCoordinatorCluster(t *testing.T) {
	l := newLab(t, 3)
	for i := range 3 {
		l.start(i, l.state(i))
	}
	if err := l.wait(func() error { return l.get("http://" + ip(0) + ":7081/healthz") }, "c1 up"); err != nil {
		t.Fatal(err)
	}
	created := l.create()
	for i := range 3 {
		l.waitReady(t, i)
	}
	for _, i := range []int{1, 2} {
		if !logHas(t, l, i, "recovered the seed from a peer") {
			t.Fatalf("c%d became ready without recovering from a peer", i+1)
		}
	}
	st := l.converged(t)
	if st.CAFingerprint != created.Status.CAFingerprint {
		t.Fatalf("CA %s, created with %s", st.CAFingerprint, created.Status.CAFingerprint)
	}

	var ld *load
	t.Run("kill -9 one coordinator under enrolment load", func(t *testing.T) {
		ld = l.startLoad(24, nil)
		time.Sleep(2 * time.Second)
		l.kill(1)
		time.Sleep(2 * time.Second)
		// Its replacement has no state of its own: it recovers from a peer.
		l.start(1, l.path("c2-replacement-state"))
		l.waitReady(t, 1)
		time.Sleep(time.Second)
		ld.end(t, "kill -9")
		if !logHas(t, l, 1, "recovered the seed from a peer") {
			t.Fatal("the replacement became ready without recovering from a peer")
		}
		l.converged(t)
	})

	t.Run("partition one coordinator from the others", func(t *testing.T) {
		ld = l.startLoad(24, ld)
		issuedBefore := count(t, l, 2, "certificate issued")
		heal := l.blackhole(2)
		defer heal()
		// The partition is real: c3's gossip loses the others.
		if err := l.wait(func() error {
			st, err := l.status(2)
			if err != nil {
				return err
			}
			for _, m := range st.Members {
				if !m.Self && m.Health == "alive" {
					return fmt.Errorf("c3 still sees %s alive", m.Name)
				}
			}
			return nil
		}, "c3 losing its peers"); err != nil {
			t.Fatal(err)
		}
		// The history moves on while c3 cannot talk to its peers (it still
		// reaches the store).
		cur, err := l.status(0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.setManifest("2h", cur.Head); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if count(t, l, 2, "certificate issued") == issuedBefore {
			t.Fatal("c3 issued nothing during the partition: the test did not enrol on both sides")
		}
		heal()
		st := l.converged(t)
		ld.end(t, "partition")
		if st.Generation != cur.Generation+1 {
			t.Fatalf("generation %d after one update from %d", st.Generation, cur.Generation)
		}
	})

	t.Run("all coordinators restart", func(t *testing.T) {
		before, err := l.status(0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			l.kill(i)
		}
		// From their sealed state (the TEE's key opens it).
		l.start(0, l.state(0))
		l.start(1, l.path("c2-replacement-state"))
		l.start(2, l.state(2))
		l.converged(t)
		// From nothing but the store and a seed share (meshctl recover).
		for i := range 3 {
			l.kill(i)
		}
		for i := range 3 {
			l.start(i, l.path(fmt.Sprintf("c%d-empty-state", i+1)))
		}
		if err := l.wait(func() error { return l.recoverWithShare(0) }, "recover c1 from the seed share"); err != nil {
			t.Fatal(err)
		}
		after := l.converged(t)
		if after.CAFingerprint != before.CAFingerprint || after.Head != before.Head {
			t.Fatalf("after restarts: CA %s head %s; before CA %s head %s", after.CAFingerprint, after.Head, before.CAFingerprint, before.Head)
		}
		// Every certificate issued before still verifies against the CA the
		// cluster now issues with.
		ld = l.startLoad(4, ld)
		time.Sleep(time.Second)
		ld.end(t, "after restarts")
		pool, err := cert.NewCAPoolFromPEM([]byte(ld.ca))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ld.certs {
			c, _, err := cert.UnmarshalCertificateFromPEM([]byte(p))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pool.VerifyCertificate(time.Now(), c); err != nil {
				t.Fatalf("certificate %s issued before the restarts: %v", c.Name(), err)
			}
		}
		t.Logf("%d certificates from before the restarts verified", len(ld.certs))
	})
}
