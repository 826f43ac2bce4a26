package ebpf

// The generated loaders and objects are committed, so `go build` needs no clang. `make generate`
// rebuilds them with clang, libbpf's headers and the vmlinux.h dumped from this kernel's BTF.

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -type runq_hist runqlat runqlat.c -- -I./include -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel biolat biolat.c -- -I./include -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -type retrans_key tcpretrans tcpretrans.c -- -I./include -O2 -g -Wall -Werror
