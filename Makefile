# opsdrill — see README.md. The two set-up commands are `make demo` and
# `make test`; everything they need is installed by the targets below.

GO        ?= go
BIN       := bin
STATICCHECK_VERSION := v0.8.2
export TESTCONTAINERS_RYUK_DISABLED := true

.PHONY: all build deps docker lab-images test test-short lint bench fuzz demo clean

all: build

build:
	$(GO) build -o $(BIN)/opsdrill ./cmd/opsdrill

# Host packages (apt) the tests and the lab build need; a no-op when present.
deps:
	@scripts/install-deps.sh

# A Docker engine that answers: waits for one that is still starting and
# starts an installed one that is not running (scripts/ensure-docker.sh).
docker:
	@scripts/ensure-docker.sh

# Lab image(s), built from Debian packages with debootstrap: no registry.
# Tagged by content hash; an unchanged image is never rebuilt.
lab-images: deps docker
	@bash lab/image/build.sh

# The whole suite: unit, integration (real binaries, Docker lab), fuzz seeds.
test: deps lab-images
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 45m ./...

# Unit tests only (no Docker needed).
test-short:
	$(GO) test -short ./...

# lint: formatting, vet, go.mod tidy (direct dependencies listed as direct),
# staticcheck.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy (direct dependencies must be direct): run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 100000x ./runner
	$(GO) test -run '^$$' -fuzz FuzzTemplate -fuzztime 100000x ./runner
	$(GO) test -run '^$$' -fuzz FuzzJUnit -fuzztime 20000x ./reports
	$(GO) test -run '^$$' -fuzz FuzzMatcher -fuzztime 200000x ./runner/redact

# Build, bring the lab up, run every scenario against it, tear it down (also
# on Ctrl-C), print where the report is.
demo: build lab-images
	@scripts/demo.sh

clean:
	rm -rf $(BIN) out

# Fuzz the scanner drill's parsers (sysfs, SANE config, scanimage output,
# lab-host file listing), 200,000 inputs each (10-30 s here). A count, not
# a duration: Go 1.26's fuzz coordinator can report a spurious "context
# deadline exceeded" when a -fuzztime duration ends (go.dev/issue/75804).
.PHONY: fuzz-scanner
fuzz-scanner:
	@for f in FuzzParseUSBID FuzzParseUSBDevices FuzzParseConf FuzzParseDeviceList FuzzParseDump; do \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime 200000x ./steps/scanner || exit 1; \
	done

# portgate: fuzz the API's request parsing (the open request's JSON body,
# the Authorization header), 200,000 inputs each; a count, for the reason
# given at fuzz-scanner. Its benchmarks run the real daemon in network
# namespaces (root) and print percentiles: see docs/PERFORMANCE.md.
.PHONY: fuzz-portgate bench-portgate
fuzz-portgate:
	@for f in FuzzParseOpenRequest FuzzParseAuthorization; do \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime 200000x ./portgate/api || exit 1; \
	done
bench-portgate:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./portgate/...

# Failover drill (docs/PERFORMANCE.md, "## Failover"): db.flood against
# sysbench oltp_insert at 1, 5 and 16 writers on the lab's primary, the op
# log of 1,000,000 writes, and the write-downtime resolution.
.PHONY: bench-flood
bench-flood: deps lab-images
	@scripts/bench-flood.sh

# Fleet scale (issue 17): 1,000 generated scenarios of 10 steps, run
# unsharded and over 4 shard processes at once, merged; the merged report
# must equal the unsharded one and the merge take under 2 s. Results in
# docs/PERFORMANCE.md.
.PHONY: bench-scale
bench-scale:
	$(GO) test -run '^$$' -bench 'BenchmarkShardedRun' -benchtime 3x -timeout 30m ./cmd/opsdrill
	$(GO) test -run '^$$' -bench 'BenchmarkMergeReports' -benchtime 3x -timeout 30m ./runner

# SSH transport (issue 13, docs/PERFORMANCE.md "## Hosts over SSH"): the
# cost of one command on a lab host over opsdrill's reused connection, a
# bare session, a fresh ssh process, the system ssh with ControlMaster and
# docker exec (p50/p99 over 200 commands each), and tcp.probe from 20 lab
# hosts at once.
.PHONY: bench-ssh
bench-ssh: lab-images
	$(GO) test -run '^$$' -bench 'BenchmarkHostCommand|BenchmarkFanOut20' -benchtime 1x -timeout 30m ./lab
