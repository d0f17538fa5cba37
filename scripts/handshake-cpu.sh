#!/usr/bin/env bash
# Server CPU per handshake cycle: starts a server (CMD, to which `--bind 127.0.0.1:PORT` is appended), runs one
# 10 s handshake load against it (tools/loadgen, 50 workers), and prints its cycles/s and its user + system CPU
# (from /proc/<pid>/stat) per cycle. Alternate servers by calling it in turn; build with
# `cargo build --release -p multichat -p loadgen -p leanchat` first.
# Usage: [LOADGEN_ARGS=--cold] scripts/handshake-cpu.sh NAME TOKENS_FILE CMD...
#   (LOADGEN_ARGS: more loadgen options; --cold takes every token once, so each handshake misses the cache)
#   e.g. scripts/handshake-cpu.sh ours tokens.txt target/release/multichat --database-url sqlite://x.db serve
#        scripts/handshake-cpu.sh lean tokens.txt target/release/leanchat
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
name="$1" tokens="$2"
shift 2
port=$((8800 + RANDOM % 100))
"$@" --bind "127.0.0.1:$port" > /dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
line=$("$ROOT/target/release/loadgen" handshake --url "ws://127.0.0.1:$port/chat/stream/" --tokens "$tokens" \
  --workers 50 --seconds 10 ${LOADGEN_ARGS:-})
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
cycles=$(echo "$line" | sed 's/.*cycles=\([0-9]*\).*/\1/')
cps=$(echo "$line" | sed 's/.*cycles_per_s=\([0-9]*\).*/\1/')
ticks=$(getconf CLK_TCK)
echo "$name cycles_per_s=$cps cpu_us_per_cycle=$(python3 -c "print(round(($u1-$u0+$s1-$s0)*1e6/$ticks/$cycles,1))")"
