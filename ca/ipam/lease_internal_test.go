package ipam

import (
	"net/netip"
	"testing"
)

// A deleted lease record is known by its key alone (etcd's watch sends no
// value with a delete): the key must give its address back.
func TestLeaseAddr(t *testing.T) {
	for _, s := range []string{"10.42.0.7", "100.64.255.254", "fd00::1", "fd00:0:0:1::", "a::b", "2001:db8::1:2:3"} {
		ip := netip.MustParseAddr(s)
		got, ok := leaseAddr(leaseKey(ip))
		if !ok || got != ip {
			t.Errorf("leaseAddr(%q) = %v, %v; want %v", leaseKey(ip), got, ok, ip)
		}
	}
	for _, key := range []string{"holder-abc", "lease-", "lease-not-an-address"} {
		if ip, ok := leaseAddr(key); ok {
			t.Errorf("leaseAddr(%q) = %v; want none", key, ip)
		}
	}
}
