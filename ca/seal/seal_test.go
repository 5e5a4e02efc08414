package seal_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

func TestSealOpen(t *testing.T) {
	k1, _, _ := seal.NewUnlockKey()
	k2, _, _ := seal.NewUnlockKey()
	secret := []byte("the seed")
	b, err := seal.Seal(secret, k1)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, secret) {
		t.Fatal("sealed blob contains the secret")
	}
	if got, err := seal.Open(b, k1); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := seal.Open(b, k2); !errors.Is(err, seal.ErrWrongKey) {
		t.Fatalf("Open with another key: %v, want ErrWrongKey", err)
	}
	// Same id, different key material cannot happen by construction; a
	// corrupted ciphertext must not open.
	c := bytes.Clone(b)
	i := bytes.Index(c, []byte(`"ciphertext":"`)) + 20
	c[i] ^= 1
	if _, err := seal.Open(c, k1); err == nil {
		t.Fatal("corrupted blob opened")
	}
	r, err := seal.Rewrap(b, k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := seal.Open(r, k2); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open after rewrap = %q, %v", got, err)
	}
	if _, err := seal.Open(r, k1); err == nil {
		t.Fatal("the old key opens the rewrapped blob")
	}
}

func TestUnlockKeyText(t *testing.T) {
	k, text, err := seal.NewUnlockKey()
	if err != nil {
		t.Fatal(err)
	}
	p, err := seal.ParseUnlockKey(text + "\n")
	if err != nil || p.ID() != k.ID() {
		t.Fatalf("ParseUnlockKey = %v, %v", p, err)
	}
	for _, bad := range []string{"", "SMUK1-", "SMUK1-abc", strings.TrimPrefix(text, "SMUK1-")} {
		if _, err := seal.ParseUnlockKey(bad); err == nil {
			t.Errorf("ParseUnlockKey(%q) succeeded", bad)
		}
	}
}

func TestShares(t *testing.T) {
	a, _ := seal.NewX25519()
	b, _ := seal.NewX25519()
	ct, err := seal.SealTo(a.PublicKey().Bytes(), "seed share", []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := seal.OpenWith(a, "seed share", ct); err != nil || string(pt) != "seed" {
		t.Fatalf("OpenWith = %q, %v", pt, err)
	}
	if _, err := seal.OpenWith(b, "seed share", ct); err == nil {
		t.Fatal("another key opened the share")
	}
	if _, err := seal.OpenWith(a, "recovery", ct); err == nil {
		t.Fatal("the share opened for another use")
	}
}

// TestRotationSurvivesKill9 kills a process rotating the unlock key after every
// step of the file replacement and checks that the state left behind opens with
// the old or the new key.
func TestRotationSurvivesKill9(t *testing.T) {
	if dir := os.Getenv("SEALMESH_ROTATE_DIR"); dir != "" {
		rotateAndDie(dir, os.Getenv("SEALMESH_ROTATE_OLD"), os.Getenv("SEALMESH_ROTATE_NEW"), os.Getenv("SEALMESH_CRASH_AT"))
		return
	}
	for _, step := range append(atomicfile.Steps, "none") {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			oldK, oldText, _ := seal.NewUnlockKey()
			newK, newText, _ := seal.NewUnlockKey()
			if err := seal.WriteFile(dir, "sealed", []byte("seed"), oldK); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestRotationSurvivesKill9$")
			cmd.Env = append(os.Environ(), "SEALMESH_ROTATE_DIR="+dir, "SEALMESH_ROTATE_OLD="+oldText,
				"SEALMESH_ROTATE_NEW="+newText, "SEALMESH_CRASH_AT="+step)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
			if step != "none" && !killed {
				t.Fatalf("helper was not killed at %s: %v\n%s", step, err, out)
			}
			if step == "none" && err != nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			opened := ""
			if pt, err := seal.ReadFile(dir, "sealed", oldK); err == nil && string(pt) == "seed" {
				opened = "old"
			}
			if pt, err := seal.ReadFile(dir, "sealed", newK); err == nil && string(pt) == "seed" {
				opened += "new"
			}
			if opened != "old" && opened != "new" {
				t.Fatalf("after kill -9 at %s the state opens with %q", step, opened)
			}
			want := "old"
			if step == "renamed" || step == "dir-synced" || step == "none" {
				want = "new"
			}
			if opened != want {
				t.Errorf("after kill -9 at %s the %s key opens it, want the %s", step, opened, want)
			}
		})
	}
}

func rotateAndDie(dir, oldText, newText, at string) {
	oldK, err1 := seal.ParseUnlockKey(oldText)
	newK, err2 := seal.ParseUnlockKey(newText)
	if err1 != nil || err2 != nil {
		fmt.Println(err1, err2)
		os.Exit(2)
	}
	atomicfile.AfterStep = func(s string) {
		if s == at {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	if err := seal.RotateFile(dir, "sealed", oldK, newK); err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
}
