# tmwarden build, test and demo targets. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS):$(PATH)

# Pinned generator and tool versions: `make generate` must reproduce the committed code.
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: help build demo test test-deps generate generate-proto lint fmt-check vet bench bench-node clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## build the three binaries into ./bin
	$(GO) build -o $(BIN)/ ./cmd/...

demo: build ## run coordinator, a real agent and a simulated cluster in one process
	$(BIN)/tmwardenctl demo $(DEMO_ARGS)

test: test-deps fmt-check vet ## gofmt, go vet and every test with the race detector
	$(GO) test -race -count=1 -timeout 25m ./...

test-deps: ## install what the tests need (idempotent)
	@bash hack/test-deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

bench: ## coordinator ingest benchmark
	$(GO) test -run '^$$' -bench . -benchmem ./coordinator/...

bench-node: ## agent CPU and peak RSS over 60 s beside prometheus-node-exporter (root: eBPF probes on)
	@bash hack/bench-overhead.sh

generate: generate-proto generate-bpf-deps ## regenerate committed code (protobuf, bpf2go)
	$(GO) generate ./...

# bpf2go (pinned in go.mod) compiles ebpf/*.c with clang against libbpf's headers and the committed
# ebpf/include/vmlinux.h; `make generate-vmlinux` dumps that header again from this kernel's BTF.
.PHONY: generate-bpf-deps generate-vmlinux bench-probes
generate-bpf-deps:
	@command -v clang >/dev/null && command -v llvm-strip >/dev/null && command -v bpftool >/dev/null && \
		[ -f /usr/include/bpf/bpf_helpers.h ] || { apt-get update -qq && apt-get install -y -qq clang llvm libbpf-dev bpftool; }

generate-vmlinux: generate-bpf-deps ## dump ebpf/include/vmlinux.h from /sys/kernel/btf/vmlinux with bpftool
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > ebpf/include/vmlinux.h

bench-probes: ## eBPF probe cost on a pipe ping-pong: attached vs detached, ns per event, beside bpftrace (root)
	@command -v bpftrace >/dev/null || { apt-get update -qq && apt-get install -y -qq bpftrace; }
	$(GO) run ./ebpf/probebench $(PROBEBENCH_ARGS)

generate-proto:
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	protoc -I api --go_out=api --go_opt=paths=source_relative \
		--go-grpc_out=api --go-grpc_opt=paths=source_relative \
		api/tmwarden/v1/tmwarden.proto

clean:
	rm -rf $(BIN) $(TOOLS)
