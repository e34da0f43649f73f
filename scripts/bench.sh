#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: Redis and two nodes pinned to core 0, the
# load generator to core 1. Each scenario runs RUNS times (default 3);
# results go to $OUT (bench-results/) as JSON lines.
#
#   scripts/bench.sh [idle|latency|throughput|broadcast|all]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
out=${OUT:-bench-results}
dur=${LATENCY_DURATION:-60s}
mkdir -p "$out"
go build -o bin/herald ./cmd/server
go build -o bin/bench ./cmd/bench
work=$(mktemp -d)
node_args=(--redis-url redis://127.0.0.1:6479 --conn-rate-per-ip -1 --max-conns-per-ip -1
	--max-conns-per-key -1 --log-level warn)

start() {
	taskset -c 0 redis-server --port 6479 --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize yes --logfile "$work/redis.log" --pidfile "$work/redis.pid" --dir "$work"
	taskset -c 0 bin/herald --node-id a --listen 127.0.0.1:9101 "${node_args[@]}" 2>"$work/a.log" &
	echo $! >"$work/a.pid"
	taskset -c 0 bin/herald --node-id b --listen 127.0.0.1:9102 "${node_args[@]}" 2>"$work/b.log" &
	echo $! >"$work/b.pid"
	for p in 9101 9102; do
		until curl -fs "http://127.0.0.1:$p/readyz" >/dev/null; do sleep 0.1; done
	done
}
stop() {
	[ -e "$work/a.pid" ] && kill "$(cat "$work/a.pid")" "$(cat "$work/b.pid")" 2>/dev/null || true
	wait 2>/dev/null || true
	redis-cli -p 6479 shutdown nosave >/dev/null 2>&1 || true
}
trap stop EXIT
bench() { taskset -c 1 bin/bench "$@" 2>&2 | tr -d '\n ' >>"$out/$1.jsonl"; echo >>"$out/$1.jsonl"; }

scenario() {
	case $1 in
	idle)
		for i in $(seq "$runs"); do
			start
			bench idle -ws ws://127.0.0.1:9102 -n 15000 -pid "$(cat "$work/b.pid")" -settle 10s -key-prefix "i$i"
			stop
		done ;;
	latency)
		for i in $(seq "$runs"); do
			start
			bench latency -send http://127.0.0.1:9101 -ws ws://127.0.0.1:9102 -keys 2000 -rate 5000 -duration "$dur" -key-prefix "l$i" -redis 127.0.0.1:6479
			stop
		done ;;
	throughput)
		for i in $(seq "$runs"); do
			start
			bench throughput -send http://127.0.0.1:9101 -ws ws://127.0.0.1:9101 -keys 1000 -senders 64 -duration 15s -key-prefix "s$i" -redis 127.0.0.1:6479
			bench throughput -send http://127.0.0.1:9101 -ws ws://127.0.0.1:9102 -keys 1000 -senders 64 -duration 15s -key-prefix "x$i" -redis 127.0.0.1:6479
			bench throughput -send http://127.0.0.1:9101 -ws ws://127.0.0.1:9101 -keys 1000 -batch 100 -senders 8 -duration 15s -key-prefix "y$i" -redis 127.0.0.1:6479
			bench throughput -send http://127.0.0.1:9101 -ws ws://127.0.0.1:9101 -keys 1000 -keys-per-send 1000 -senders 4 -duration 15s -key-prefix "m$i"
			stop
		done ;;
	broadcast)
		for i in $(seq "$runs"); do
			start
			bench broadcast -send http://127.0.0.1:9101 -ws ws://127.0.0.1:9102 -n 15000 -rounds 20 -key-prefix "c$i" \
				-metrics http://127.0.0.1:9102/metrics
			stop
		done ;;
	hold100k)
		# 100,000 connections: six nodes and six load processes, each under
		# the 20,000 open files one process may have here.
		taskset -c 0 redis-server --port 6479 --bind 127.0.0.1 --save '' --appendonly no \
			--daemonize yes --logfile "$work/redis.log" --pidfile "$work/redis.pid" --dir "$work"
		pids=()
		for i in 1 2 3 4 5 6; do
			taskset -c 0 bin/herald --node-id "n$i" --listen "127.0.0.1:911$i" "${node_args[@]}" 2>"$work/n$i.log" &
			pids+=($!)
		done
		for i in 1 2 3 4 5 6; do
			until curl -fs "http://127.0.0.1:911$i/readyz" >/dev/null; do sleep 0.1; done
		done
		for i in 1 2 3 4 5 6; do
			taskset -c 1 bin/bench idle -ws "ws://127.0.0.1:911$i" -n 16667 -pid "${pids[$((i - 1))]}" \
				-settle 10s -hold 30s -key-prefix "h$i" >>"$out/hold100k.jsonl" 2>>"$work/hold.log" &
		done
		# Once every load process has measured (and still holds), count what
		# the nodes hold right now.
		until [ "$(grep -c '^idle:' "$work/hold.log" 2>/dev/null)" = 6 ]; do sleep 1; done
		total=0
		for i in 1 2 3 4 5 6; do
			n=$(curl -fs "http://127.0.0.1:911$i/metrics" | awk '$1 == "herald_connections" {print $2}')
			total=$((total + n))
		done
		echo "hold100k: six nodes hold $total connections at once" | tee -a "$out/hold100k.txt" >&2
		wait
		kill "${pids[@]}" 2>/dev/null || true
		redis-cli -p 6479 shutdown nosave >/dev/null 2>&1 || true ;;
	all) for s in idle throughput broadcast latency; do scenario "$s"; done ;;
	*) echo "usage: $0 idle|latency|throughput|broadcast|hold100k|all" >&2; exit 2 ;;
	esac
}
scenario "${1:-all}"
echo "results in $out/"
