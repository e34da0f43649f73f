# herald — see README.md.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps build fuzz cluster cluster-down bench faults

# Start one node in single-node mode on http://localhost:8080.
run:
	go run ./cmd/server

# Install what the tests need (redis-server, redis-tools, redis-sentinel,
# haproxy, Node.js, Chromium, Mono for the C# client, emscripten for the
# Unity WebGL transport's harness, iptables for the fault tests), then
# run every test with the race detector, and the manifest checks.
test: deps
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	GIN_MODE=release go test -race -count=1 -timeout 10m ./...
	cd k8s && go vet ./... && go test -count=1 ./...

deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null 2>&1 || missing="$$missing redis-tools"; \
	command -v redis-sentinel >/dev/null 2>&1 || missing="$$missing redis-sentinel"; \
	command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v mcs >/dev/null 2>&1 || missing="$$missing mono-mcs mono-devel"; \
	command -v emcc >/dev/null 2>&1 || missing="$$missing emscripten"; \
	command -v iptables >/dev/null 2>&1 || missing="$$missing iptables"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Only the fault tests of docs/delivery.md (partition, short partition,
# stalled node, slow link, timed-out command) and the harness's own tests;
# make test runs them too. The netns ones need root and iptables.
FAULT_TESTS := TestAPartitionedNode|TestStoredSendsDuringAShortPartition|TestStoredSendsToAStalledNode|TestOverASlowLink|TestASendWhoseRedisCommandTimedOut
faults: deps
	GIN_MODE=release go test -race -count=1 -v -run '$(FAULT_TESTS)' ./cmd/server/
	GIN_MODE=release go test -race -count=1 ./internal/faults/

build:
	CGO_ENABLED=0 go build -trimpath -o bin/herald ./cmd/server
	CGO_ENABLED=0 go build -trimpath -o bin/heraldctl ./cmd/heraldctl
	CGO_ENABLED=0 go build -trimpath -o bin/bench ./cmd/bench

# The figures of docs/benchmarks.md (several minutes; pins to cores 0 and 1).
bench:
	scripts/bench.sh all

# Run each fuzz target for its budget of executions (about 15 s each on the
# 2-core VM of docs/benchmarks.md); any panic or broken invariant fails, and
# the failing input is saved under the package's testdata/fuzz. Budgets are
# counts, not durations: with a duration, Go 1.26's fuzzing coordinator can
# report a bare "context deadline exceeded" at the boundary with no failing
# input (go.dev/issue/75804, fixed in Go 1.27). Minimising each new input is
# bounded in executions too: without a deadline it would otherwise take up to
# a minute per input. FUZZTIME=30s (or =1000000x) overrides every target's
# budget, for longer local runs.
FUZZTIME ?=
FUZZ_TARGETS := FuzzSendBody:./pkg/httpapi:200000x FuzzValidName:./pkg/protocol:400000x \
	FuzzVerifyToken:./pkg/auth:150000x FuzzClientFrames:./pkg/httpapi:15000x FuzzMessageDecode:./pkg/fanout:20000x FuzzValidText:./pkg/protocol:100000x
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; budget=$${rest#*:}; \
		budget=$${FUZZTIME:-$$budget}; \
		echo "fuzz $$name ($$pkg) for $$budget"; \
		go test -run='^$$' -fuzz="^$$name$$" -fuzztime=$$budget -fuzzminimizetime=500x $$pkg || exit 1; \
	done

# A load-balanced cluster on this machine: Redis, three nodes, haproxy.
# REDIS=cluster runs Redis Cluster (3 masters, 3 replicas), REDIS=sentinel a
# master, a replica and 3 sentinels.
REDIS ?= single
cluster: deps build
	CLUSTER_REDIS=$(REDIS) scripts/cluster.sh up

cluster-down:
	scripts/cluster.sh down
