package netlab

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// PingResult counts echo replies.
type PingResult struct {
	Sent, Received int
	RTTs           []time.Duration
}

func (r PingResult) String() string {
	var min, max time.Duration
	for i, d := range r.RTTs {
		if i == 0 || d < min {
			min = d
		}
		if d > max {
			max = d
		}
	}
	return fmt.Sprintf("%d/%d replies, rtt min %s max %s", r.Received, r.Sent, min.Round(time.Microsecond), max.Round(time.Microsecond))
}

// Ping sends count ICMP echo requests from inside n to dst, one per interval, and
// waits up to timeout for each reply.
func (n *NS) Ping(dst netip.Addr, count int, timeout time.Duration) (PingResult, error) {
	network, listen, proto := "ip4:icmp", "0.0.0.0", 1
	var echo, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, listen, proto = "ip6:ipv6-icmp", "::", 58
		echo, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var conn *icmp.PacketConn
	if err := n.Do(func() error {
		var err error
		conn, err = icmp.ListenPacket(network, listen)
		return err
	}); err != nil {
		return PingResult{}, fmt.Errorf("netlab: icmp socket in %s: %w", n.Name, err)
	}
	defer conn.Close()
	id := os.Getpid() & 0xffff
	res := PingResult{}
	buf := make([]byte, 1500)
	for seq := 1; seq <= count; seq++ {
		msg := icmp.Message{Type: echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("sealmesh ping")}}
		b, _ := msg.Marshal(nil)
		start := time.Now()
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return res, fmt.Errorf("netlab: ping %s: %w", dst, err)
		}
		res.Sent++
		deadline := start.Add(timeout)
		for {
			conn.SetReadDeadline(deadline)
			nr, from, err := conn.ReadFrom(buf)
			if err != nil {
				break // timeout: count as lost
			}
			m, err := icmp.ParseMessage(proto, buf[:nr])
			if err != nil || m.Type != reply {
				continue
			}
			e, ok := m.Body.(*icmp.Echo)
			if !ok || e.ID != id || e.Seq != seq || from.(*net.IPAddr).IP.String() != dst.String() {
				continue
			}
			res.Received++
			res.RTTs = append(res.RTTs, time.Since(start))
			break
		}
		if seq < count {
			time.Sleep(200 * time.Millisecond)
		}
	}
	return res, nil
}

// SendUDP sends payload from inside n to dst.
func (n *NS) SendUDP(dst netip.AddrPort, payload []byte) error {
	return n.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
}

// ListenUDP opens a UDP socket inside n.
func (n *NS) ListenUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := n.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	return c, err
}

// Capture records every frame crossing one interface, as tcpdump would, through
// an AF_PACKET socket bound to it.
type Capture struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	stop   chan struct{}
	done   chan struct{}
}

// Capture starts capturing on ifname inside n.
func (n *NS) Capture(ifname string) (*Capture, error) {
	c := &Capture{fd: -1, stop: make(chan struct{}), done: make(chan struct{})}
	proto := int(htons(unix.ETH_P_ALL))
	err := n.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: capture on %s in %s: %w", ifname, n.Name, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			nr, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil || nr <= 0 {
				continue
			}
			c.mu.Lock()
			c.frames = append(c.frames, bytes.Clone(buf[:nr]))
			c.mu.Unlock()
		}
	}()
	return c, nil
}

// Stop ends the capture and returns the frames seen.
func (c *Capture) Stop() [][]byte {
	close(c.stop)
	<-c.done
	unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

// Count returns how many frames contain needle.
func Count(frames [][]byte, needle []byte) int {
	n := 0
	for _, f := range frames {
		if bytes.Contains(f, needle) {
			n++
		}
	}
	return n
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
