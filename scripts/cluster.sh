#!/usr/bin/env bash
# A load-balanced herald cluster on this machine: Redis, three nodes and
# haproxy in front.
#
#   scripts/cluster.sh up      # or: make cluster [REDIS=cluster|sentinel]
#   scripts/cluster.sh down    # or: make cluster-down
#
# Settings (environment): CLUSTER_DIR (.cluster), CLUSTER_PORT (8080: the
# balancer; nodes take the next three ports), CLUSTER_REDIS (single: one
# Redis; cluster: Redis Cluster of 3 masters and 3 replicas; sentinel: a
# master, a replica and 3 sentinels), CLUSTER_REDIS_PORT (6390: the first of
# the ports Redis takes: 1 for single, 12 for cluster, 5 for sentinel),
# HERALD_BIN (bin/herald, built when missing).
set -euo pipefail

dir=$(mkdir -p "${CLUSTER_DIR:-.cluster}" && cd "${CLUSTER_DIR:-.cluster}" && pwd)
port=${CLUSTER_PORT:-8080}
redis_port=${CLUSTER_REDIS_PORT:-6390}
redis_mode=${CLUSTER_REDIS:-single}
bin=${HERALD_BIN:-bin/herald}

# redis_server N ARGS... starts Redis number N on redis_port+N.
redis_server() {
	local n=$1
	shift
	mkdir -p "$dir/redis$n"
	redis-server --port $((redis_port + n)) --bind 127.0.0.1 --daemonize yes --dir "$dir/redis$n" \
		--pidfile "$dir/redis$n.pid" --logfile "$dir/redis$n.log" \
		--appendonly yes --appendfsync everysec --save '' "$@"
}

# wait_for DESCRIPTION COMMAND...: polls COMMAND for up to 30 s.
wait_for() {
	local what=$1
	shift
	for _ in $(seq 300); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "cluster: $what did not happen within 30s" >&2
	return 1
}

cluster_ok() { redis-cli -p "$redis_port" cluster info | grep -q cluster_state:ok; }
sentinels_know_replica() {
	for i in 2 3 4; do
		redis-cli -p $((redis_port + i)) sentinel replicas herald | grep -q "$((redis_port + 1))" || return 1
	done
}

# start_redis starts the topology and sets redis_flags and redis_shown.
start_redis() {
	case "$redis_mode" in
	single)
		redis_server 0
		redis_flags=(--redis-url "redis://127.0.0.1:$redis_port")
		redis_shown="redis://127.0.0.1:$redis_port"
		;;
	cluster)
		local addrs=()
		for i in 0 1 2 3 4 5; do
			redis_server "$i" --cluster-enabled yes --cluster-config-file nodes.conf \
				--cluster-node-timeout 2000 --cluster-port $((redis_port + 6 + i))
			addrs+=("127.0.0.1:$((redis_port + i))")
		done
		wait_for "Redis answering" redis-cli -p $((redis_port + 5)) ping
		redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/cluster-create.log"
		wait_for "the Redis Cluster settling" cluster_ok
		redis_flags=(--redis-cluster-addrs "$(IFS=,; echo "${addrs[*]}")")
		redis_shown="cluster ${addrs[*]}"
		;;
	sentinel)
		redis_server 0
		redis_server 1 --replicaof 127.0.0.1 "$redis_port"
		local sentinels=()
		for i in 2 3 4; do
			mkdir -p "$dir/redis$i"
			cat >"$dir/redis$i/sentinel.conf" <<CONF
port $((redis_port + i))
bind 127.0.0.1
daemonize yes
pidfile $dir/redis$i.pid
logfile $dir/redis$i.log
dir $dir/redis$i
sentinel monitor herald 127.0.0.1 $redis_port 2
sentinel down-after-milliseconds herald 2000
sentinel failover-timeout herald 10000
CONF
			redis-server "$dir/redis$i/sentinel.conf" --sentinel
			sentinels+=("127.0.0.1:$((redis_port + i))")
		done
		wait_for "the sentinels finding the replica" sentinels_know_replica
		redis_flags=(--redis-sentinel-addrs "$(IFS=,; echo "${sentinels[*]}")" --redis-master-name herald)
		redis_shown="sentinel ${sentinels[*]} (master herald)"
		;;
	*)
		echo "cluster: CLUSTER_REDIS must be single, cluster or sentinel, not $redis_mode" >&2
		exit 2
		;;
	esac
}

up() {
	for tool in redis-server redis-cli haproxy; do
		command -v "$tool" >/dev/null || { echo "cluster: $tool is missing (make deps installs it)" >&2; exit 1; }
	done
	if compgen -G "$dir/redis*.pid" >/dev/null; then
		echo "cluster: already up in $dir (scripts/cluster.sh down first)" >&2
		exit 1
	fi
	[ -x "$bin" ] || go build -o "$bin" ./cmd/server
	trap 'echo "cluster: start failed; stopping what started" >&2; down >&2' ERR
	start_redis
	servers=""
	for i in 1 2 3; do
		node_port=$((port + i))
		# Development mode (no keys) is fine on loopback; haproxy is the
		# trusted proxy whose X-Forwarded-For the nodes believe.
		"$bin" --node-id "node$i" --listen "127.0.0.1:$node_port" \
			"${redis_flags[@]}" --trusted-proxies 127.0.0.1 \
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
	# haproxy starts once the nodes are ready: a node that fails its first
	# health checks stays out of the balancer until two checks pass.
	for i in 1 2 3; do
		wait_for "node$i ready" curl -fs "http://127.0.0.1:$((port + i))/readyz"
	done
	haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid"
	cat <<MSG
herald cluster up ($dir):
  balancer   http://127.0.0.1:$port   (board: open it in a browser)
  nodes      http://127.0.0.1:$((port + 1))  http://127.0.0.1:$((port + 2))  http://127.0.0.1:$((port + 3))
  redis      $redis_shown
  stop with: scripts/cluster.sh down
MSG
}

down() {
	local pids=()
	for f in "$dir"/node*.pid "$dir/haproxy.pid" "$dir"/redis*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		kill "$pid" 2>/dev/null && pids+=("$pid")
		rm -f "$f"
	done
	# Wait for them to exit: Redis writes its files on the way out.
	for pid in "${pids[@]}"; do
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	done
	# A cluster node keeps its identity in nodes.conf: start afresh next time.
	rm -rf "$dir"/redis[0-9]*
	echo "herald cluster down"
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
