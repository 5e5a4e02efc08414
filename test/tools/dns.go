package tools

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// ServeDNS runs a real DNS server on loopback for the test, answering A
// queries for the names in records (name → IPv4 addresses), and returns a
// resolver that asks it (as a headless Service's name would be answered).
func ServeDNS(t testing.TB, records map[string][]string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qu := range q.Question {
			addrs, ok := records[strings.TrimSuffix(qu.Name, ".")]
			if !ok {
				m.Rcode = dns.RcodeNameError
				continue
			}
			if qu.Qtype != dns.TypeA {
				continue
			}
			for _, a := range addrs {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qu.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP(a)})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", addr)
	}}
}
