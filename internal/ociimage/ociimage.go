// Package ociimage writes container images from files on this machine, with
// go-containerregistry and no Docker daemon: sealmesh's image (make image)
// and the e2e cluster's test images. An image is one layer holding the
// files, a passwd and group naming root and nonroot (65532, as distroless
// does), the host's CA bundle when it has one, and a writable /tmp.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is an image made of files (path in the image → file on this machine).
type Image struct {
	Ref   string // e.g. ghcr.io/sealmesh/sealmesh:v0.2.0
	Files map[string]string
	// Links are symbolic links (path in the image → target), as a busybox
	// image has for its applets.
	Links      map[string]string
	Entrypoint []string
	Cmd        []string
	// Env defaults to PATH=/ (the binaries are at the root).
	Env []string
	// User runs the entrypoint; "" is root. Components that need root
	// say so in their pod's securityContext.
	User   string
	Labels map[string]string
	// Created stamps the image (and its files): a fixed time (the commit's)
	// makes builds of one commit byte-identical.
	Created time.Time
}

// NonRoot is distroless's unprivileged user.
const NonRoot = "65532:65532"

const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group  = "root:x:0:\nnonroot:x:65532:\n"
	// caBundle is where Debian keeps the CA bundle and Go looks first.
	caBundle = "/etc/ssl/certs/ca-certificates.crt"
)

// layer is the image's one layer, in a fixed order.
func (img Image) layer() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mod := img.Created
	dirs := map[string]bool{}
	dir := func(d string, mode int64) error {
		if dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: mode, ModTime: mod})
	}
	parents := func(p string) error {
		var chain []string
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			chain = append([]string{d}, chain...)
		}
		for _, d := range chain {
			if err := dir(d, 0o755); err != nil {
				return err
			}
		}
		return nil
	}
	file := func(p string, mode int64, data []byte) error {
		if err := parents(p); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p[1:], Mode: mode, Size: int64(len(data)), ModTime: mod}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := file("/etc/passwd", 0o644, []byte(passwd)); err != nil {
		return nil, err
	}
	if err := file("/etc/group", 0o644, []byte(group)); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(caBundle); err == nil {
		if err := file(caBundle, 0o644, b); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "home/nonroot/", Mode: 0o700, Uid: 65532, Gid: 65532, ModTime: mod}); err != nil {
		return nil, err
	}
	// A writable /tmp for programs that want one.
	if err := dir("/tmp", 0o1777); err != nil {
		return nil, err
	}
	dsts := make([]string, 0, len(img.Files))
	for d := range img.Files {
		dsts = append(dsts, d)
	}
	sort.Strings(dsts)
	for _, dst := range dsts {
		b, err := os.ReadFile(img.Files[dst])
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img.Ref, err)
		}
		if err := file(dst, 0o755, b); err != nil {
			return nil, err
		}
	}
	links := make([]string, 0, len(img.Links))
	for l := range img.Links {
		links = append(links, l)
	}
	sort.Strings(links)
	for _, l := range links {
		if err := parents(l); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: l[1:], Linkname: img.Links[l], Mode: 0o777, ModTime: mod}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Build returns the image.
func (img Image) Build() (v1.Image, error) {
	data, err := img.layer()
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	im, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := im.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: img.Created}
	env := img.Env
	if env == nil {
		env = []string{"PATH=/"}
	}
	cf.Config = v1.Config{Entrypoint: img.Entrypoint, Cmd: img.Cmd, Env: env, User: img.User, Labels: img.Labels}
	return mutate.ConfigFile(im, cf)
}

// WriteArchive writes the image as an archive that `ctr images import`
// and `docker load` read.
func (img Image) WriteArchive(out string) error {
	im, err := img.Build()
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(img.Ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, im)
}

// Commands are the sealmesh binaries the image holds, at its root (the
// chart runs /sealmesh-agent and so on).
var Commands = []string{"sealmesh-coordinator", "sealmesh-agent", "sealmesh-tunnel", "sealmesh-cni", "sealmesh-lighthouse", "meshctl"}

// Sealmesh is sealmesh's image: every binary of binDir (built static), run
// as nonroot unless a pod says otherwise, labelled as OCI's annotations
// spec says.
func Sealmesh(ref, binDir, version, revision string, created time.Time) Image {
	files := map[string]string{}
	for _, c := range Commands {
		files["/"+c] = filepath.Join(binDir, c)
	}
	return Image{
		Ref: ref, Files: files, Entrypoint: []string{"/meshctl"}, User: NonRoot, Created: created,
		Labels: map[string]string{
			"org.opencontainers.image.title":       "sealmesh",
			"org.opencontainers.image.description": "Attested Nebula overlay network for Kubernetes pods and VMs: coordinator, node agent, CNI plugin, lighthouse, meshctl",
			"org.opencontainers.image.source":      "https://github.com/sealmesh/sealmesh",
			"org.opencontainers.image.licenses":    "Apache-2.0",
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.revision":    revision,
			"org.opencontainers.image.created":     created.UTC().Format(time.RFC3339),
		},
	}
}
