package ha

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/ipam"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/kubestore"
	"github.com/sealmesh/sealmesh/test/tools"
)

// killsPerConfig is how many SIGKILLs each configuration of the schedule
// deals out.
const killsPerConfig = 30

// TestKillSchedule kills coordinators with SIGKILL on a seeded random
// schedule (one at a time, or two at once) while clients update the
// manifest, enrol, renew and release, on an etcd store and on a file store.
// Afterwards an independent check, made from the store itself and from what
// the clients were told: the history verifies with the seed; every
// acknowledged update is in it; no address is in two live certificates of
// different keys; no renewal moved a key; no released certificate is still
// listed. Outcomes a client could not learn (the coordinator died with the
// request) are reported; a manifest update is then sent again, which is safe
// (the signed request is its own idempotency key) and tells whether it had
// been applied.
//
// SEALMESH_KILL_SEED reruns one schedule.
func TestKillSchedule(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SEALMESH_KILL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SEALMESH_KILL_SEED: %v", err)
		}
	}
	t.Logf("schedule seed %d (rerun with SEALMESH_KILL_SEED=%d)", seed, seed)
	for _, c := range []struct {
		name   string
		store  string
		atOnce int
	}{
		{"etcd, one at a time", "etcd", 1},
		{"etcd, two at once", "etcd", 2},
		{"file, one at a time", "file", 1},
		{"file, two at once", "file", 2},
		{"kubernetes, one at a time", "kubernetes", 1},
		{"kubernetes, two at once", "kubernetes", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			killSchedule(t, rand.New(rand.NewPCG(seed, uint64(c.atOnce))), c.store, c.atOnce)
		})
	}
}

// issued is a certificate a client was given.
type issued struct {
	fingerprint, ip, releaseToken string
	key                           []byte // private; renewals prove it
	name                          string
	notAfter                      time.Time
	released                      bool
}

type outcomes struct {
	mu         sync.Mutex
	certs      []*issued
	renewals   int
	releases   int
	moved      []string // renewals that came back on another address
	heads      []string // acknowledged manifest updates
	ambiguous  map[string]int
	failedHard []error
}

func (o *outcomes) ambiguousOp(op string) {
	o.mu.Lock()
	o.ambiguous[op]++
	o.mu.Unlock()
}

func killSchedule(t *testing.T, rng *rand.Rand, kind string, atOnce int) {
	l := newLab(t, 3)
	var storeSpec string
	var kube *rest.Config
	switch kind {
	case "etcd":
		storeSpec = "etcd:http://" + etcdIP + ":2379"
	case "file":
		storeSpec = "file:" + l.path("store")
	case "kubernetes":
		kube = l.startKube(t)
		storeSpec = "kubernetes:sealmesh/mesh"
	}
	for i := range 3 {
		l.startWith(i, l.state(i), l.teeDir, storeSpec)
	}
	for i := range 3 {
		if err := l.wait(func() error { return l.get("http://" + ip(i) + ":7081/healthz") }, fmt.Sprintf("c%d up", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	created := l.create()
	l.converged(t)

	out := &outcomes{ambiguous: map[string]int{}, heads: []string{created.Status.Head}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			workloadClient(ctx, l, k, rand.New(rand.NewPCG(rng.Uint64(), uint64(k))), out)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		updater(ctx, l, out)
	}()

	for n := 0; n < killsPerConfig; n += atOnce {
		victims := rng.Perm(3)[:atOnce]
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		for _, v := range victims {
			l.kill(v)
		}
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		for _, v := range victims {
			l.startWith(v, l.state(v), l.teeDir, storeSpec)
		}
		for _, v := range victims {
			l.waitReady(t, v)
		}
	}
	time.Sleep(time.Second)
	stop()
	wg.Wait()
	st := l.converged(t)
	t.Logf("%d kills (%d at once): %d certificates, %d renewals, %d releases, %d manifest updates acknowledged; ambiguous outcomes: %v",
		killsPerConfig, atOnce, len(out.certs), out.renewals, out.releases, len(out.heads)-1, out.ambiguous)
	if len(out.certs) == 0 || out.renewals == 0 || out.releases == 0 || len(out.heads) < 2 {
		t.Fatal("the clients did not enrol, renew, release and update during the schedule: the checks would prove nothing")
	}
	for _, err := range out.failedHard {
		t.Error(err)
	}

	// The history, verified from the store with the seed alone.
	raw, err := seal.OpenWith(l.shareKey, seal.SeedShareInfo, l.share)
	if err != nil {
		t.Fatal(err)
	}
	meshSeed, err := keys.SeedFrom(raw)
	if err != nil {
		t.Fatal(err)
	}
	var snap store.Store
	switch kind {
	case "file":
		snap, err = store.OpenFile(l.path("store"))
	case "kubernetes":
		snap, err = kubestore.Open(kube, "sealmesh", "mesh")
	default:
		snap = l.etcdSnapshot(t)
	}
	if err != nil {
		t.Fatal(err)
	}
	h, err := history.Load(context.Background(), snap, meshSeed, history.Floor{})
	if err != nil {
		t.Fatalf("the store's history does not verify: %v", err)
	}
	if h.Head != st.Head {
		t.Errorf("the store's head %s, the coordinators' %s", h.Head, st.Head)
	}
	// A transition's hash is named by the next one's Prev, the last's by
	// the head.
	heads := map[string]bool{h.Head: true}
	for _, tr := range h.Chain[1:] {
		heads[tr.Prev] = true
	}
	for _, head := range out.heads {
		if !heads[head] {
			t.Errorf("acknowledged update %s is not in the history", head)
		}
	}

	// Addresses, from the store's lease records: each certificate a client
	// holds (not released, not expired) is the one its address's record
	// names, or one renewed away under it (so no address is in two live
	// certificates of different keys); each release left its record
	// released; no renewal moved a key.
	for _, m := range out.moved {
		t.Error(m)
	}
	recs, err := snap.List(context.Background(), "lease-")
	if err != nil {
		t.Fatal(err)
	}
	leases := map[string]ipam.Lease{}
	for k, raw := range recs {
		var l ipam.Lease
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatalf("lease record %s: %v", k, err)
		}
		leases[l.IP.String()] = l
	}
	now := time.Now()
	for _, c := range out.certs {
		ip := c.ip[:strings.IndexByte(c.ip, '/')]
		l, ok := leases[ip]
		switch {
		case now.After(c.notAfter):
		case !ok:
			t.Errorf("%s holds a live certificate for %s, which has no lease record", c.name, ip)
		case l.Fingerprint != c.fingerprint && !slices.ContainsFunc(l.Previous, func(p ipam.Issued) bool { return p.Fingerprint == c.fingerprint }):
			t.Errorf("%s holds a live certificate for %s, whose lease is %s's (%s): two live certificates on one address", c.name, ip, l.Name, l.Workload)
		case c.released && !l.Released:
			t.Errorf("%s released %s, whose lease is not released", c.name, ip)
		}
	}
	t.Logf("%d lease records checked", len(leases))
}

// workloadClient enrols new workloads, renews and releases its own, until ctx
// ends. A failure after the client's own retries is an ambiguous outcome
// (the coordinator may have died after acting); a refusal is a failure.
func workloadClient(ctx context.Context, l *lab, k int, rng *rand.Rand, out *outcomes) {
	c := l.all(k)
	var mine []*issued
	for n := 0; ctx.Err() == nil; n++ {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		switch r := rng.IntN(10); {
		case r < 2 && len(mine) > 0:
			i := rng.IntN(len(mine))
			is := mine[i]
			key, err := enrol.InMemory(is.key)
			if err != nil {
				panic(err)
			}
			resp, err := enrol.Renew(rctx, c, l.workload, api.Workload{Namespace: "kill", Name: is.name}, key)
			if err != nil {
				noteErr(out, "renew", err)
				break
			}
			fp := fingerprintOf(resp.Certificate)
			out.mu.Lock()
			out.renewals++
			if resp.IP != is.ip {
				out.moved = append(out.moved, fmt.Sprintf("renewal moved %s from %s to %s", is.name, is.ip, resp.IP))
			}
			renewed := &issued{fingerprint: fp, ip: resp.IP, releaseToken: resp.ReleaseToken, key: is.key, name: is.name, notAfter: resp.NotAfter}
			out.certs = append(out.certs, renewed)
			out.mu.Unlock()
			mine[i] = renewed // a release names the current certificate
		case r < 3 && len(mine) > 0:
			i := rng.IntN(len(mine))
			is := mine[i]
			mine = slices.Delete(mine, i, i+1)
			err := c.Release(rctx, &api.ReleaseRequest{Fingerprint: is.fingerprint, ReleaseToken: is.releaseToken, IP: is.ip})
			if err != nil {
				noteErr(out, "release", err)
				break
			}
			out.mu.Lock()
			out.releases++
			// Every certificate of this key is released with its lease.
			for _, o := range out.certs {
				if bytes.Equal(o.key, is.key) {
					o.released = true
				}
			}
			out.mu.Unlock()
		default:
			name := fmt.Sprintf("w%d-%d", k, n)
			e, err := enrol.Workload(rctx, c, l.workload, api.Workload{Namespace: "kill", Name: name})
			if err != nil {
				noteErr(out, "enrol", err)
				break
			}
			is := &issued{fingerprint: fingerprintOf(e.Certificate), ip: e.IP, releaseToken: e.ReleaseToken, key: e.PrivateKey, name: name, notAfter: e.NotAfter}
			mine = append(mine, is)
			out.mu.Lock()
			out.certs = append(out.certs, is)
			out.mu.Unlock()
		}
		cancel()
	}
}

// noteErr counts a failed call: unknown outcome if it may have been applied
// (the coordinator could not be reached or failed inside), a hard failure
// if it was refused.
func noteErr(out *outcomes, op string, err error) {
	if api.Retryable(err) {
		out.ambiguousOp(op)
		return
	}
	out.mu.Lock()
	out.failedHard = append(out.failedHard, fmt.Errorf("%s refused: %w", op, err))
	out.mu.Unlock()
}

// updater changes the manifest until ctx ends. An update without an answer
// is sent again until one comes: a replayed answer means it had been applied.
func updater(ctx context.Context, l *lab, out *outcomes) {
	for n := 0; ctx.Err() == nil; n++ {
		time.Sleep(300 * time.Millisecond)
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := l.all(n).Status(sctx)
		cancel()
		if err != nil || (st.State != api.StateReady && st.State != api.StateDegraded) {
			continue
		}
		req, err := l.manifestRequest(fmt.Sprintf("%dm", 60+n%600), st.Head)
		if err != nil {
			panic(err)
		}
		for try := 0; ; try++ {
			uctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			resp, err := l.all(n+try).SetManifest(uctx, req)
			cancel()
			if err == nil {
				out.mu.Lock()
				out.heads = append(out.heads, resp.Status.Head)
				if try > 0 {
					out.ambiguous[fmt.Sprintf("update (resent; applied before: %v)", resp.Replayed)]++
				}
				out.mu.Unlock()
				break
			}
			if errors.Is(err, api.ErrStaleParent) {
				break // someone else's update won; sign again from the new head
			}
			if !api.Retryable(err) {
				out.mu.Lock()
				out.failedHard = append(out.failedHard, fmt.Errorf("update refused: %w", err))
				out.mu.Unlock()
				break
			}
			if try > 20 {
				out.ambiguousOp("update (never answered)")
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func fingerprintOf(pemCert string) string {
	c, _, err := cert.UnmarshalCertificateFromPEM([]byte(pemCert))
	if err != nil {
		panic(err)
	}
	fp, err := c.Fingerprint()
	if err != nil {
		panic(err)
	}
	return fp
}

// etcdSnapshot copies every key of the coordinators' etcd prefix, read over
// etcd's JSON gateway from the hub, into a file store the test reads alone.
func (l *lab) etcdSnapshot(t *testing.T) store.Store {
	t.Helper()
	prefix := "/sealmesh/"
	body, _ := json.Marshal(map[string]string{
		"key":       base64.StdEncoding.EncodeToString([]byte(prefix)),
		"range_end": base64.StdEncoding.EncodeToString([]byte("/sealmesh0")),
	})
	c := l.plainHTTP()
	c.Timeout = 30 * time.Second
	resp, err := c.Post("http://"+etcdIP+":2379/v3/kv/range", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Kvs []struct {
			Key   []byte `json:"key"`
			Value []byte `json:"value"`
		} `json:"kvs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	snap, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, kv := range r.Kvs {
		k := string(kv.Key[len(prefix):])
		if k == "latest" {
			if _, err := snap.SwapLatest(ctx, "", kv.Value); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := snap.Put(ctx, k, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.Kvs) == 0 {
		t.Fatal("etcd holds no key under " + prefix)
	}
	return snap
}

// startKube runs a kube-apiserver in the hub over the lab's etcd (its own
// prefix), points the coordinators at it ($KUBECONFIG, inherited) and makes
// the store's namespace. The returned configuration reaches it from the hub.
func (l *lab) startKube(t *testing.T) *rest.Config {
	t.Helper()
	const port = 6443
	dir := l.path("kube")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	args, token := tools.KubeAPIServerArgs(t, dir, "http://"+etcdIP+":2379", etcdIP, port)
	if _, err := l.net.Start(l.hub, l.path("kube-apiserver.log"), tools.Bin(t, "kube-apiserver"), args...); err != nil {
		t.Fatal(err)
	}
	host := fmt.Sprintf("https://%s:%d", etcdIP, port)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: lab, context: {cluster: lab, user: admin}}]
current-context: lab
`, host, token)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kubeconfig)
	cfg := &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial: l.dial((&net.Dialer{Timeout: 3 * time.Second}).DialContext)}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Up to two minutes: a kube-apiserver's first start on a shared 2-core
	// host is slow (a bound against hangs, not a timing goal).
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sealmesh"}}, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver: %v\n%s", err, tools.Tail(l.path("kube-apiserver.log")))
		}
	}
	return cfg
}
