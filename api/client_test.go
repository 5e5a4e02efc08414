package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/test/tools"
)

// A coordinator URL whose name has several addresses is one coordinator per
// address: calls move past the unready ones to the one that answers.
func TestClientByDNSName(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	asked := map[string]int{}
	for i, ip := range ips {
		if i > 0 {
			if l, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port)); err != nil {
				t.Fatal(err)
			}
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked[ip]++
			if ip != "127.0.0.3" {
				http.Error(w, `{"error": "recovering"}`, http.StatusServiceUnavailable)
				return
			}
			json.NewEncoder(w).Encode(api.Status{State: api.StateReady})
		}))
		srv.Listener.Close()
		srv.Listener = l
		srv.Start()
		t.Cleanup(srv.Close)
	}
	c := api.NewClient(fmt.Sprintf("http://coordinators.sealmesh.test:%d", port))
	c.Resolver = tools.ServeDNS(t, map[string][]string{"coordinators.sealmesh.test": ips})

	var urls []string
	for _, one := range c.Coordinators(context.Background()) {
		urls = append(urls, one.URL())
	}
	sort.Strings(urls)
	if len(urls) != 3 || !strings.Contains(urls[2], "127.0.0.3") {
		t.Fatalf("coordinators of the name: %v", urls)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.State != api.StateReady || asked["127.0.0.1"] != 1 || asked["127.0.0.2"] != 1 || asked["127.0.0.3"] != 1 {
		t.Fatalf("status %+v after asking %v", st, asked)
	}
}
