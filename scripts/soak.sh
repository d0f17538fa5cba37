#!/usr/bin/env bash
# Soak test (not in CI): the multichat app holding SOCKETS sockets for SECONDS
# under a steady message storm and a churn of connects, disconnects and logouts.
# Reports messages lost (must be 0), the server's RSS over time, and errors.
# Usage: scripts/soak.sh [SOCKETS=10000] [SECONDS=600]   env: RATE=10 CHURN=10 NOTICES=0
#   REDIS=1: two processes over one database joined by a private redis-server (on a free port, never the
#   machine's shared one): the sockets on the first, the storm sent from the second.
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
sender=()
OTHERS=()
if [ "${REDIS:-0}" = 1 ]; then
  RPORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis-server --bind 127.0.0.1 --port "$RPORT" --save "" --appendonly no --dir "$WORK" > /dev/null 2>&1 &
  OTHERS+=($!)
  sleep 0.5
  extra+=(--redis-url "redis://127.0.0.1:$RPORT")
  "$M" --database-url "sqlite://$WORK/soak.db" serve --bind 127.0.0.1:8702 "${extra[@]}" > /dev/null 2> "$WORK/server-b.log" &
  OTHERS+=($!)
  sender=(--sender-url ws://127.0.0.1:8702/chat/stream/)
fi
"$M" --database-url "sqlite://$WORK/soak.db" serve --bind 127.0.0.1:8701 "${extra[@]}" > /dev/null 2> "$WORK/server.log" &
PID=$!
trap 'kill $PID "${OTHERS[@]}" 2>/dev/null || true' EXIT
sleep 1
"$L" soak --url ws://127.0.0.1:8701/chat/stream/ "${sender[@]}" --tokens "$WORK/tokens.txt" --sockets "$SOCKETS" \
  --seconds "$SECONDS_" --rate "$RATE" --churn "$CHURN" --pid "$PID"
