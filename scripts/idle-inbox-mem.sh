#!/bin/bash
# Single-node inbox memory (docs/benchmarks.md): --inbox-max-age 5s, 3000
# stored 60 KB sends to distinct keys, nothing read; heap in use and RSS
# right after and 20 s later.
#
#   scripts/idle-inbox-mem.sh [PORT]
set -e
cd "$(dirname "$0")/.."
P=${1:-18751}
go build -o bin/herald ./cmd/server
bin/herald --listen 127.0.0.1:$P --node-id s$P --inbox-max-age 5s --log-level warn &
NP=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:$P/readyz >/dev/null && break; sleep 0.2; done
D=$(head -c 61440 /dev/zero | tr '\0' x)
for i in $(seq 3000); do
	printf '{"key":"k%d","store":true,"data":"%s"}' "$i" "$D" |
		curl -s -o /dev/null -H 'Content-Type: application/json' --data-binary @- http://127.0.0.1:$P/v1/send
done
inbox() { curl -s http://127.0.0.1:$P/metrics | awk '/^herald_inbox_memory_bytes/ {printf "%d", $2/1048576}'; }
heap() { curl -s http://127.0.0.1:$P/metrics | awk '/^go_memstats_heap_inuse_bytes/ {printf "%d", $2/1048576}'; }
rss() { awk '/VmRSS/ {printf "%d", $2/1024}' /proc/$NP/status; }
echo "after sends: inbox=$(inbox)MB heap_inuse=$(heap)MB rss=$(rss)MB"
sleep 20
echo "20 s later: inbox=$(inbox)MB heap_inuse=$(heap)MB rss=$(rss)MB"
kill $NP; wait $NP 2>/dev/null || true
