#!/usr/bin/env bash
# permessage-deflate, side by side in one run (issue 28): the multichat app
# (release build, SQLite) against clients that offer compression (`loadgen
# --deflate`, as nv-websocket-client does) and clients that do not, alternated
# round by round, each run on a fresh server process:
#   fanout  RECEIVERS receivers, MESSAGES messages of a short line (paste 0) and
#           PASTE_MESSAGES of a 2 KB pasted log (paste 2000): deliveries/s, the
#           server's CPU (user + system, from /proc/PID/stat) and the bytes the
#           clients read from the wire per delivery. PASTE_MESSAGES x 2 KB stays
#           under the app's 1 MiB outbox: loadgen inflates on the same 2 cores,
#           and a receiver more than 1 MiB behind is dropped as a slow reader.
#   hold    HOLD sockets joined and kept: the server's RSS per socket
# Usage: scripts/bench-deflate.sh [ROUNDS]     (default 3)
# Environment: RECEIVERS=100 MESSAGES=2000 PASTE_MESSAGES=400 HOLD=10000 OUT=<file>
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${1:-3}" RECEIVERS="${RECEIVERS:-100}" MESSAGES="${MESSAGES:-2000}" PASTE_MESSAGES="${PASTE_MESSAGES:-400}" HOLD="${HOLD:-10000}"
WORK="$(mktemp -d /tmp/bench-deflate.XXXXXX)"
OUT="${OUT:-$WORK/results.txt}"
PORT=8701
ulimit -n "$(ulimit -Hn)"
cargo build --release -p multichat -p loadgen --manifest-path "$ROOT/Cargo.toml" >&2
M="$ROOT/target/release/multichat" L="$ROOT/target/release/loadgen"
"$M" --database-url "sqlite://$WORK/chat.db" seed-users --count $((HOLD + 101)) > "$WORK/tokens.txt"

PID=""
start() { # NOTICES(1|0)
  local extra=(--max-connections $((HOLD + 1000)))
  [ "$1" = 0 ] && extra+=(--no-notices)
  "$M" --database-url "sqlite://$WORK/chat.db" serve --bind "127.0.0.1:$PORT" "${extra[@]}" >/dev/null 2>"$WORK/server.log" &
  PID=$!
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done
  echo "the server did not start: $(tail -5 "$WORK/server.log")" >&2; return 1
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PORT=$((PORT + 1)); }
TICK_MS=$((1000 / $(getconf CLK_TCK)))
cpu_ms() { awk -v tick="$TICK_MS" '{ print ($14 + $15) * tick }' "/proc/$1/stat"; }
run() { # ROUND CLIENT(plain|deflate) MODE ARGS...
  local round="$1" client="$2" before line flag=()
  shift 2
  [ "$client" = deflate ] && flag=(--deflate)
  before="$(cpu_ms "$PID")"
  line="$("$L" "$@" ${flag[@]+"${flag[@]}"} --url "ws://127.0.0.1:$PORT/chat/stream/" --tokens "$WORK/tokens.txt" --pid "$PID" 2>>"$WORK/loadgen.log" || echo "mode=$1 failed=1")"
  echo "round=$round client=$client $line server_cpu_ms=$(( $(cpu_ms "$PID") - before ))" | tee -a "$OUT"
}
for round in $(seq 1 "$ROUNDS"); do
  clients=(plain deflate); [ $((round % 2)) = 0 ] && clients=(deflate plain)
  for paste in 0 2000; do
    messages="$MESSAGES"; [ "$paste" = 0 ] || messages="$PASTE_MESSAGES"
    for client in "${clients[@]}"; do
      start 1; run "$round" "$client" fanout --receivers "$RECEIVERS" --messages "$messages" --paste "$paste"; stop
    done
  done
  for client in "${clients[@]}"; do
    start 0; run "hold-$round" "$client" hold --sockets "$HOLD"; stop
  done
done
echo "== results: $OUT" >&2
