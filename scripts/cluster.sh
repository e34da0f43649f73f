#!/usr/bin/env bash
# A load-balanced herald cluster on this machine: Redis, three nodes and
# haproxy in front.
#
#   scripts/cluster.sh up      # or: make cluster
#   scripts/cluster.sh down    # or: make cluster-down
#
# Settings (environment): CLUSTER_DIR (.cluster), CLUSTER_PORT (8080: the
# balancer; nodes take the next three ports), CLUSTER_REDIS_PORT (6390),
# HERALD_BIN (bin/herald, built when missing).
set -euo pipefail

dir=$(mkdir -p "${CLUSTER_DIR:-.cluster}" && cd "${CLUSTER_DIR:-.cluster}" && pwd)
port=${CLUSTER_PORT:-8080}
redis_port=${CLUSTER_REDIS_PORT:-6390}
bin=${HERALD_BIN:-bin/herald}

up() {
	for tool in redis-server haproxy; do
		command -v "$tool" >/dev/null || { echo "cluster: $tool is missing (make deps installs it)" >&2; exit 1; }
	done
	if [ -e "$dir/redis.pid" ]; then
		echo "cluster: already up in $dir (scripts/cluster.sh down first)" >&2
		exit 1
	fi
	[ -x "$bin" ] || go build -o "$bin" ./cmd/server
	trap 'echo "cluster: start failed; stopping what started" >&2; down >&2' ERR
	redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
		--pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
		--appendonly yes --appendfsync everysec --save ''
	servers=""
	for i in 1 2 3; do
		node_port=$((port + i))
		# Development mode (no keys) is fine on loopback; haproxy is the
		# trusted proxy whose X-Forwarded-For the nodes believe.
		"$bin" --node-id "node$i" --listen "127.0.0.1:$node_port" \
			--redis-url "redis://127.0.0.1:$redis_port" --trusted-proxies 127.0.0.1 \
			--public-topics board --drain-window 2s >"$dir/node$i.log" 2>&1 &
		echo $! >"$dir/node$i.pid"
		servers="$servers
    server node$i 127.0.0.1:$node_port check inter 1s fall 2 rise 2"
	done
	cat >"$dir/haproxy.cfg" <<CFG
global
    # Each connection costs two descriptors; stay under a 20,000-file limit.
    maxconn 9000
defaults
    mode http
    option forwardfor
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    # WebSockets: keep tunnels open as long as clients and pings keep them busy.
    timeout tunnel 1h
    timeout http-request 10s
frontend herald
    bind 127.0.0.1:$port
    default_backend nodes
backend nodes
    # Long-lived connections: balance by current count, not by turn.
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200$servers
CFG
	haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid"
	for i in 1 2 3; do
		for _ in $(seq 100); do
			curl -fs "http://127.0.0.1:$((port + i))/readyz" >/dev/null 2>&1 && break
			sleep 0.1
		done
	done
	cat <<MSG
herald cluster up ($dir):
  balancer   http://127.0.0.1:$port   (board: open it in a browser)
  nodes      http://127.0.0.1:$((port + 1))  http://127.0.0.1:$((port + 2))  http://127.0.0.1:$((port + 3))
  redis      redis://127.0.0.1:$redis_port
  stop with: scripts/cluster.sh down
MSG
}

down() {
	for f in "$dir"/node*.pid "$dir/haproxy.pid"; do
		[ -e "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	done
	if [ -e "$dir/redis.pid" ]; then
		redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
		rm -f "$dir/redis.pid"
	fi
	echo "herald cluster down"
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
