package agent

import (
	"strings"
	"testing"
)

func TestParseCPUInfo(t *testing.T) {
	x86 := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n"
	if m, n := parseCPUInfo(strings.NewReader(x86)); m != "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz" || n != 2 {
		t.Errorf("x86: got %q, %d", m, n)
	}
	arm := "processor\t: 0\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\nprocessor\t: 1\nCPU part\t: 0xd0c\n"
	if m, n := parseCPUInfo(strings.NewReader(arm)); m != "CPU part 0xd0c" || n != 2 {
		t.Errorf("arm: got %q, %d", m, n)
	}
}

func TestParseMemTotal(t *testing.T) {
	if got := parseMemTotal(strings.NewReader("MemTotal:       32780132 kB\nMemFree:         1000 kB\n")); got != 32780132<<10 {
		t.Errorf("got %d", got)
	}
	if got := parseMemTotal(strings.NewReader("garbage\n")); got != 0 {
		t.Errorf("garbage: got %d", got)
	}
}

func TestReadMachineHere(t *testing.T) {
	m := readMachine("")
	if m.numCPUs == 0 || m.memoryBytes == 0 {
		t.Errorf("this machine's /proc gave %+v", m)
	}
}
