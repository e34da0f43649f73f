#!/usr/bin/env bash
# Measures what herald costs Redis, for docs/scaling.md: commands and CPU
# time per heartbeat, per connect (with its disconnect) and per cross-node
# send, on one Redis or on a local Redis Cluster of 3 masters and 3
# replicas. Redis and two herald nodes run on core 0, the load generator on
# core 1. Prints one line per figure, and each master's share.
#
#   scripts/redis-cost.sh single|cluster [RATE] [SECONDS] [STORED_RATE]
#
# RATE (5000) is for plain sends, STORED_RATE (2000) for stored ones, which
# cost the node more: at 5,000/s this 2-core machine falls behind.
set -euo pipefail
cd "$(dirname "$0")/.."
topology=${1:-single}
rate=${2:-5000}
secs=${3:-20}
stored_rate=${4:-2000}
base=6600
[ -n "${HERALD_BIN:-}" ] || go build -o bin/herald ./cmd/server
herald=${HERALD_BIN:-bin/herald}
go build -o bin/bench ./cmd/bench
work=$(mktemp -d)
ports=()

stop() {
	for f in "$work"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap stop EXIT

redis() {
	local p=$1
	shift
	mkdir -p "$work/r$p"
	taskset -c 0 redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/r$p" \
		--daemonize yes --pidfile "$work/r$p.pid" --logfile "$work/r$p.log" "$@"
	ports+=("$p")
}

case $topology in
single)
	redis $base
	until redis-cli -p $base ping >/dev/null 2>&1; do sleep 0.1; done
	flags=(--redis-url "redis://127.0.0.1:$base")
	;;
cluster)
	addrs=()
	for i in 0 1 2 3 4 5; do
		redis $((base + i)) --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port $((base + 100 + i))
		addrs+=("127.0.0.1:$((base + i))")
	done
	until redis-cli -p $((base + 5)) ping >/dev/null 2>&1; do sleep 0.1; done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
	until redis-cli -p $base cluster info | grep -q cluster_state:ok; do sleep 0.1; done
	sleep 2 # replicas finish their first sync
	flags=(--redis-cluster-addrs "$(IFS=,; echo "${addrs[*]}")")
	;;
*) echo "usage: $0 single|cluster [RATE] [SECONDS]" >&2; exit 2 ;;
esac

# stat PORT FIELD: a number from INFO.
stat() { redis-cli -p "$1" info all | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'; }
role() { redis-cli -p "$1" info replication | tr -d '\r' | awk -F: '$1 == "role" { print $2 }'; }
# snapshot: "port role cpu_seconds commands" per server.
snapshot() {
	for p in "${ports[@]}"; do
		echo "$p $(role "$p") $(echo "$(stat "$p" used_cpu_sys) + $(stat "$p" used_cpu_user)" | bc -l) $(stat "$p" total_commands_processed)"
	done
}
# report WHAT COUNT BEFORE AFTER: per-unit cost over masters, and shares.
report() {
	local what=$1 count=$2
	paste <(echo "$3") <(echo "$4") | awk -v what="$what" -v n="$count" '
		{ cpu = $7 - $3; cmds = $8 - $4
		  if ($2 == "master") { mcpu += cpu; mcmd += cmds; share[$1] = cpu; shcmd[$1] = cmds }
		  else { rcpu += cpu } }
		END {
		  printf "%-28s %8d   masters: %6.2f commands, %7.2f us CPU each;  replicas: %6.2f us CPU each\n", what, n, mcmd / n, mcpu * 1e6 / n, rcpu * 1e6 / n
		  if (length(share) > 1) for (p in share) printf "    master :%s  %5.1f%% of the commands, %5.1f%% of the CPU\n", p, 100 * shcmd[p] / mcmd, (mcpu > 0 ? 100 * share[p] / mcpu : 0)
		}'
}

echo "topology: $topology ($(redis-server --version | awk '{print $3}'), $(nproc) cores, $(date -u +%F))"

# Redis's own upkeep (cron, cluster gossip), with no herald node: the
# heartbeat figure below is what the nodes add to it.
before=$(snapshot)
sleep 30
after=$(snapshot)
report "Redis alone, per second" 30 "$before" "$after"
idle_cpu=$(paste <(echo "$before") <(echo "$after") | awk '$2 == "master" { c += $7 - $3 } END { print c }')

node_args=(--conn-rate-per-ip -1 --max-conns-per-ip -1 --max-conns-per-key -1 --log-level warn --presence-ttl 15s)
for n in a b; do
	port=$([ $n = a ] && echo 9201 || echo 9202)
	taskset -c 0 "$herald" --node-id $n --listen 127.0.0.1:$port "${flags[@]}" "${node_args[@]}" 2>"$work/$n.log" &
	echo $! >"$work/$n.pid"
done
for p in 9201 9202; do until curl -fs "http://127.0.0.1:$p/readyz" >/dev/null; do sleep 0.1; done; done

# Heartbeats: two idle nodes, every TTL/3 = 5 s each, with their readiness
# probes (one publish a second each), less Redis's own upkeep.
before=$(snapshot)
sleep 30
after=$(snapshot)
paste <(echo "$before") <(echo "$after") | awk -v idle="$idle_cpu" -v topo="$topology" '
	$2 == "master" { c += $7 - $3; n += $8 - $4 }
	END {
	  # The gossip of a cluster varies more from one 30 s to the next than
	  # the nodes add: only the commands are worth printing there.
	  cpu = (topo == "single") ? sprintf("%7.2f us CPU each (Redis upkeep taken out)", (c - idle) * 1e6 / 12) : "CPU lost in the cluster bus noise"
	  printf "%-28s %8d   masters: %6.2f commands, %s\n", "node upkeep per heartbeat", 12, n / 12, cpu }'


# Connects: each a new key, registered in presence, then closed.
before=$(snapshot)
taskset -c 1 bin/bench idle -ws ws://127.0.0.1:9202 -n 5000 -settle 3s -key-prefix c >/dev/null
sleep 3 # the disconnects' presence writes
after=$(snapshot)
report "connect + disconnect" 5000 "$before" "$after"

# Cross-node sends, open loop: users on b, sends through a.
before=$(snapshot)
out=$(taskset -c 1 bin/bench latency -send http://127.0.0.1:9201 -ws ws://127.0.0.1:9202 -keys 2000 \
	-rate "$rate" -duration "${secs}s" -key-prefix s)
after=$(snapshot)
accepted=$(echo "$out" | tr -d ' \n' | sed 's/.*"accepted":\([0-9]*\).*/\1/')
# The 2000 users' connects are in the window too: take them out.
report "cross-node send at $rate/s" "$accepted" "$before" "$after"
echo "    (includes 2000 connects and disconnects of the load's users)"
echo "$out" | tr -d '\n' | sed 's/^/    bench: /' | cut -c1-300
echo

# Stored cross-node sends: the same, each kept in the key's inbox first.
before=$(snapshot)
out=$(taskset -c 1 bin/bench latency -send http://127.0.0.1:9201 -ws ws://127.0.0.1:9202 -keys 2000 \
	-rate "$stored_rate" -duration "${secs}s" -key-prefix t -store)
after=$(snapshot)
accepted=$(echo "$out" | tr -d ' \n' | sed 's/.*"accepted":\([0-9]*\).*/\1/')
report "stored send at $stored_rate/s" "$accepted" "$before" "$after"
echo "$out" | tr -d '\n' | sed 's/^/    bench: /' | cut -c1-300
echo
