package tundev

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

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
	tun     wgtun.Device
	offload bool
	slot    int // each buffer's size: the MTU

	// mu is held across the blocking read: Nebula reads from one goroutine,
	// and free must wait for that read to end before unmapping its buffers.
	mu    sync.Mutex
	arena arena
	bufs  [][]byte
	sizes []int
	n, i  int // packets in the batch, next to hand out

	lost atomic.Uint64 // super-packets that could not be split
}

func newReader(tun wgtun.Device, offload bool, mtu int) (*reader, error) {
	n := tun.BatchSize()
	a, err := newArena(n * mtu)
	if err != nil {
		return nil, err
	}
	r := &reader{tun: tun, offload: offload, slot: mtu, arena: a, bufs: a.slots(n, mtu), sizes: make([]int, n)}
	for i := range r.bufs {
		r.bufs[i] = r.bufs[i][:mtu]
	}
	return r, nil
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
		if err != nil {
			var perr *os.PathError
			if errors.As(err, &perr) || errors.Is(err, os.ErrClosed) {
				return 0, err
			}
			// Anything else is about one super-packet (a header the
			// splitter refuses, too many segments): lost, as a dropped
			// packet would be, and never fatal to Nebula.
			r.lost.Add(1)
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

// writer queues Nebula's packets and writes them in batches.
//
// Nebula writes from its UDP reader's goroutine, one packet per call, with
// no word on whether more are coming. The flusher takes everything queued
// whenever it runs, up to 64 KiB: while one write is in the kernel, the
// packets decrypted meanwhile queue up and go in the next, coalesced; a
// packet that finds the flusher idle goes at once.
type writer struct {
	tun    wgtun.Device
	offset int // room in front of each packet for the virtio header
	log    *slog.Logger

	queued  bool // coalescing asked for (else each write is synchronous)
	perSend int  // packets per batch: 64 KiB of them

	mu       sync.Mutex
	space    sync.Cond // signalled when buffers come back
	free     [][]byte
	pending  [][]byte
	spare    [][]byte
	coalesce bool // false once the kernel refused a coalesced write
	closed   bool
	wake     chan struct{} // one token: packets are pending
	done     chan struct{} // closed when the flusher has ended

	arena arena
	plain sync.Pool // synchronous writes' buffers with header room

	lost atomic.Uint64 // packets the kernel refused
}

func newWriter(tun wgtun.Device, vnetHdr, coalesce bool, mtu int, log *slog.Logger) (*writer, error) {
	w := &writer{tun: tun, log: log}
	if vnetHdr {
		w.offset = virtioNetHdrLen
	}
	w.plain.New = func() any { b := make([]byte, w.offset+mtu); return &b }
	if !vnetHdr || !coalesce {
		return w, nil
	}
	w.queued, w.coalesce = true, true
	w.perSend = (maxSuper + mtu - 1) / mtu
	// Twice a batch: one being written, the next filling up meanwhile.
	n := 2 * w.perSend
	size := (w.offset + maxSuper + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	a, err := newArena(n * size)
	if err != nil {
		return nil, err
	}
	w.arena = a
	// Every buffer can hold a whole super-packet: wireguard-go coalesces
	// a flow's segments into its first buffer's spare capacity.
	w.free = a.slots(n, size)
	w.pending = make([][]byte, 0, n)
	w.spare = make([][]byte, 0, n)
	w.space.L = &w.mu
	w.wake = make(chan struct{}, 1)
	w.done = make(chan struct{})
	go w.flush()
	return w, nil
}

func (w *writer) write(p []byte) (int, error) {
	if !w.queued {
		return w.writeNow(p)
	}
	if len(p) > maxSuper {
		return 0, fmt.Errorf("tundev: packet of %d bytes", len(p))
	}
	w.mu.Lock()
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
		select {
		case w.wake <- struct{}{}:
		default: // a token is already there
		}
	}
	w.mu.Unlock()
	return len(p), nil
}

// writeNow writes one packet with a system call of its own.
func (w *writer) writeNow(p []byte) (int, error) {
	if w.offset == 0 {
		if _, err := w.tun.Write([][]byte{p}, 0); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	bp := w.plain.Get().(*[]byte)
	defer w.plain.Put(bp)
	b := append((*bp)[:w.offset], p...)
	*bp = b[:0]
	if _, err := w.tun.Write([][]byte{b}, w.offset); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *writer) flush() {
	defer close(w.done)
	for range w.wake {
		for {
			w.mu.Lock()
			k := min(len(w.pending), w.perSend)
			batch := append(w.spare[:0], w.pending[:k]...)
			w.pending = append(w.pending[:0], w.pending[k:]...)
			coalesce := w.coalesce
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			w.send(batch, coalesce)
			w.mu.Lock()
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

// send writes one batch: coalesced, or a packet per call once the kernel
// has refused a coalesced write on this device.
func (w *writer) send(batch [][]byte, coalesce bool) {
	if !coalesce {
		for i := range batch {
			if _, err := w.tun.Write(batch[i:i+1], w.offset); err != nil {
				w.lose(1, err)
			}
		}
		return
	}
	_, err := w.tun.Write(batch, w.offset)
	switch {
	case err == nil:
	case errors.Is(err, unix.EINVAL) && len(batch) > 1:
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
