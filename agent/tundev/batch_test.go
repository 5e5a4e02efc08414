package tundev

import (
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// refusing stands in for a kernel that takes single packets but refuses
// every coalesced write (EINVAL), as a kernel without GSO on TUN writes
// would. The first write blocks until released, so that a burst queues
// behind it.
type refusing struct {
	wgtun.Device
	release chan struct{}
	mu      sync.Mutex
	calls   []int // packets per Write call
}

func (r *refusing) Write(bufs [][]byte, offset int) (int, error) {
	r.mu.Lock()
	first := len(r.calls) == 0
	r.calls = append(r.calls, len(bufs))
	r.mu.Unlock()
	if first {
		<-r.release
	}
	if len(bufs) > 1 {
		return 0, unix.EINVAL
	}
	return len(bufs[0]) - offset, nil
}

// TestWriteFallsBackToPlain: once the kernel refuses a coalesced write,
// the device writes each packet with its own call from then on.
func TestWriteFallsBackToPlain(t *testing.T) {
	dev := &refusing{release: make(chan struct{})}
	// The kernel takes lone packets through the plain path.
	plain := func(p []byte) (int, error) {
		return dev.Write([][]byte{append(make([]byte, virtioNetHdrLen), p...)}, virtioNetHdrLen)
	}
	w, err := newWriter(dev, plain, true, 1300, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	pkt := make([]byte, 100)
	pkt[0] = 0x45
	burst := func(n int) {
		for range n {
			if _, err := w.write(pkt); err != nil {
				t.Error(err)
			}
		}
	}
	go burst(1) // written at once by its caller, held in the fake kernel
	waitCalls(t, dev, 1)
	burst(5) // queued behind it
	close(dev.release)
	waitCalls(t, dev, 2) // one batch, refused
	if w.coalescing() {
		t.Fatal("still coalescing after the kernel refused a coalesced write")
	}
	burst(5)
	waitCalls(t, dev, 7)
	dev.mu.Lock()
	defer dev.mu.Unlock()
	if dev.calls[1] != 5 {
		t.Fatalf("calls %v: the burst was not sent as one batch", dev.calls)
	}
	for _, n := range dev.calls[2:] {
		if n != 1 {
			t.Fatalf("calls %v: a batch after the refusal", dev.calls)
		}
	}
}

func waitCalls(t *testing.T, dev *refusing, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		dev.mu.Lock()
		got := len(dev.calls)
		dev.mu.Unlock()
		if got >= n {
			return
		}
	}
	t.Fatalf("fewer than %d writes", n)
}
