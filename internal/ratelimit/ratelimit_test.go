package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

func TestPerSource(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := New(10, func() time.Time { return now })
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	h := l.Handler(ok)
	call := func(src string) int {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/nonce", nil)
		r.RemoteAddr = src
		h.ServeHTTP(w, r)
		return w.Code
	}
	for i := range 20 {
		if c := call("192.0.2.1:1000"); c != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i, c)
		}
	}
	if c := call("192.0.2.1:1001"); c != http.StatusTooManyRequests {
		t.Fatalf("past the burst from another port of the same host: %d, want 429", c)
	}
	if c := call("192.0.2.2:1000"); c != http.StatusOK {
		t.Fatalf("another source while the first is limited: %d", c)
	}
	now = now.Add(100 * time.Millisecond)
	if c := call("192.0.2.1:1000"); c != http.StatusOK {
		t.Fatalf("a tenth of a second later: %d", c)
	}
	if c := call("192.0.2.1:1000"); c != http.StatusTooManyRequests {
		t.Fatalf("a second request in that tenth: %d, want 429", c)
	}

	unlimited := New(0, nil).Handler(ok)
	for range 1000 {
		w := httptest.NewRecorder()
		unlimited.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", nil))
		if w.Code != http.StatusOK {
			t.Fatalf("no limit: %d", w.Code)
		}
	}
}

func TestForgetsIdleSources(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := New(1, func() time.Time { return now })
	for i := range maxSources {
		l.Allow(strconv.Itoa(i))
	}
	now = now.Add(time.Minute)
	l.Allow("new")
	if n := len(l.sources); n != 1 {
		t.Fatalf("%d sources tracked after the idle ones refilled, want 1", n)
	}
}
