package ha

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/ca/api"
)

// BenchmarkCluster measures the coordinator cluster in its namespaces (three
// coordinators over one etcd, agents' enrolments from the hub; everything on
// this machine's two cores):
//   - PeerRecovery: a coordinator without secrets, from its start to ready
//     through peer recovery (gossip join, attested TLS both ways, store check);
//   - Enrol: sustained enrolments per second and their latency with 24
//     concurrent agents, against one coordinator and against three;
//   - ManifestToAll: from a manifest update's answer to every member serving it.
func BenchmarkCluster(b *testing.B) {
	l := newLab(b, 3)
	for i := range 3 {
		l.start(i, l.state(i))
	}
	if err := l.wait(func() error { return l.get("http://" + ip(0) + ":7081/healthz") }, "c1 up"); err != nil {
		b.Fatal(err)
	}
	l.create()
	for i := range 3 {
		if err := l.wait(func() error { return l.ready(i) }, "ready"); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("PeerRecovery", func(b *testing.B) {
		var total time.Duration
		for n := 0; n < b.N; n++ {
			l.kill(2)
			start := time.Now()
			l.start(2, l.path(fmt.Sprintf("c3-bench-%d-%d", n, time.Now().UnixNano())))
			if err := l.waitFast(func() error { return l.ready(2) }); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/ready")
		b.ReportMetric(0, "ns/op")
	})

	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("Enrol/coordinators=%d", n), func(b *testing.B) {
			var urls []string
			for i := range n {
				urls = append(urls, apiURL(i))
			}
			for range b.N {
				rate, p50, p99 := l.enrolFor(3*time.Second, 24, urls)
				b.ReportMetric(rate, "enrol/s")
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			}
			b.ReportMetric(0, "ns/op")
		})
	}

	b.Run("ManifestToAll", func(b *testing.B) {
		var total time.Duration
		lifetime := 2
		for range b.N {
			cur, err := l.status(0)
			if err != nil {
				b.Fatal(err)
			}
			lifetime++
			if _, err := l.setManifest(fmt.Sprintf("%dh", lifetime), cur.Head); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			var wg sync.WaitGroup
			for i := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l.waitFast(func() error {
						st, err := l.status(i)
						if err != nil {
							return err
						}
						if st.Generation <= cur.Generation || st.State != api.StateReady {
							return fmt.Errorf("c%d at %d", i+1, st.Generation)
						}
						return nil
					})
				}()
			}
			wg.Wait()
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/all")
		b.ReportMetric(0, "ns/op")
	})
}

// waitFast polls cond every 10 ms for up to 60 s.
func (l *lab) waitFast(cond func() error) error {
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = cond(); err == nil {
			return nil
		}
	}
	return err
}

// enrolFor runs workers agents enrolling against urls for d and returns the
// rate and the latency percentiles of one enrolment (nonce, evidence, enrol).
func (l *lab) enrolFor(d time.Duration, workers int, urls []string) (float64, time.Duration, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int32
	var wg sync.WaitGroup
	start := time.Now()
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rot := append(append([]string{}, urls[k%len(urls):]...), urls[:k%len(urls)]...)
			c := l.client(rot...)
			for ctx.Err() == nil {
				t0 := time.Now()
				_, err := enrol.Workload(ctx, c, l.workload, api.Workload{Namespace: "bench", Name: fmt.Sprintf("b%d", k)})
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if failed.Load() > 0 || len(lat) == 0 {
		panic(fmt.Sprintf("enrolment bench: %d failed, %d succeeded", failed.Load(), len(lat)))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return float64(len(lat)) / el.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100]
}
