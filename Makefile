# tmwarden build, test and demo targets. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS):$(PATH)

# Pinned generator and tool versions: `make generate` must reproduce the committed code.
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: help build demo test test-deps generate generate-proto lint fmt-check vet bench bench-node clean bench-cache

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## build the three binaries into ./bin
	$(GO) build -o $(BIN)/ ./cmd/...

demo: build ## run coordinator, a real agent and a simulated cluster in one process
	$(BIN)/tmwardenctl demo $(DEMO_ARGS)

# The tests that run tmwarden's binaries (deploytest, lab, image) run them as the release builds
# them (`make release-bin`: static, -trimpath, release ldflags), built once here into
# TMWARDEN_RELEASE_BIN (packaging/releasebin). vet compiles with the same settings, so these
# builds, make image's amd64 binaries and hack/kubestrict only link what vet already compiled:
# a cold run compiles the module's dependency tree three times (vet, -race, arm64), not four.
TEST_RELEASE_BIN = $(BIN)/release-test
#
# Tests that are long and not concurrent are built only without the race detector
# (//go:build !race) and run in a second pass, built as vet builds (no cgo, -trimpath) so it
# reuses vet's compiled packages: the detection goals (every public scenario, 100 generated
# ones, the coordinator's path beside the model's) replay hours of simulated cluster, and
# packaging/image gzips and unpacks the image's hundreds of megabytes; under the race detector
# each took minutes of CPU. localstate's other tests are raced, so only its one such test runs
# here (NORACE_LOCALSTATE).
NORACE_PKGS = ./sim/runner ./packaging/image
NORACE_LOCALSTATE = ^TestMultipartOver100MiB$$
#
# The two passes and the packaging checks run side by side (make -j3). Many raced tests wait
# on wall time (the lab's timed faults, the demo, the live dashboards and page, the control
# plane) and leave the CPU idle while they hold one of go test's -p slots; the non-race pass and
# the packaging checks are CPU work that waits on nothing, so they run at nice 10 and take only
# the CPU the raced tests leave. TEST_RACE_P slots (default 4, not go's default of one per core) let the raced
# pass link its next test binaries while the waiting tests wait. Test binaries are linked
# without DWARF (-ldflags=-w): nothing reads it (stack traces and race reports read the
# runtime's own tables), and writing it is about 40 % of each raced link's CPU.
# Their output interleaves as it comes (no --output-sync, which would hold each pass's
# output until it ends); go test prints each package's result and failures in one piece.
TEST_RACE_P ?= 4
TEST_LDFLAGS = -w
test: test-deps fmt-check vet ## gofmt, go vet, every test with the race detector, detection goals, packaging checks
	@$(MAKE) --no-print-directory -j3 test-race test-batch test-packaging

.PHONY: test-release-bin test-race test-batch test-packaging
test-release-bin:
	@$(MAKE) --no-print-directory release-bin RELEASE_BIN=$(TEST_RELEASE_BIN) VERSION=v0.0.0-test

test-race: test-release-bin ## every test with the race detector (part of make test)
	TMWARDEN_RELEASE_BIN=$(TEST_RELEASE_BIN) $(GO) test -race -p $(TEST_RACE_P) -ldflags=$(TEST_LDFLAGS) -count=1 -timeout 25m ./...

test-batch: ## the tests built without the race detector, at nice 10 (part of make test)
	CGO_ENABLED=0 nice -n 10 $(GO) test -trimpath -ldflags=$(TEST_LDFLAGS) -count=1 -timeout 25m $(NORACE_PKGS)
	CGO_ENABLED=0 nice -n 10 $(GO) test -trimpath -ldflags=$(TEST_LDFLAGS) -count=1 -timeout 25m -run '$(NORACE_LOCALSTATE)' ./localstate

# The packaging checks are mostly one thread at a time (nfpm's xz, lintian): beside the tests,
# at nice 10, they take what the waiting tests leave instead of adding a minute at the end.
test-packaging: ## the packaging checks at nice 10 (part of make test)
	nice -n 10 $(MAKE) --no-print-directory lint-packaging

test-deps: ## install what the tests need (idempotent)
	@HELM_VERSION=$(HELM_VERSION) KUBECONFORM_VERSION=$(KUBECONFORM_VERSION) TOOLS=$(TOOLS) bash hack/test-deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# vet type-checks against compiled dependencies: built as the release builds (no cgo, -trimpath),
# they are the same compilations release-bin, make image and the tests' binaries reuse.
vet:
	CGO_ENABLED=0 $(GO) vet -trimpath ./...

# Fuzz targets as package:Function; `make fuzz` runs each for FUZZTIME (seed corpora live in
# each package's testdata/fuzz and also run as plain tests in `make test`).
FUZZTIME ?= 1m
# Minimising every new interesting input may take up to a minute by default, which stalls a
# one-minute run on multi-kilobyte inputs (Prometheus scrapes); a few seconds each is plenty.
FUZZMINIMIZETIME ?= 5s
FUZZ_TARGETS := api/tmwarden/v1:FuzzAgentMessage flink/promscrape:FuzzParse \
	localstate:FuzzS3Request localstate:FuzzAuthorizationHeader localstate:FuzzChunkedBody

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 1m) each
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) ./$$pkg; done

# Chaos tests (build tag chaos, about 5 minutes): a real coordinator SIGKILLed CHAOS_KILLS (50)
# times during decisions, down for CHAOS_OUTAGE (2m) under 1000 agents, cut off from its fleet.
# No -race: the race detector caps goroutines below what 1000 agents need.
.PHONY: chaos
chaos: ## chaos tests: kill -9 during decisions, coordinator outage with 1000 agents, partition, S3 upstream killed
	$(GO) test -tags chaos -count=1 -v -timeout 30m ./chaos/
	$(GO) test -count=1 -v -run 'TestUpstreamOutage' ./localstate/

# The real-fault lab (docs/lab.md): root, several minutes, loads the machine, so not in `make
# test` (its one-minute short form is: lab/lab_test.go). LAB_JSON names a file for the rows.
.PHONY: lab
lab: build ## real faults on this machine under a TaskManager stand-in, seen by the real agent and coordinator (root)
	@bash hack/lab-deps.sh
	$(BIN)/tmwardenctl lab $(LAB_ARGS)

.PHONY: bench-scale bench-scale-fleet
# SCALE_PROFILES keeps the coordinator's CPU and heap profiles per fleet size (go tool pprof).
SCALE_PROFILES ?= /tmp/tmwarden-scale-profiles
bench-scale: ## one coordinator process, 10,000 nodes x 20 subtasks over gRPC every 5 s: ingest rate, round p50/p99 (every round timed) and its CPU time, RSS, drops, what dominates CPU and memory
	$(GO) run ./sim/scalebench -profile $(SCALE_PROFILES) $(SCALE_ARGS)

# SCALE_FLEET lists the fleet sizes; each gets a fresh coordinator, one after the other.
SCALE_FLEET ?= 1000,3000,10000,30000
bench-scale-fleet: ## bench-scale at 1k, 3k, 10k and 30k nodes, one table: connect time, round p50/p99/max and round CPU, peak RSS, CPU per report, drops per fleet size; profiles summarised per size
	$(GO) run ./sim/scalebench -nodes $(SCALE_FLEET) -duration 60s -profile $(SCALE_PROFILES) $(SCALE_ARGS)

.PHONY: bench-scrape
bench-scrape: ## scrape parser on the reference and 200-subtask scrapes, beside Prometheus textparse (the previous parser) and expfmt's full decode of the same bodies
	$(GO) test -run '^$$' -bench 'BenchmarkParse' -benchmem ./flink/promscrape/

bench: ## coordinator ingest benchmark
	$(GO) test -run '^$$' -bench . -benchmem ./coordinator/...

bench-cache: ## state cache: hit vs disk (drop_caches as root), restore warm/cold, lazy-load TTFB, peer prefetch
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./localstate/

.PHONY: bench-agent
bench-agent: bench-node bench-probes ## both agent benchmarks in one run: overhead beside node_exporter, then eBPF probe cost beside bpftrace (root)

bench-node: ## agent CPU (schedstat ns) and peak RSS over 120 s scraping two 200-subtask TaskManager stand-ins, beside prometheus-node-exporter; per-collector cost (root: eBPF probes on)
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

bench-probes: ## eBPF probe cost per scheduler event on a pipe ping-pong, each trial beside empty programs on the same hooks (the floor) and bpftrace; median and IQR of the ratio, BPF run time, and issue 17's figure and the whole cost per event beside them (root)
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

# Packaging: Helm chart, systemd units, deb/rpm and release artefacts. Tools are pinned and
# installed with `go install` into ./.tools (hack/packaging-deps.sh; idempotent).
HELM_VERSION := v3.19.0
KUBECONFORM_VERSION := v0.8.0
NFPM_VERSION := v2.45.0
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
RELEASE_ARCHES ?= amd64 arm64
DIST := $(CURDIR)/dist
# The version every binary prints with --version, set for all three; no build id, so that the
# same source and VERSION give the same bytes (make image is reproducible).
RELEASE_LDFLAGS = -s -w -buildid= -X github.com/tmwarden/tmwarden/agent.Version=$(VERSION) \
	-X github.com/tmwarden/tmwarden/coordinator.Version=$(VERSION) -X main.version=$(VERSION)
.PHONY: packaging-deps lint-packaging lint-helm lint-systemd lint-deb release release-bin image

# The packages' version: VERSION without its leading v when it is semver, else 0.0.0-dev+VERSION
# (nfpm's semver schema needs a number; a git describe of an untagged tree is not one).
PACKAGE_VERSION = $(shell v='$(patsubst v%,%,$(VERSION))'; echo "$$v" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+' || v="0.0.0-dev+$$v"; echo "$$v")

# The one rule that builds the shipped binaries: static, -trimpath, release ldflags, for GOARCH
# (default this machine's) into RELEASE_BIN. release, image and the tests use it.
RELEASE_BIN ?= $(BIN)/release
GOARCH ?= $(shell $(GO) env GOARCH)
release-bin:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags "$(RELEASE_LDFLAGS)" \
		-o $(RELEASE_BIN)/ ./cmd/tmwarden-agent ./cmd/tmwarden-coordinator ./cmd/tmwardenctl

IMAGE_BIN = $(DIST)/image/bin
IMAGE_OUT ?= $(DIST)/image/oci
comma := ,
empty :=
space := $(empty) $(empty)
image: ## multi-arch OCI image layout (amd64, arm64) in dist/image/oci, built without a container engine
	@[ -f /etc/ssl/certs/ca-certificates.crt ] || { apt-get update -qq && apt-get install -y -qq ca-certificates; }
	@rm -rf $(IMAGE_BIN)
	@set -e; for arch in $(RELEASE_ARCHES); do \
		$(MAKE) --no-print-directory release-bin GOARCH=$$arch RELEASE_BIN=$(IMAGE_BIN)/$$arch; \
	done
	$(GO) run ./packaging/image --bin-dir $(IMAGE_BIN) --arches $(subst $(space),$(comma),$(strip $(RELEASE_ARCHES))) \
		--version $(VERSION) --out $(IMAGE_OUT)

PACKAGING_DEPS = HELM_VERSION=$(HELM_VERSION) KUBECONFORM_VERSION=$(KUBECONFORM_VERSION) NFPM_VERSION=$(NFPM_VERSION) \
	TOOLS=$(TOOLS) bash hack/packaging-deps.sh

packaging-deps: ## install helm, kubeconform and nfpm (pinned, go install) into ./.tools, chromium, systemd and lintian with apt
	@$(PACKAGING_DEPS) helm kubeconform nfpm chromium systemd lintian

lint-packaging: lint-helm lint-systemd lint-deb ## helm lint + kubeconform on the rendered chart, systemd-analyze verify on the units, lintian on the deb

lint-helm:
	@$(PACKAGING_DEPS) helm kubeconform
	@TOOLS=$(TOOLS) bash hack/lint-helm.sh

lint-systemd:
	@$(PACKAGING_DEPS) systemd
	@bash hack/verify-systemd.sh

# The deb exactly as `make release` builds it (release-bin, then nfpm), for this machine's
# architecture, checked by Debian's lintian: an error fails, warnings are printed.
LINT_DEB_BIN = $(BIN)/lint-deb
lint-deb: ## build this machine's deb as `make release` does and run Debian's lintian on it; errors fail
	@$(PACKAGING_DEPS) nfpm lintian
	@$(MAKE) --no-print-directory release-bin RELEASE_BIN=$(LINT_DEB_BIN) VERSION=$(VERSION)
	@BIN_DIR=$(LINT_DEB_BIN) PACKAGE_VERSION=$(PACKAGE_VERSION) TOOLS=$(TOOLS) bash hack/lint-deb.sh

release: ## static binaries, deb and rpm packages and SHA256SUMS into ./dist
	@$(PACKAGING_DEPS) nfpm
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for arch in $(RELEASE_ARCHES); do \
		echo "building $(VERSION) for linux/$$arch"; \
		$(MAKE) --no-print-directory release-bin GOARCH=$$arch RELEASE_BIN=$(DIST)/bin/$$arch; \
		for f in tmwarden-agent tmwarden-coordinator tmwardenctl; do cp $(DIST)/bin/$$arch/$$f $(DIST)/$$f-linux-$$arch; done; \
		rm -rf $(DIST)/stage && cp -r $(DIST)/bin/$$arch $(DIST)/stage; \
		for p in deb rpm; do \
			ARCH=$$arch VERSION=$(PACKAGE_VERSION) $(TOOLS)/nfpm package --config packaging/nfpm.yaml --packager $$p --target $(DIST)/; \
		done; \
	done; rm -rf $(DIST)/stage $(DIST)/bin
	@cd $(DIST) && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%P\n' | sort | xargs sha256sum > SHA256SUMS && cat SHA256SUMS
