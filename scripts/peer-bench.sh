#!/usr/bin/env bash
# Side by side with the peer (issue #20): herald and Centrifugo measured in
# one run, in alternated rounds (herald first in odd rounds, the peer first
# in even ones), each figure on a fresh Redis of its own and fresh nodes.
# Redis and each system's two nodes are pinned to core 0, cmd/bench to
# core 1; 2,000 users are connected to node B, sends go through node A, and
# presence is on in both. Figures per round and system:
#   (a) cross-node sends/s, closed loop, 64 in flight, 15 s
#   (b) at 5,000 sends/s for 10 s: p50, p99, lost, duplicated
#   (c) Redis CPU per cross-node send, from (a) (INFO cpu before and after)
#   (d) RSS per idle connection, 15,000 connections on node B
# The table (per-round ratios herald/peer and their medians) goes to stdout
# and to $OUT/peer-bench-<time>.md, the raw JSON lines to
# $OUT/peer-bench-<time>.jsonl.
#
#   CENTRIFUGO_BIN=/work/peer/bin/centrifugo ROUNDS=3 scripts/peer-bench.sh
#
# The peer is built by hand, outside the repository (docs/benchmarks.md,
# "Side by side with the peer"); this script never builds it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CENTRIFUGO_BIN:-}" ] || [ ! -x "$CENTRIFUGO_BIN" ]; then
	echo "peer-bench: set CENTRIFUGO_BIN to a Centrifugo binary built by hand (docs/benchmarks.md); this script does not build it" >&2
	exit 2
fi
rounds=${ROUNDS:-3}
out=${OUT:-bench-results}
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw="$out/peer-bench-$stamp.jsonl"
go build -o bin/herald ./cmd/server
go build -o bin/bench ./cmd/bench
work=$(mktemp -d)
secret=peer-bench-hmac-secret
apikey=peer-bench-api-key

# herald: Redis 6591, nodes 9301 (A) and 9302 (B); the peer: Redis 6592,
# nodes 9311 (A) and 9312 (B).
herald_redis=6591 peer_redis=6592
declare -A node_a=([herald]=9301 [peer]=9311) node_b=([herald]=9302 [peer]=9312) redis_port=([herald]=$herald_redis [peer]=$peer_redis)
herald_args=(--redis-url "redis://127.0.0.1:$herald_redis" --conn-rate-per-ip -1 --max-conns-per-ip -1
	--max-conns-per-key -1 --log-level warn)
peer_bench_args=(-peer centrifugo -peer-secret "$secret" -peer-api-key "$apikey")
cat >"$work/centrifugo.json" <<EOF
{
  "log": {"level": "error"},
  "http_server": {"address": "127.0.0.1"},
  "health": {"enabled": true},
  "engine": {"type": "redis", "redis": {"address": "redis://127.0.0.1:$peer_redis"}},
  "client": {
    "token": {"hmac_secret_key": "$secret"},
    "subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "personal"}
  },
  "channel": {"namespaces": [{"name": "personal", "presence": true}]},
  "http_api": {"key": "$apikey"}
}
EOF

pids=()
start() { # herald|peer
	local sys=$1 port=${redis_port[$1]}
	taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize yes --logfile "$work/redis-$sys.log" --pidfile "$work/redis-$sys.pid" --dir "$work"
	until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
	for n in a b; do
		local listen
		if [ $n = a ]; then listen=${node_a[$sys]}; else listen=${node_b[$sys]}; fi
		if [ "$sys" = herald ]; then
			taskset -c 0 bin/herald --node-id "$n" --listen "127.0.0.1:$listen" "${herald_args[@]}" 2>"$work/$sys-$n.log" &
		else
			CENTRIFUGO_HTTP_SERVER_PORT=$listen CENTRIFUGO_NODE_NAME=$n \
				taskset -c 0 "$CENTRIFUGO_BIN" --config "$work/centrifugo.json" >"$work/$sys-$n.log" 2>&1 &
		fi
		pids+=($!)
		echo $! >"$work/$sys-$n.pid"
	done
	local ready=/readyz
	[ "$sys" = peer ] && ready=/health
	for p in "${node_a[$sys]}" "${node_b[$sys]}"; do
		until curl -fs "http://127.0.0.1:$p$ready" >/dev/null; do sleep 0.1; done
	done
}
stop() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	pids=()
	redis-cli -p "$herald_redis" shutdown nosave >/dev/null 2>&1 || true
	redis-cli -p "$peer_redis" shutdown nosave >/dev/null 2>&1 || true
}
trap stop EXIT

# bench SYSTEM ROUND MODE ARGS...: one measurement on fresh Redis and nodes,
# its JSON kept as one line tagged with the system and round. An argument
# "PID_B" stands for node B's process id.
bench() {
	local sys=$1 round=$2 mode=$3
	shift 3
	start "$sys"
	local args=() arg
	for arg in "$@"; do
		[ "$arg" = PID_B ] && arg=$(cat "$work/$sys-b.pid")
		args+=("$arg")
	done
	[ "$sys" = peer ] && args+=("${peer_bench_args[@]}")
	local load
	load=$(cut -d' ' -f1 /proc/loadavg) # the machine's 1-minute load as the measurement starts
	taskset -c 1 bin/bench "$mode" "${args[@]}" >"$work/result.json"
	jq -c --arg sys "$sys" --arg mode "$mode" --argjson round "$round" --argjson load "$load" \
		'{system: $sys, round: $round, mode: $mode, load1: $load} + .' "$work/result.json" >>"$raw"
	stop
}
measure() { # SYSTEM ROUND
	local sys=$1 r=$2 a=${node_a[$1]} b=${node_b[$1]} rp=${redis_port[$1]}
	echo "== round $r: $sys" >&2
	bench "$sys" "$r" throughput -send "http://127.0.0.1:$a" -ws "ws://127.0.0.1:$b" -keys 2000 -senders 64 \
		-duration 15s -key-prefix "x$r" -redis "127.0.0.1:$rp"
	bench "$sys" "$r" latency -send "http://127.0.0.1:$a" -ws "ws://127.0.0.1:$b" -keys 2000 -rate 5000 \
		-duration 10s -key-prefix "l$r" -redis "127.0.0.1:$rp"
	bench "$sys" "$r" idle -ws "ws://127.0.0.1:$b" -n 15000 -pid PID_B -settle 10s -key-prefix "i$r"
}

echo "load before: $(uptime)" | tee "$work/load.txt" >&2
for r in $(seq "$rounds"); do
	if [ $((r % 2)) = 1 ]; then
		measure herald "$r"
		measure peer "$r"
	else
		measure peer "$r"
		measure herald "$r"
	fi
done
echo "load after: $(uptime)" | tee -a "$work/load.txt" >&2

# The table: each figure per round for both systems, the ratio herald/peer
# per round, and the median of those ratios.
jq -rs --argjson rounds "$rounds" '
	. as $all
	| def v($sys; $mode; $path; $r): [$all[] | select(.system == $sys and .mode == $mode and .round == $r) | getpath($path)] | first;
	def num: if . == null then "–" elif . >= 100 then (round | tostring) else ((. * 100 | round) / 100 | tostring) end;
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	[range(1; $rounds + 1)] as $rs
	| [
		["cross-node sends/s, closed loop, 64 in flight", "throughput", ["sends_per_second"]],
		["at 5,000/s for 10 s: p50 (ms)", "latency", ["latency_ms", "p50"]],
		["same: p99 (ms)", "latency", ["latency_ms", "p99"]],
		["Redis CPU per cross-node send (µs)", "throughput", ["redis_cpu_us_per_send"]],
		["RSS per idle connection, 15,000 (KiB)", "idle", ["server_kib_per_connection"]],
		["at 5,000/s: lost", "latency", ["lost"], false],
		["at 5,000/s: duplicated", "latency", ["duplicates"], false],
		["refused sends in (a) + (b)", "errors", null, false],
		["(b): the generator'"'"'s own max schedule lag (ms)", "latency", ["max_schedule_lag_ms"], false],
		["machine load (1 min) as (b) started", "latency", ["load1"], false]
	] as $figs
	| "| figure | herald (\($rounds) rounds) | the peer (\($rounds) rounds) | ratio herald/peer per round | median ratio |",
	  "|---|---|---|---|---|",
	  ($figs[] as [$title, $mode, $path, $ratio]
		| def get($sys; $r): if $mode == "errors"
			then ((v($sys; "throughput"; ["http_errors"]; $r) // 0) + (v($sys; "latency"; ["http_errors"]; $r) // 0))
			else v($sys; $mode; $path; $r) end;
		[$rs[] | get("herald"; .)] as $h
		| [$rs[] | get("peer"; .)] as $p
		| [range(0; $rounds) | if $h[.] != null and $p[.] != null and $p[.] != 0 then $h[.] / $p[.] else null end] as $q
		| if $ratio == false then
			"| \($title) | \($h | map(num) | join(" / ")) | \($p | map(num) | join(" / ")) | | |"
		  else
			"| \($title) | \($h | map(num) | join(" / ")) | \($p | map(num) | join(" / ")) | \($q | map(num) | join(" / ")) | **\([$q[] | select(. != null)] | median | num)** |"
		  end)
' "$raw" | tee "$out/peer-bench-$stamp.md"
cat "$work/load.txt" >>"$out/peer-bench-$stamp.md"
echo "raw results in $raw" >&2
