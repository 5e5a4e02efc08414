// Package layers stands in for gopacket's package of the same name in
// sealmesh's builds (go.mod replaces the module with this directory). It is
// sealmesh's own code, not a copy: the few protocol numbers Nebula v1.11.1
// takes from gopacket (outside.go, to read a packet's ports for the
// firewall), with the values the RFCs give them.
//
// Why not the real module: Nebula imports gopacket/layers for these
// constants alone, and linking that package runs its init, which fills
// tables of 65536 entries for every EtherType and PPP type (about 7 MB of
// globals, written at start, so private to each process and scanned by
// every garbage collection). In sealmesh-tunnel that was most of a
// process's start (9 ms from exec to exit of `--version`, 14 ms of it in
// that init under GODEBUG=inittrace=1) and 7 MB of every tunnel process's
// memory, shared by its pods. A package that needs more of gopacket fails
// to compile against this one, loudly; then this replacement has to go.
package layers

// IPProtocol is an IP protocol number (the IPv4 protocol field, the IPv6
// next header).
type IPProtocol uint8

// IP protocol numbers (IANA).
const (
	IPProtocolTCP    IPProtocol = 6
	IPProtocolUDP    IPProtocol = 17
	IPProtocolICMPv6 IPProtocol = 58
)

// ICMPv6 message types (RFC 4443).
const (
	ICMPv6TypeEchoRequest = 128
	ICMPv6TypeEchoReply   = 129
)
