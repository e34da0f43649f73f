# herald — see README.md.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps build

# Start one node in single-node mode on http://localhost:8080.
run:
	go run ./cmd/server

# Install what the tests need (redis-server), then run every test with the race detector.
test: deps
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	go test -race -count=1 -timeout 10m ./...

deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server; }

build:
	CGO_ENABLED=0 go build -trimpath -o bin/herald ./cmd/server
