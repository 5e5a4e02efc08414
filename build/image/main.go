// Command image writes sealmesh's container image (make image): every binary
// of --bin in one distroless-style layer, with go-containerregistry and no
// Docker daemon, as an archive that `ctr images import` and `docker load`
// read; --load-containerd imports it into the local containerd as well.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/sealmesh/sealmesh/internal/ociimage"
)

func main() {
	bin := flag.String("bin", "bin/static", "directory of the static binaries")
	ref := flag.String("ref", "ghcr.io/sealmesh/sealmesh:dev", "the image's reference")
	out := flag.String("out", "bin/sealmesh-image.tar", "the image archive to write")
	version := flag.String("version", "dev", "org.opencontainers.image.version")
	revision := flag.String("revision", "", "org.opencontainers.image.revision (the commit)")
	created := flag.Int64("created", 0, "the image's creation time, Unix seconds (default $SOURCE_DATE_EPOCH, else 0): builds of one commit are byte-identical")
	load := flag.Bool("load-containerd", false, "import the archive into containerd's k8s.io namespace with ctr ($CONTAINERD_ADDRESS says where containerd listens)")
	flag.Parse()
	if flag.NArg() > 0 {
		fatal(fmt.Errorf("unexpected arguments %v", flag.Args()))
	}
	when := *created
	if when == 0 {
		if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			var err error
			if when, err = strconv.ParseInt(s, 10, 64); err != nil {
				fatal(fmt.Errorf("$SOURCE_DATE_EPOCH %q: %w", s, err))
			}
		}
	}
	img := ociimage.Sealmesh(*ref, *bin, *version, *revision, time.Unix(when, 0).UTC())
	if err := img.WriteArchive(*out); err != nil {
		fatal(err)
	}
	fmt.Printf("wrote %s (%s)\n", *out, *ref)
	if *load {
		cmd := exec.Command("ctr", "--namespace", "k8s.io", "images", "import", *out)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fatal(fmt.Errorf("ctr images import: %w", err))
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}
