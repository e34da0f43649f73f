#!/bin/sh
# Replay cost of clients that do not read (docs/benchmarks.md): a fresh
# redis-server and node, 300 x 60 KB stored in u1 (18 MB), then 20
# WebSocket connections with since=0-0 that never read; prints the node's
# RSS before and its peak over the next 10 s.
#
#   scripts/replay-mem.sh [PORT]
set -e
cd "$(dirname "$0")/.."
P=${1:-18731}
go build -o bin/herald ./cmd/server
go build -o bin/replaymem ./scripts/replaymem
redis-server --port $((P+1)) --save '' --appendonly no >/dev/null 2>&1 &
RP=$!
sleep 0.5
bin/herald --listen 127.0.0.1:$P --redis-url redis://127.0.0.1:$((P+1)) --node-id m$P --log-level warn &
NP=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:$P/readyz >/dev/null && break; sleep 0.2; done
bin/replaymem 127.0.0.1:$P $NP 20 fill || true
kill $NP; wait $NP 2>/dev/null || true
kill $RP; wait $RP 2>/dev/null || true
