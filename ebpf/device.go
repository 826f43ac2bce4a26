package ebpf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DeviceName returns the kernel name of a block device (vda, nvme0n1) from
// SYSFS/dev/block/MAJ:MIN/uevent, or MAJ:MIN when sysfs does not know it.
func DeviceName(sysfs string, d Dev) string {
	f, err := os.Open(filepath.Join(sysfs, "dev", "block", d.String(), "uevent"))
	if err != nil {
		return d.String()
	}
	defer f.Close()
	kv, err := ParseUevent(f)
	if err != nil || kv["DEVNAME"] == "" {
		return d.String()
	}
	return kv["DEVNAME"]
}

// ParseUevent reads a sysfs uevent file of KEY=VALUE lines.
func ParseUevent(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("uevent line %d: want KEY=VALUE, got %q", n, line)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read uevent: %w", err)
	}
	return out, nil
}
