package history_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

// TestAppendSurvivesKill9 kills a process appending a transition to a file store
// after every step of every file it writes (the manifest, CA and transition
// objects, then the latest pointer), and checks that the store left behind loads
// and verifies, at the old generation or the new one.
func TestAppendSurvivesKill9(t *testing.T) {
	if dir := os.Getenv("SEALMESH_APPEND_DIR"); dir != "" {
		appendAndDie(dir)
		return
	}
	// Each Append writes 4 files of 6 steps each; kill after the k-th step.
	for k := 1; k <= 4*len(atomicfile.Steps)+1; k++ {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			st, _ := store.OpenFile(dir)
			seed, _ := keys.NewSeed()
			key, pemKey, _, _ := owner.NewOwnerKey()
			os.WriteFile(dir+"/../owner.key", pemKey, 0o600)
			m := mf(t, "1h", key)
			if _, err := history.Create(ctx, st, seed, m, history.Sign("", m, key), []byte("CA"), nil, time.Now()); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestAppendSurvivesKill9$")
			cmd.Env = append(os.Environ(), "SEALMESH_APPEND_DIR="+dir, "SEALMESH_SEED="+hex.EncodeToString(seed[:]),
				"SEALMESH_KEY="+dir+"/../owner.key", fmt.Sprintf("SEALMESH_KILL_AFTER=%d", k))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
			if !killed && err != nil {
				t.Fatalf("helper failed: %v\n%s", err, out)
			}
			s, err := history.Load(ctx, st, seed, history.Floor{})
			if err != nil {
				t.Fatalf("after kill -9 at step %d the store does not load: %v", k, err)
			}
			want := uint64(1)
			// Three objects, then the latest pointer, whose 5th step is the
			// rename: from there on the new generation is in place.
			if k >= 3*len(atomicfile.Steps)+5 {
				want = 2
			}
			if s.Generation() != want {
				t.Errorf("after kill -9 at step %d: generation %d, want %d", k, s.Generation(), want)
			}
		})
	}
}

func appendAndDie(dir string) {
	ctx := context.Background()
	st, _ := store.OpenFile(dir)
	raw, _ := hex.DecodeString(os.Getenv("SEALMESH_SEED"))
	seed, _ := keys.SeedFrom(raw)
	key, err := owner.LoadOwnerKey(os.Getenv("SEALMESH_KEY"))
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	cur, err := history.Load(ctx, st, seed, history.Floor{})
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	var killAfter, n int
	fmt.Sscan(os.Getenv("SEALMESH_KILL_AFTER"), &killAfter)
	atomicfile.AfterStep = func(string) {
		n++
		if n == killAfter {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	m := mf(&testing.T{}, "2h", key)
	if _, err := history.Append(ctx, st, seed, cur, m, history.Sign(cur.Head, m, key), time.Now()); err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
}
