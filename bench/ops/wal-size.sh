#!/usr/bin/env bash
# wal-size.sh: the WAL directory size of each node of a local 3-node cluster
# under a sustained write load, sampled every INTERVAL seconds (CSV on
# stdout). It shows that log compaction bounds the WAL (docs/BENCHMARKS.md).
#
#   bench/ops/wal-size.sh [DURATION_S] [INTERVAL_S] [RETAIN]
#
# Load: redis-benchmark SET, 1 KiB values over 10,000 keys, 16 clients, on
# the leader's RESP port (ack majority, the default). Needs redis-benchmark
# (apt-get install redis-tools). Uses ports 27001-29003 and a temporary
# directory; stops the cluster when done.
set -euo pipefail
DURATION=${1:-600}
INTERVAL=${2:-10}
RETAIN=${3:-256MiB}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'kill -INT $UP 2>/dev/null || true; wait $UP 2>/dev/null || true; rm -rf "$WORK"' EXIT
(cd "$ROOT" && go build -o "$WORK/trireme" ./cmd/trireme)
"$WORK/trireme" up --data "$WORK/data" --base-port 27001 --quiet --log-retain "$RETAIN" >"$WORK/up.log" 2>&1 &
UP=$!
for _ in $(seq 1 100); do
	curl -sf http://127.0.0.1:28001/v1/status >/dev/null 2>&1 && break
	sleep 0.2
done
leader_resp() {
	local l
	l=$(curl -s http://127.0.0.1:28001/v1/status | sed -n 's/.*"leader":"\([^"]*\)".*/\1/p')
	echo $((29000 + ${l#n}))
}
sleep 2
PORT=$(leader_resp)
timeout "$DURATION" redis-benchmark -p "$PORT" -t set -d 1024 -r 10000 -n 2000000000 -c 16 -q >"$WORK/bench.log" 2>&1 &
LOAD=$!
echo "seconds,n1_wal_bytes,n2_wal_bytes,n3_wal_bytes,n1_store_bytes,leader_last_index"
start=$(date +%s)
while kill -0 $LOAD 2>/dev/null; do
	now=$(($(date +%s) - start))
	row="$now"
	for n in n1 n2 n3; do row="$row,$(du -sb "$WORK/data/$n/wal" | cut -f1)"; done
	row="$row,$(du -sb "$WORK/data/n1/store" | cut -f1)"
	row="$row,$(curl -s http://127.0.0.1:28001/v1/status | sed -n 's/.*"last_index":\([0-9]*\).*/\1/p')"
	echo "$row"
	sleep "$INTERVAL"
done
wait $LOAD || true
tail -c 300 "$WORK/bench.log" | tr '\r' '\n' | tail -3 >&2
