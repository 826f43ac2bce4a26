# tmwarden build, test and demo targets. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS):$(PATH)

# Pinned generator and tool versions: `make generate` must reproduce the committed code.
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: help build demo test test-deps generate generate-proto lint fmt-check vet bench clean

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

generate: generate-proto ## regenerate committed code (protobuf, bpf2go)
	$(GO) generate ./...

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
