package tundev

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// packet is what the tests read from an IP packet, checked on the way.
type packet struct {
	v6       bool
	src, dst netip.Addr
	proto    byte
	id       uint16 // IPv4's
	sport    uint16
	dport    uint16
	seq      uint32
	flags    byte // TCP flags
	payload  []byte
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpCWR = 0x80
)

// flow names one direction of a connection.
func (p packet) flow() string {
	return fmt.Sprintf("%d %s:%d>%s:%d", p.proto, p.src, p.sport, p.dst, p.dport)
}

// parse checks b as one complete IP packet, the way a receiving host would:
// version, lengths, the IPv4 header checksum and the TCP or UDP checksum
// over the pseudo-header; nothing is trusted that the kernel computed for
// a segment the splitter made.
func parse(b []byte, mtu int) (packet, error) {
	var p packet
	if len(b) > mtu {
		return p, fmt.Errorf("%d bytes, over the MTU %d", len(b), mtu)
	}
	if len(b) < 20 {
		return p, fmt.Errorf("%d bytes", len(b))
	}
	var l4 []byte
	var pseudo uint32
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0xf) * 4
		if ihl < 20 || ihl > len(b) {
			return p, fmt.Errorf("IPv4 header length %d", ihl)
		}
		if tot := int(binary.BigEndian.Uint16(b[2:])); tot != len(b) {
			return p, fmt.Errorf("IPv4 total length %d, packet %d bytes", tot, len(b))
		}
		if c := checksum(b[:ihl], 0); c != 0 {
			return p, fmt.Errorf("IPv4 header checksum wrong (%#04x)", c)
		}
		p.src, _ = netip.AddrFromSlice(b[12:16])
		p.dst, _ = netip.AddrFromSlice(b[16:20])
		p.proto = b[9]
		p.id = binary.BigEndian.Uint16(b[4:])
		l4 = b[ihl:]
		pseudo = sum(b[12:20], 0) + uint32(p.proto) + uint32(len(l4))
	case 6:
		if len(b) < 40 {
			return p, fmt.Errorf("%d bytes of IPv6", len(b))
		}
		if pl := int(binary.BigEndian.Uint16(b[4:])); pl != len(b)-40 {
			return p, fmt.Errorf("IPv6 payload length %d, packet %d bytes", pl, len(b))
		}
		p.v6 = true
		p.src, _ = netip.AddrFromSlice(b[8:24])
		p.dst, _ = netip.AddrFromSlice(b[24:40])
		p.proto = b[6]
		l4 = b[40:]
		pseudo = sum(b[8:40], 0) + uint32(p.proto) + uint32(len(l4))
	default:
		return p, fmt.Errorf("IP version %d", b[0]>>4)
	}
	switch p.proto {
	case 6:
		if len(l4) < 20 {
			return p, fmt.Errorf("TCP header %d bytes", len(l4))
		}
		off := int(l4[12]>>4) * 4
		if off < 20 || off > len(l4) {
			return p, fmt.Errorf("TCP data offset %d", off)
		}
		p.sport, p.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		p.seq = binary.BigEndian.Uint32(l4[4:])
		p.flags = l4[13]
		p.payload = l4[off:]
	case 17:
		if len(l4) < 8 || int(binary.BigEndian.Uint16(l4[4:])) != len(l4) {
			return p, fmt.Errorf("UDP length wrong")
		}
		p.sport, p.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		p.payload = l4[8:]
	default:
		return p, nil // ICMP and the like: the kernel's, whole
	}
	if c := checksum(l4, pseudo); c != 0 {
		return p, fmt.Errorf("%s: transport checksum wrong (%#04x)", p.flow(), c)
	}
	return p, nil
}

func sum(b []byte, acc uint32) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// checksum is the Internet checksum of b plus acc: 0 over a packet whose
// checksum field is right.
func checksum(b []byte, acc uint32) uint16 {
	acc = sum(b, acc)
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return ^uint16(acc)
}

// stream follows the TCP sequence numbers of each flow: a segment starting
// past the next expected byte means one was lost before it was read (the
// interface's queue was full) or, inside one super-packet, mis-split.
type stream struct {
	next  map[string]uint32
	split []string // gaps between packets of one read
	gaps  []string // gaps between reads
}

// see takes the next packet; batch says whether it came from the same read
// as the one before.
func (s *stream) see(p packet, batch bool) {
	if p.proto != 6 || p.flags&tcpRST != 0 {
		return
	}
	n := uint32(len(p.payload))
	if p.flags&(tcpSYN|tcpFIN) != 0 {
		n++
	}
	k := p.flow()
	if p.flags&tcpSYN != 0 {
		s.next[k] = p.seq + n
		return
	}
	want, ok := s.next[k]
	if !ok {
		s.next[k] = p.seq + n
		return
	}
	if int32(p.seq-want) > 0 {
		gap := fmt.Sprintf("%s: seq %d, expected %d", k, p.seq, want)
		if batch {
			s.split = append(s.split, gap)
		} else {
			s.gaps = append(s.gaps, gap)
		}
	}
	if end := p.seq + n; int32(end-want) > 0 {
		s.next[k] = end
	}
}
