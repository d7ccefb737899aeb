# hsm-agent: `make demo` runs the agent on a SoftHSM2 fleet it creates,
# `make test` runs every test. Both install missing system packages first.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
LDFLAGS := -X github.com/hsm-agent/hsm-agent/agent.Version=$(VERSION)
BIN     := bin/hsm-agent

.PHONY: all build faultmod deps demo-deps demo test gotest gotest-race lint bench bench-probe bench-cases package test-packaging clean

all: build

deps:
	@scripts/install-deps.sh

demo-deps:
	@scripts/install-deps.sh --demo

build: faultmod
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./agent/cmd/hsm-agent

# The fault-injecting PKCS#11 module over SoftHSM2 (tests and the demo build it too).
faultmod:
	@mkdir -p bin
	$(MAKE) -C pkcs11test/faultmod OUT=$(CURDIR)/bin/libhsmfault.so

demo: demo-deps build
	$(BIN) demo --dir .demo

lint:
	@out=$$(gofmt -l agent collector internal packaging pkcs11test rma systemd); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows CGO_ENABLED=0 $(GO) vet ./agent/service/
	GOOS=darwin CGO_ENABLED=0 $(GO) vet ./agent/service/

gotest:
	$(GO) test -count=1 -timeout 10m ./...

# The race detector over the probe and the collector (worker pipes, timers,
# the poll loop).
gotest-race:
	$(GO) test -race -count=1 -timeout 10m ./collector/...

test: deps lint build test-packaging gotest gotest-race

# systemd unit (verify, security score <= 1.5), Prometheus rules and dashboard,
# .deb/.rpm build, install, upgrade and purge. Needs root.
test-packaging: build
	packaging/test/run-all.sh $(BIN)

package: build
	packaging/build-packages.sh $(VERSION) $(BIN) dist

# Benchmarks behind the issues' numbers; each prints its reference beside it.
bench: bench-probe bench-cases

# 1,000-token poll, warm and cold, beside the raw in-process loop and pkcs11-tool -L.
bench-probe: deps
	$(GO) test -run '^$$' -bench . -benchtime 20x -timeout 30m ./collector/probe/

# 10,000 queued events drained to a local desk; fault to vendor ticket at default settings.
bench-cases: deps
	$(GO) test -run '^$$' -bench Drain10000 -benchtime 1x -timeout 10m ./rma/desk/
	$(GO) test -run '^$$' -bench FaultToTicket -benchtime 3x -timeout 10m ./agent/

clean:
	rm -rf bin dist .demo
