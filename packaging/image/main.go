// Command image writes tmwarden's container image as an OCI image layout without a container
// engine: one layer on an empty base per architecture (the three static binaries, Debian's CA
// bundle, a passwd entry for the non-root user, the default configuration files), under one
// multi-architecture index. Every byte follows from its inputs (fixed timestamps and owners,
// sorted entries), so the same binaries give the same image digest. `make image` runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	var o Options
	var arches string
	flag.StringVar(&o.BinDir, "bin-dir", "dist/image/bin", "directory with one subdirectory per architecture holding the three binaries")
	flag.StringVar(&arches, "arches", "amd64,arm64", "comma-separated architectures")
	flag.StringVar(&o.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates (Debian's ca-certificates)")
	flag.StringVar(&o.ConfigDir, "config-dir", "packaging/config", "directory with agent.yaml and coordinator.yaml")
	flag.StringVar(&o.Version, "version", "dev", "image version (label org.opencontainers.image.version)")
	flag.StringVar(&o.Out, "out", "dist/image/oci", "OCI image layout directory to write (replaced)")
	flag.Parse()
	o.Arches = strings.Split(arches, ",")
	digest, err := Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (index %s)\n", o.Out, digest)
}
