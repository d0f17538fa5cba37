#!/usr/bin/env bash
# Soak test (not in CI): the multichat app holding SOCKETS sockets for SECONDS
# under a steady message storm and a churn of connects, disconnects and logouts.
# Reports messages lost (must be 0), the server's RSS over time, and errors.
# Usage: scripts/soak.sh [SOCKETS=10000] [SECONDS=600]   env: RATE=10 CHURN=10 NOTICES=0
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SOCKETS="${1:-10000}" SECONDS_="${2:-600}"
RATE="${RATE:-10}" CHURN="${CHURN:-10}" NOTICES="${NOTICES:-0}"
WORK="$(mktemp -d /tmp/soak.XXXXXX)"
ulimit -n "$(ulimit -Hn)"
cargo build --release -p multichat -p loadgen --manifest-path "$ROOT/Cargo.toml" >&2
M="$ROOT/target/release/multichat"
L="$ROOT/target/release/loadgen"
"$M" --database-url "sqlite://$WORK/soak.db" seed-users --count 2001 > "$WORK/tokens.txt"
# Room for every held socket plus the churn: open WebSockets count against --max-connections.
extra=(--max-connections $((SOCKETS + 1000)))
[ "$NOTICES" = 0 ] && extra+=(--no-notices)
"$M" --database-url "sqlite://$WORK/soak.db" serve --bind 127.0.0.1:8701 "${extra[@]}" > /dev/null 2> "$WORK/server.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 1
"$L" soak --url ws://127.0.0.1:8701/chat/stream/ --tokens "$WORK/tokens.txt" --sockets "$SOCKETS" \
  --seconds "$SECONDS_" --rate "$RATE" --churn "$CHURN" --pid "$PID"
