package tunnel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	gometricsprom "github.com/nbrownus/go-metrics-prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rcrowley/go-metrics"
	"github.com/slackhq/nebula"
	"github.com/slackhq/nebula/config"
	"github.com/slackhq/nebula/overlay"

	"github.com/sealmesh/sealmesh/internal/serve"
)

// Run runs Nebula with cfg in the calling process until ctx is done. ready is
// called once the interface is up and Nebula is serving. With control (a unix
// socket path), it takes new configurations there (Update): a renewed
// certificate, a new block list, firewall or lighthouses, applied by Nebula's
// reload without dropping tunnels.
func Run(ctx context.Context, log *slog.Logger, cfg []byte, version string, ready func(), control string) error {
	c := config.NewC(log)
	if err := c.LoadString(string(cfg)); err != nil {
		return fmt.Errorf("tunnel: load config: %w", err)
	}
	var first map[string]any
	if err := json.Unmarshal(cfg, &first); err != nil {
		return fmt.Errorf("tunnel: config: %w", err)
	}
	pki, _ := first["pki"].(map[string]any)
	key, _ := pki["key"].(string)
	ctrl, err := nebula.Main(c, false, version, log, overlay.NewDeviceFromConfig)
	if err != nil {
		return fmt.Errorf("tunnel: start nebula: %w", err)
	}
	if err := ctrl.Start(); err != nil {
		return fmt.Errorf("tunnel: start nebula: %w", err)
	}
	if control != "" {
		stop, err := serveControl(control, log, func(next []byte) error { return reload(c, next, key) })
		if err != nil {
			ctrl.Stop()
			return err
		}
		defer stop()
	}
	if ready != nil {
		ready()
	}
	select {
	case <-ctx.Done():
		ctrl.Stop()
		return nil
	case <-ctrl.Context().Done():
		// Nebula stopped by itself (a fatal reader error): report it.
		if err := ctrl.Wait(); err != nil {
			return fmt.Errorf("tunnel: nebula stopped: %w", err)
		}
		return fmt.Errorf("tunnel: nebula stopped")
	}
}

// reload applies a configuration sent without a key, with this tunnel's key.
func reload(c *config.C, next []byte, key string) error {
	m, err := withKey(next, key)
	if err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.ReloadConfigString(string(b))
}

// withKey parses a configuration sent without a key (Update) and puts the
// running tunnel's key back in.
func withKey(next []byte, key string) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(next, &m); err != nil {
		return nil, fmt.Errorf("tunnel: update: %w", err)
	}
	pki, ok := m["pki"].(map[string]any)
	if !ok {
		return nil, errors.New("tunnel: update: no pki section")
	}
	pki["key"] = key
	return m, nil
}

// serveControl answers Update on a unix socket (mode 0600) until stop.
func serveControl(path string, log *slog.Logger, apply func([]byte) error) (stop func(), err error) {
	os.Remove(path) // left by a tunnel that died
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("tunnel: control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.Handle("GET /v1/metrics", nebulaMetrics(true))
	mux.HandleFunc("POST /v1/config", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err == nil {
			mu.Lock()
			err = apply(b)
			mu.Unlock()
		}
		if err != nil {
			log.Error("configuration update refused", "err", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		log.Info("configuration updated")
	})
	srv := serve.Server(mux, serve.Local)
	go srv.Serve(serve.Limit(l, serve.Local))
	return func() { srv.Close(); os.Remove(path) }, nil
}

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

// call makes one request on a control socket; a status other than 200 is an
// error carrying the answer's text.
func call(ctx context.Context, control, method, path string, body []byte) (io.ReadCloser, error) {
	// One connection per call: a transport per call that kept its idle
	// connections would leak one for every call the agent makes.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", control)
	}}}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://tunnel"+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
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
	return resp.Body, nil
}

func do(ctx context.Context, control, method, path string, body []byte) error {
	rc, err := call(ctx, control, method, path, body)
	if err != nil {
		return err
	}
	rc.Close()
	return nil
}

// Update sends a running tunnel (Run) a new configuration (Config without the
// private key) on its control socket; the tunnel keeps its key and its tunnels.
func Update(ctx context.Context, control string, cfg []byte) error {
	return do(ctx, control, http.MethodPost, "/v1/config", cfg)
}

// Metrics fetches a running tunnel's or host's Nebula metrics (Prometheus
// text) from its control socket.
func Metrics(ctx context.Context, control string) (io.ReadCloser, error) {
	return call(ctx, control, http.MethodGet, "/v1/metrics", nil)
}

// AddInstance starts a pod's instance, named id, in the host answering on
// control; it returns once the pod's interface is up.
func AddInstance(ctx context.Context, control, id string, req *AddRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return do(ctx, control, http.MethodPut, "/v1/tunnels/"+id, b)
}

// UpdateInstance hands a running instance a new configuration (Config without
// the private key); it keeps its key and its tunnels.
func UpdateInstance(ctx context.Context, control, id string, cfg []byte) error {
	return do(ctx, control, http.MethodPost, "/v1/tunnels/"+id+"/config", cfg)
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
