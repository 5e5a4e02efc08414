// Package k8s brings up a single-node Kubernetes from real components on this
// machine, in network namespaces of its own (make e2e-k8s): etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy and
// kubelet built from their Go modules, containerd and runc from Debian, the
// reference bridge + host-local as the primary CNI, CoreDNS. Images are
// written as OCI archives from static binaries and imported; nothing is
// pulled.
package k8s

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is an image made of files (path in the image → file on this machine)
// with an entrypoint.
type Image struct {
	Ref        string // e.g. docker.io/library/sealmesh:e2e
	Files      map[string]string
	Entrypoint []string
}

// WriteArchive writes img as an image archive that `ctr images import` reads.
func (img Image) WriteArchive(out string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for dst, src := range img.Files {
		for d := path.Dir(dst); d != "/" && d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755}); err != nil {
				return err
			}
		}
		f, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.Ref, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dst[1:], Mode: 0o755, Size: fi.Size()}); err != nil {
			f.Close()
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	// A writable /tmp for programs that want one.
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return err
	}
	im, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := im.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Entrypoint: img.Entrypoint, Env: []string{"PATH=/"}}
	if im, err = mutate.ConfigFile(im, cf); err != nil {
		return err
	}
	ref, err := name.ParseReference(img.Ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, im)
}
