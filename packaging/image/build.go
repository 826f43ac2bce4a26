package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Binaries are the programs the image holds, in /usr/bin.
var Binaries = []string{"tmwarden-agent", "tmwarden-coordinator", "tmwardenctl"}

// NonRootUID is the user the image runs as by default (the coordinator); the chart runs the
// agent as root without capabilities other than its own.
const NonRootUID = 65532

// epoch is every timestamp in the image: a fixed time keeps the digest a function of the content.
var epoch = time.Unix(0, 0).UTC()

// Options are the inputs of Build.
type Options struct {
	BinDir    string
	Arches    []string
	CABundle  string
	ConfigDir string
	Version   string
	Out       string
}

// Build writes the OCI layout and returns the index digest.
func Build(o Options) (v1.Hash, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range o.Arches {
		img, err := archImage(o, arch)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("linux/%s: %w", arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	if err := os.RemoveAll(o.Out); err != nil {
		return v1.Hash{}, err
	}
	if _, err := layout.Write(o.Out, idx); err != nil {
		return v1.Hash{}, fmt.Errorf("writing %s: %w", o.Out, err)
	}
	return idx.Digest()
}

func archImage(o Options, arch string) (v1.Image, error) {
	layerTar, err := rootfs(o, arch)
	if err != nil {
		return nil, err
	}
	// The layer is gzipped once: without WithCompressedCaching, go-containerregistry gzips the
	// whole layer again for its digest and for each write.
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		CreatedBy: "packaging/image: tmwarden binaries, CA certificates, passwd", Created: v1.Time{Time: epoch}}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{"/usr/bin/tmwarden-coordinator"}
	cf.Config.User = fmt.Sprintf("%d:%d", NonRootUID, NonRootUID)
	cf.Config.Env = []string{"PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.ExposedPorts = map[string]struct{}{"9710/tcp": {}, "9711/tcp": {}, "9712/tcp": {}, "9713/tcp": {}}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "tmwarden",
		"org.opencontainers.image.version": o.Version,
		"org.opencontainers.image.source":  "https://github.com/tmwarden/tmwarden",
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the image's one layer as a tar: directories first, entries sorted, owners root
// except the non-root user's writable /tmp, fixed times.
func rootfs(o Options, arch string) ([]byte, error) {
	type entry struct {
		name string
		mode int64
		body []byte
		dir  bool
	}
	read := func(p string) ([]byte, error) { return os.ReadFile(p) }
	var files []entry
	for _, d := range []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "etc/tmwarden/", "usr/", "usr/bin/", "var/", "var/lib/", "var/lib/tmwarden/"} {
		files = append(files, entry{name: d, mode: 0o755, dir: true})
	}
	files = append(files, entry{name: "tmp/", mode: 0o1777, dir: true})
	ca, err := read(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle (apt-get install ca-certificates): %w", err)
	}
	files = append(files,
		entry{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: ca},
		entry{name: "etc/passwd", mode: 0o644, body: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRootUID, NonRootUID))},
		entry{name: "etc/group", mode: 0o644, body: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRootUID))})
	for _, c := range []string{"agent.yaml", "coordinator.yaml"} {
		b, err := read(filepath.Join(o.ConfigDir, c))
		if err != nil {
			return nil, err
		}
		files = append(files, entry{name: "etc/tmwarden/" + c, mode: 0o644, body: b})
	}
	for _, bin := range Binaries {
		b, err := read(filepath.Join(o.BinDir, arch, bin))
		if err != nil {
			return nil, fmt.Errorf("binary: %w", err)
		}
		files = append(files, entry{name: "usr/bin/" + bin, mode: 0o755, body: b})
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: epoch, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
