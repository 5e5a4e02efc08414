package ociimage

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image make image writes, read back as a runtime reads it: every
// binary at its root and executable, nonroot by default with a passwd that
// names the user, the OCI labels, a writable /tmp; and the same bytes from
// the same inputs.
func TestSealmeshImage(t *testing.T) {
	bin := t.TempDir()
	for _, c := range Commands {
		if err := os.WriteFile(filepath.Join(bin, c), []byte("#!"+c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	created := time.Unix(1764979200, 0)
	out := filepath.Join(t.TempDir(), "image.tar")
	if err := Sealmesh("ghcr.io/sealmesh/sealmesh:v1", bin, "v1", "abc123", created).WriteArchive(out); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != NonRoot || cf.OS != "linux" || !cf.Created.Time.Equal(created) {
		t.Errorf("config user %q os %q created %v", cf.Config.User, cf.OS, cf.Created)
	}
	for k, want := range map[string]string{"org.opencontainers.image.version": "v1", "org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.licenses": "Apache-2.0", "org.opencontainers.image.source": "https://github.com/sealmesh/sealmesh"} {
		if cf.Config.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], want)
		}
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	contents := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		files["/"+strings.TrimSuffix(h.Name, "/")] = h
		b, _ := io.ReadAll(tr)
		contents["/"+h.Name] = string(b)
	}
	for _, c := range Commands {
		h := files["/"+c]
		if h == nil || h.Mode&0o111 == 0 || contents["/"+c] != "#!"+c {
			t.Errorf("/%s: %+v", c, h)
		}
	}
	if !regexp.MustCompile(`(?m)^nonroot:x:65532:65532:`).MatchString(contents["/etc/passwd"]) {
		t.Errorf("/etc/passwd %q does not name the image's user", contents["/etc/passwd"])
	}
	if h := files["/tmp"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp: %+v", h)
	}

	// Reproducible: a second build of the same inputs has the same digest.
	again := filepath.Join(t.TempDir(), "again.tar")
	if err := Sealmesh("ghcr.io/sealmesh/sealmesh:v1", bin, "v1", "abc123", created).WriteArchive(again); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("two builds of the same inputs differ")
	}
}

// The Dockerfile builds what make image builds: every command, nonroot,
// the same labels.
func TestDockerfileMatches(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, c := range Commands {
		if !strings.Contains(df, "./cmd/"+c) {
			t.Errorf("the Dockerfile does not build %s", c)
		}
	}
	if !strings.Contains(df, "USER 65532:65532") || !strings.Contains(df, `ENTRYPOINT ["/meshctl"]`) {
		t.Error("the Dockerfile's user or entrypoint differ from make image's")
	}
	img := Sealmesh("x", "", "", "", time.Time{})
	for k := range img.Labels {
		if k != "org.opencontainers.image.created" && !strings.Contains(df, k+"=") {
			t.Errorf("the Dockerfile lacks label %s", k)
		}
	}
	mk, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CMDS\s*:=\s*(.*)$`).FindSubmatch(mk)
	if m == nil || !slices.Equal(strings.Fields(string(m[1])), Commands) {
		t.Errorf("the Makefile's CMDS %q differ from the image's %v", m, Commands)
	}
}

// The Dockerfile's first stage downloads the modules from what it has
// copied so far: go.mod's local replacements must be among it. Done here
// without Docker: those files alone, in a directory of their own, and
// `go mod download` there.
func TestDockerfileModuleStage(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stage := t.TempDir()
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "RUN" && strings.Join(f[1:], " ") == "go mod download" {
			found = true
			break
		}
		if len(f) < 3 || f[0] != "COPY" || strings.HasPrefix(f[1], "--") {
			continue
		}
		dst := f[len(f)-1]
		for _, src := range f[1 : len(f)-1] {
			copyLikeDocker(t, filepath.Join(root, src), filepath.Join(stage, dst), strings.HasSuffix(dst, "/"))
		}
	}
	if !found {
		t.Fatal("the Dockerfile has no RUN go mod download")
	}
	cmd := exec.Command("go", "mod", "download")
	cmd.Dir = stage
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod download with what the Dockerfile copies first: %v\n%s", err, out)
	}
}

// copyLikeDocker copies src as COPY does: a directory's contents into dst,
// a file into dst (or, when dst names a directory, into it).
func copyLikeDocker(t *testing.T, src, dst string, dstDir bool) {
	t.Helper()
	st, err := os.Stat(src)
	if err != nil {
		t.Fatalf("COPY %s: %v", src, err)
	}
	if st.IsDir() {
		if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
			t.Fatalf("COPY %s: %v", src, err)
		}
		return
	}
	if dstDir {
		dst = filepath.Join(dst, filepath.Base(src))
	}
	data, err := os.ReadFile(src)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(dst), 0o755)
	}
	if err == nil {
		err = os.WriteFile(dst, data, 0o644)
	}
	if err != nil {
		t.Fatalf("COPY %s: %v", src, err)
	}
}
