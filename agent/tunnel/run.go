package tunnel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	gometricsprom "github.com/nbrownus/go-metrics-prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rcrowley/go-metrics"

	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
)

// nebulaMetrics serves Nebula's own metrics (go-metrics, process-wide), for
// the agent to gather under its /metrics: no listener per pod on any network.
// Without gauges, only what adds up over several instances in one process is
// served: each instance overwrites the gauges (hostmap sizes, socket buffers,
// certificate TTL), which then describe none of them.
func nebulaMetrics(gauges bool) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src := metrics.DefaultRegistry
		if !gauges {
			src = metrics.NewRegistry()
			metrics.DefaultRegistry.Each(func(name string, m any) {
				switch m.(type) {
				case metrics.Gauge, metrics.GaugeFloat64, metrics.FunctionalGauge, metrics.FunctionalGaugeFloat64:
				default:
					src.Register(name, m)
				}
			})
		}
		reg := prometheus.NewRegistry()
		mu.Lock()
		gometricsprom.NewPrometheusProvider(src, "nebula", "", reg, 0).UpdatePrometheusMetricsOnce()
		mu.Unlock()
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	})
}

// controls carries every call to a control socket, keeping a few
// connections to each open between calls: a call on a new connection (a
// dial, the host's accept, both sides' connection goroutines) costs three
// times one on a kept connection (BenchmarkControlCall), and a pod's ADD
// and DEL make one call each. A request names its socket by the host of
// its URL (controlHost). The connections idle out well before the tunnel
// host's own idle timeout (serve.Local), so a call does not race the host
// closing its end; a host that is gone closes its ends, which the
// transport drops.
var controls = &http.Client{Transport: &http.Transport{
	DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		control, ok := controlPaths.Load(host)
		if !ok {
			return nil, fmt.Errorf("tunnel: no control socket named %s", host)
		}
		return (&net.Dialer{}).DialContext(ctx, "unix", control.(string))
	},
	MaxIdleConnsPerHost: 4,
	IdleConnTimeout:     20 * time.Second,
}}

// controlPaths maps the URL hosts controlHost made to their sockets' paths.
var controlPaths sync.Map

// controlHost is the URL host that names the socket at path: a hash of
// it, so that the host is a valid name whatever the path.
func controlHost(path string) string {
	h := sha256.Sum256([]byte(path))
	host := "tunnel-" + hex.EncodeToString(h[:8])
	controlPaths.LoadOrStore(host, path)
	return host
}

// call makes one request on a control socket; a status other than 200 is an
// error carrying the answer's text.
func call(ctx context.Context, control, method, path string, body []byte) (io.ReadCloser, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+controlHost(control)+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := controls.Do(req)
	if err != nil {
		return nil, fmt.Errorf("tunnel: %s: %w", control, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		err := fmt.Errorf("tunnel: %s %s: %s", method, path, strings.TrimSpace(string(b)))
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w (%v)", errNoInstance, err)
		}
		return nil, err
	}
	return drained{resp.Body}, nil
}

func do(ctx context.Context, control, method, path string, body []byte) error {
	rc, err := call(ctx, control, method, path, body)
	if err != nil {
		return err
	}
	rc.Close()
	return nil
}

// drained is an answer's body that is read to its end when closed, so that
// its connection goes back to the pool instead of being closed.
type drained struct{ io.ReadCloser }

func (d drained) Close() error {
	io.Copy(io.Discard, io.LimitReader(d.ReadCloser, 1<<16))
	return d.ReadCloser.Close()
}

// Metrics fetches a host's Nebula metrics (Prometheus
// text) from its control socket.
func Metrics(ctx context.Context, control string) (io.ReadCloser, error) {
	return call(ctx, control, http.MethodGet, "/v1/metrics", nil)
}

// AddInstance starts a pod's instance, named id, in the host answering on
// control; it returns once the pod's interface is up, with how long the
// start's parts took in the host (zero from a host that does not say).
func AddInstance(ctx context.Context, control, id string, req *AddRequest) (Started, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Started{}, err
	}
	rc, err := call(ctx, control, http.MethodPut, "/v1/tunnels/"+id, b)
	if err != nil {
		return Started{}, err
	}
	defer rc.Close()
	// The instance runs whatever the answer's body says: a host from
	// before Started answers an empty one, and a body that does not
	// decode only costs the agent its stage times.
	var took Started
	if err := json.NewDecoder(io.LimitReader(rc, 4096)).Decode(&took); err != nil {
		return Started{}, nil
	}
	return took, nil
}

// UpdateInstance hands a running instance a new configuration (Config without
// the private key); it keeps its key and its tunnels.
func UpdateInstance(ctx context.Context, control, id string, cfg *nebulaconfig.Nebula) error {
	b, err := cfg.Render()
	if err != nil {
		return err
	}
	return do(ctx, control, http.MethodPost, "/v1/tunnels/"+id+"/config", b)
}

// ProveRequest asks an instance for a proof of possession of its private
// key for an enrolment (api.Prove); the key never leaves the tunnel host.
type ProveRequest struct {
	PossessionKey []byte `json:"possessionKey"`
	Nonce         []byte `json:"nonce"`
}

// ProveInstance has the instance id prove possession of its key.
func ProveInstance(ctx context.Context, control, id string, req *ProveRequest) ([]byte, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rc, err := call(ctx, control, http.MethodPost, "/v1/tunnels/"+id+"/prove", b)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out struct {
		Proof []byte `json:"proof"`
	}
	if err := json.NewDecoder(io.LimitReader(rc, 4096)).Decode(&out); err != nil {
		return nil, fmt.Errorf("tunnel: prove %s: %w", id, err)
	}
	return out.Proof, nil
}

// RemoveInstance stops an instance; one the host does not run is gone already.
func RemoveInstance(ctx context.Context, control, id string) error {
	return do(ctx, control, http.MethodDelete, "/v1/tunnels/"+id, nil)
}

// Instances lists what a host runs.
func Instances(ctx context.Context, control string) ([]InstanceInfo, error) {
	rc, err := call(ctx, control, http.MethodGet, "/v1/tunnels", nil)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out []InstanceInfo
	if err := json.NewDecoder(rc).Decode(&out); err != nil {
		return nil, fmt.Errorf("tunnel: list %s: %w", control, err)
	}
	return out, nil
}
