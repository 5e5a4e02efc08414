package tundev

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// virtioNetHdrLen is the room wireguard-go's Write needs in front of each
// packet for the virtio header (struct virtio_net_hdr).
const virtioNetHdrLen = 10

// maxSuper is the most a GSO packet carries (its IP length field).
const maxSuper = 65535

// arena is memory for packet buffers mapped apart from the Go heap: a
// device's buffers are mostly untouched (an idle pod uses one), and pages
// never written are never resident, where heap memory handed out again is
// zeroed, and counted towards the collector's goal, whether used or not.
type arena []byte

func newArena(size int) (arena, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes: %w", size, err)
	}
	return b, nil
}

// slots cuts the arena into n buffers of length 0 and capacity size.
func (a arena) slots(n, size int) [][]byte {
	s := make([][]byte, n)
	for i := range s {
		s[i] = a[i*size : i*size : (i+1)*size]
	}
	return s
}

func (a arena) free() { _ = unix.Munmap(a) }

// reader hands the packets of one batch read to Nebula one at a time.
type reader struct {
	tun  wgtun.Device
	slot int // each buffer's size: the MTU

	// mu is held across the blocking read: Nebula reads from one goroutine,
	// and free must wait for that read to end before unmapping its buffers.
	mu    sync.Mutex
	arena arena
	bufs  [][]byte
	sizes []int
	n, i  int // packets in the batch, next to hand out
}

func newReader(tun wgtun.Device, mtu int) (*reader, error) {
	n := tun.BatchSize()
	a, err := newArena(n * mtu)
	if err != nil {
		return nil, err
	}
	r := &reader{tun: tun, slot: mtu, arena: a, bufs: a.slots(n, mtu), sizes: make([]int, n)}
	for i := range r.bufs {
		r.bufs[i] = r.bufs[i][:mtu]
	}
	return r, nil
}

// pending reports whether a batch still has packets to hand out. Called
// by the one reader.
func (r *reader) pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.i < r.n
}

func (r *reader) read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bufs == nil {
		return 0, os.ErrClosed
	}
	if r.i < r.n {
		n := copy(p, r.bufs[r.i][:r.sizes[r.i]])
		r.i++
		return n, nil
	}
	// The batch's first packet goes straight into the caller's buffer when
	// it is big enough: a lone packet is copied once, as in stock Nebula.
	first := r.bufs[0]
	if len(p) >= r.slot {
		r.bufs[0] = p
	}
	defer func() { r.bufs[0] = first }()
	for {
		n, err := r.tun.Read(r.bufs, r.sizes, 0)
		if errors.Is(err, unix.EAGAIN) {
			// Its file is not the poller's (unpolledDup): nothing
			// was queued after all; the caller waits in poll(2) again.
			return 0, errAgain
		}
		if err != nil {
			var perr *os.PathError
			if errors.As(err, &perr) || errors.Is(err, os.ErrClosed) {
				return 0, err
			}
			// Anything else is about one super-packet (a header the
			// splitter refuses, too many segments): lost, as a dropped
			// packet would be, and never fatal to Nebula.
			if n <= 0 {
				continue
			}
		}
		if n == 0 {
			continue
		}
		r.n, r.i = n, 1
		if len(p) >= r.slot {
			return r.sizes[0], nil
		}
		return copy(p, r.bufs[0][:r.sizes[0]]), nil
	}
}

// errAgain: the read found nothing queued; wait and read again.
var errAgain = errors.New("tundev: nothing queued")

// free unmaps the buffers once the read in progress (ended by closing the
// device) returns.
func (r *reader) free() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bufs != nil {
		r.bufs = nil
		r.arena.free()
	}
}

// writer writes Nebula's packets, coalescing those of a burst.
//
// Nebula writes from its UDP reader's goroutine, one packet per call, with
// no word on whether more are coming. A packet that arrives alone (none in
// the last burstGap) and finds nothing queued or being written is written
// at once by the caller, as stock Nebula does: an idle flow, a ping or a
// request pays nothing. Packets of a burst queue for the flusher, which
// takes everything queued whenever it runs, up to 64 KiB: while one write
// is in the kernel, the packets decrypted meanwhile queue up and go in the
// next, coalesced.
type writer struct {
	tun    wgtun.Device
	offset int // room in front of each packet for the virtio header
	log    *slog.Logger
	// plain writes one packet through the device's own descriptor behind
	// a zero virtio header. wireguard-go's Write looks for flows to
	// coalesce even in a batch of one, and resets its tables after: about
	// 7 us a packet, a tenth of a lone packet's round trip through two
	// devices (BenchmarkDeviceRTT).
	plain func([]byte) (int, error)

	queued  bool // coalescing asked for (else each write is synchronous)
	perSend int  // packets per batch: 64 KiB of them

	mu       sync.Mutex
	space    sync.Cond // signalled when buffers come back
	free     [][]byte
	pending  [][]byte
	spare    [][]byte
	writing  bool  // a write (inline or the flusher's) is in the kernel
	last     int64 // when the last packet came (monotonic ns)
	coalesce bool  // false once the kernel refused a coalesced write
	closed   bool
	wake     chan struct{} // one token: packets are pending
	done     chan struct{} // closed when the flusher has ended

	arena arena
	heads [][]byte // whole-super-packet buffers for each flow's first packet
	send  [][]byte // the flusher's batch, heads swapped in

	lost atomic.Uint64 // packets the kernel refused
}

// burstGap: a packet this soon after the one before is part of a burst.
// Bulk transfers deliver packets microseconds apart; pings and requests
// are far apart.
const burstGap = 50 * time.Microsecond

// maxPacket is the largest packet Nebula hands over (its buffers' size).
const maxPacket = 9001

// headCount is how many flows of one batch are coalesced; the packets of
// any further flow are written as they are.
const headCount = 4

// newWriter writes batches through wireguard-go's device (with the
// virtio header) and lone packets with plain; coalesce false writes each
// packet with plain.
func newWriter(tun wgtun.Device, plain func([]byte) (int, error), coalesce bool, mtu int, log *slog.Logger) (*writer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &writer{tun: tun, plain: plain, log: log, offset: virtioNetHdrLen}
	if !coalesce {
		return w, nil
	}
	w.queued, w.coalesce = true, true
	w.perSend = (maxSuper + mtu - 1) / mtu
	// Twice a batch: one being written, the next filling up meanwhile.
	// Queued packets are copied into small buffers; wireguard-go coalesces
	// a flow's segments into its first packet's buffer, so that one is
	// moved to a buffer that can hold a whole super-packet when the batch
	// is sent. Only written pages are ever resident.
	page := os.Getpagesize()
	n := 2 * w.perSend
	small := (w.offset + maxPacket + page - 1) &^ (page - 1)
	big := (w.offset + maxSuper + page - 1) &^ (page - 1)
	a, err := newArena(n*small + headCount*big)
	if err != nil {
		return nil, err
	}
	w.arena = a
	w.free = a.slots(n, small)
	w.heads = a[n*small:].slots(headCount, big)
	w.pending = make([][]byte, 0, n)
	w.spare = make([][]byte, 0, n)
	w.send = make([][]byte, 0, n)
	w.space.L = &w.mu
	w.wake = make(chan struct{}, 1)
	w.done = make(chan struct{})
	go w.flush()
	return w, nil
}

func (w *writer) write(p []byte) (int, error) {
	if !w.queued {
		return w.plain(p)
	}
	if len(p) > maxPacket {
		return 0, fmt.Errorf("tundev: packet of %d bytes", len(p))
	}
	now := nanotime()
	w.mu.Lock()
	alone := now-w.last > int64(burstGap)
	w.last = now
	if alone && !w.writing && len(w.pending) == 0 && !w.closed {
		w.writing = true
		w.mu.Unlock()
		n, err := w.plain(p)
		w.mu.Lock()
		w.writing = false
		w.kick()
		w.mu.Unlock()
		return n, err
	}
	for len(w.free) == 0 && !w.closed {
		w.space.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		return 0, os.ErrClosed
	}
	b := w.free[len(w.free)-1]
	w.free = w.free[:len(w.free)-1]
	w.pending = append(w.pending, append(b[:w.offset], p...))
	if len(w.pending) == 1 {
		w.kick()
	}
	w.mu.Unlock()
	return len(p), nil
}

// kick tells the flusher packets are pending. Called with mu held.
func (w *writer) kick() {
	if len(w.pending) == 0 || w.closed {
		return
	}
	select {
	case w.wake <- struct{}{}:
	default: // a token is already there
	}
}

func (w *writer) flush() {
	defer close(w.done)
	for range w.wake {
		for {
			w.mu.Lock()
			if w.writing { // an inline write; it kicks when done
				w.mu.Unlock()
				break
			}
			k := min(len(w.pending), w.perSend)
			batch := append(w.spare[:0], w.pending[:k]...)
			w.pending = append(w.pending[:0], w.pending[k:]...)
			coalesce := w.coalesce
			w.writing = len(batch) > 0
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			w.sendBatch(batch, coalesce)
			w.mu.Lock()
			w.writing = false
			for _, b := range batch {
				w.free = append(w.free, b[:0])
			}
			w.spare = batch[:0]
			w.space.Broadcast()
			more := len(w.pending) > 0
			w.mu.Unlock()
			if !more {
				break
			}
		}
	}
	w.arena.free()
}

// sendBatch writes one batch: coalesced, or a packet per call once the
// kernel has refused a coalesced write on this device.
func (w *writer) sendBatch(batch [][]byte, coalesce bool) {
	if !coalesce || len(batch) == 1 {
		for _, b := range batch {
			if _, err := w.plain(b[w.offset:]); err != nil {
				w.lose(1, err)
			}
		}
		return
	}
	send := w.withHeads(batch)
	_, err := w.tun.Write(send, w.offset)
	switch {
	case err == nil:
	case errors.Is(err, unix.EINVAL):
		// The batch is lost (its buffers were rewritten while
		// coalescing); TCP sends it again.
		w.mu.Lock()
		w.coalesce = false
		w.mu.Unlock()
		w.lost.Add(uint64(len(batch)))
		w.log.Warn("the kernel refused a coalesced write; writing plain packets from now on", "error", err)
	default:
		w.lose(len(batch), err)
	}
}

// withHeads returns the batch with the first packet of each of its first
// headCount flows copied into a buffer that can grow to a super-packet.
func (w *writer) withHeads(batch [][]byte) [][]byte {
	send := append(w.send[:0], batch...)
	var seen [headCount]flowKey
	n := 0
	for i, b := range batch {
		if n == headCount {
			break
		}
		k, ok := keyOf(b[w.offset:])
		if !ok {
			continue
		}
		if slices.Contains(seen[:n], k) {
			continue
		}
		seen[n] = k
		send[i] = append(w.heads[n][:0], b...)
		n++
	}
	return send
}

// flowKey is what wireguard-go coalesces by: addresses, protocol, ports.
type flowKey struct {
	src, dst     [16]byte
	sport, dport uint16
	proto        byte
}

func keyOf(p []byte) (flowKey, bool) {
	var k flowKey
	var l4 []byte
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		ihl := int(p[0]&0xf) * 4
		if ihl < 20 || len(p) < ihl+4 {
			return k, false
		}
		copy(k.src[:], p[12:16])
		copy(k.dst[:], p[16:20])
		k.proto, l4 = p[9], p[ihl:]
	case len(p) >= 44 && p[0]>>4 == 6:
		copy(k.src[:], p[8:24])
		copy(k.dst[:], p[24:40])
		k.proto, l4 = p[6], p[40:]
	default:
		return k, false
	}
	if k.proto != unix.IPPROTO_TCP && k.proto != unix.IPPROTO_UDP {
		return k, false
	}
	k.sport, k.dport = uint16(l4[0])<<8|uint16(l4[1]), uint16(l4[2])<<8|uint16(l4[3])
	return k, true
}

func (w *writer) lose(n int, err error) {
	if w.lost.Add(uint64(n)) == uint64(n) {
		w.log.Warn("packets lost writing to the interface (logged once per device)", "error", err)
	}
}

func (w *writer) coalescing() bool {
	if !w.queued {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.coalesce
}

// close stops taking packets, lets the flusher write what is queued, and
// waits for it to end.
func (w *writer) close() {
	if !w.queued {
		return
	}
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.wake)
		w.space.Broadcast()
	}
	w.mu.Unlock()
	<-w.done
}

var start = time.Now()

// nanotime is monotonic nanoseconds (time.Since reads the monotonic clock).
func nanotime() int64 { return int64(time.Since(start)) }
