# cci-shim: `make run` runs the demo pod, `make test` runs every test.
# Both install what they need first (scripts/deps.sh, idempotent).

GO        ?= go
export GOFLAGS   ?= -buildvcs=false
export CGO_CFLAGS ?= -Wno-deprecated-declarations
TOOLS     := $(CURDIR)/.tools/bin
BIN       := $(CURDIR)/bin
export CCI_TOOLS_DIR := $(TOOLS)
export CCI_BIN_DIR   := $(BIN)
# kubelet, kube-apiserver, kubectl, etcd for tests/kubeenv (scripts/k8s-tools.sh).
export CCI_K8S_DIR   ?= $(CURDIR)/.tools/k8s

# Fuzz targets run for a bounded time in `make test`.
FUZZTIME  ?= 10s

.PHONY: all deps k8s-tools build test unit e2e fuzz run vet clean

all: build

deps:
	@scripts/deps.sh

## k8s-tools: build the Kubernetes binaries once (cached; cold: ~24 CPU-minutes, 12+ min on 2 idle cores)
k8s-tools:
	@scripts/k8s-tools.sh

# Every binary reports this version and revision (--version, cci_build_info).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
VERSION_PKG := github.com/cci-shim/cci-shim/internal/version
LDFLAGS   := -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION)

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...
	$(CC) -static -Os -s -Wall -Wextra -Werror -o $(BIN)/cci-podmetrics cmd/cci-podmetrics/relay.c

vet:
	$(GO) vet ./...

UNIT_PKGS = $$($(GO) list ./... | grep -v '/tests')
# The shim and the leaves it runs concurrently run under the race detector.
RACE_PKGS = ./shim/... ./iothrottle/... ./logfwd/... ./gpu/... ./shm/... ./sandbox/... ./podmetrics/... ./admission/... ./cmd/cci-webhook/...

## unit: tests of every package except the end-to-end suite
unit: build
	$(GO) test -count=1 -timeout 10m $(UNIT_PKGS)
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

## e2e: end-to-end tests against a real containerd (root, loop devices),
## one package at a time: the throttle tests measure rates.
e2e: deps k8s-tools build
	$(GO) test -count=1 -p 1 -timeout 40m ./tests/...

## fuzz: each fuzz target of tenant input for FUZZTIME
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

test: deps k8s-tools build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 10m $(UNIT_PKGS)
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)
	$(GO) test -count=1 -p 1 -timeout 40m ./tests/...
	@scripts/fuzz.sh $(FUZZTIME)

run: deps build
	$(BIN)/ccidemo

clean:
	rm -rf $(BIN)
