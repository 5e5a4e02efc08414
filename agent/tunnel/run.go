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
	"time"

	gometricsprom "github.com/nbrownus/go-metrics-prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rcrowley/go-metrics"
	"github.com/slackhq/nebula"
	"github.com/slackhq/nebula/config"
	"github.com/slackhq/nebula/overlay"
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
	var m map[string]any
	if err := json.Unmarshal(next, &m); err != nil {
		return fmt.Errorf("tunnel: update: %w", err)
	}
	pki, ok := m["pki"].(map[string]any)
	if !ok {
		return errors.New("tunnel: update: no pki section")
	}
	pki["key"] = key
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.ReloadConfigString(string(b))
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
	// Nebula's own metrics (go-metrics, process-wide: this process is one
	// pod's), for the agent to gather under its /metrics: no listener per pod
	// on any network.
	reg := prometheus.NewRegistry()
	nm := gometricsprom.NewPrometheusProvider(metrics.DefaultRegistry, "nebula", "", reg, 0)
	promh := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		nm.UpdatePrometheusMetricsOnce()
		promh.ServeHTTP(w, r)
	})
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
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return func() { srv.Close(); os.Remove(path) }, nil
}

// Update sends a running tunnel a new configuration (Config without the
// private key) on its control socket; the tunnel keeps its key and its tunnels.
func Update(ctx context.Context, control string, cfg []byte) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", control)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://tunnel/v1/config", bytes.NewReader(cfg))
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("tunnel: update %s: %w", control, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("tunnel: update %s: %s", control, strings.TrimSpace(string(b)))
	}
	return nil
}

// Metrics fetches a running tunnel's metrics (Prometheus text) from its
// control socket.
func Metrics(ctx context.Context, control string) (io.ReadCloser, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", control)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://tunnel/v1/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("tunnel: metrics %s: %s", control, resp.Status)
	}
	return resp.Body, nil
}
