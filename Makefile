# cci-shim: `make run` runs the demo pod, `make test` runs every test.
# Both install what they need first (scripts/deps.sh, idempotent).

GO        ?= go
export GOFLAGS   ?= -buildvcs=false
export CGO_CFLAGS ?= -Wno-deprecated-declarations
TOOLS     := $(CURDIR)/.tools/bin
BIN       := $(CURDIR)/bin
export CCI_TOOLS_DIR := $(TOOLS)
export CCI_BIN_DIR   := $(BIN)

# Fuzz targets run for a bounded time in `make test`.
FUZZTIME  ?= 10s

.PHONY: all deps build test unit e2e fuzz run vet clean

all: build

deps:
	@scripts/deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

vet:
	$(GO) vet ./...

## unit: tests of every package except the end-to-end suite
unit: build
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /tests)

## e2e: end-to-end tests against a real containerd (root, loop devices)
e2e: deps build
	$(GO) test -count=1 -timeout 20m -v ./tests/... 2>&1 | tee $(BIN)/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

## fuzz: each fuzz target of tenant input for FUZZTIME
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...
	@scripts/fuzz.sh $(FUZZTIME)

run: deps build
	$(BIN)/ccidemo

clean:
	rm -rf $(BIN)
