#!/usr/bin/env bash
# Side-by-side end-to-end figures on this machine, one run, servers alternated:
#   ours    the multichat app (its accept loop + the library's Acceptor + RusqliteTokenStore on SQLite)
#   noauth  the same chat with no authentication at all (`serve --insecure-no-auth`): the ceiling
#   base    another build of the app (BASE=<path to its multichat binary>): what a change costs
#   lean    tools/leanchat: the same protocol with no auth and no database, written apart: the honest ceiling
#   daphne, uvicorn   the Django Channels multichat peer, when it is beside the repo (optional;
#                     PEER=<dir> to name it, default ../shared/peers/django_multichat)
# with tools/loadgen. Loopback only. Prints a results file and a summary (scripts/bench-summary.py).
#
# Usage: scripts/bench-compare.sh [ROUNDS]      (default 3)
# Environment: WORKERS=50 HANDSHAKE_SECONDS=10 RECEIVERS=100 MESSAGES=2000 PEER_MESSAGES=200
#              HOLD=10000 PEER_HOLD=2000 STORM=2000 SERVERS="ours noauth daphne uvicorn" OUT=<file>
#              BASE=<binary> (server "base"); HOLD_SERVERS, STORM_SERVERS: which servers the hold and storm
#              runs take (default: all of SERVERS; "" for none)
#              COLD=150000: tokens seeded for the cold handshake rounds (`loadgen handshake --cold`: every token
#              used once per server process, so each handshake of ours misses the cache and looks its token up in
#              SQLite); COLD_SERVERS="ours base lean" which servers run them (those in SERVERS; "" for none)
# The handshake and cold rounds also record the server's own CPU over the run (server_cpu_ms, user + system from
# /proc) for ours, noauth, base and lean; the summary prints it per cycle.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEER="${PEER:-$ROOT/../shared/peers/django_multichat}"
ROUNDS="${1:-3}"
WORKERS="${WORKERS:-50}" HANDSHAKE_SECONDS="${HANDSHAKE_SECONDS:-10}"
RECEIVERS="${RECEIVERS:-100}" MESSAGES="${MESSAGES:-2000}" PEER_MESSAGES="${PEER_MESSAGES:-200}"
HOLD="${HOLD:-10000}" PEER_HOLD="${PEER_HOLD:-2000}" STORM="${STORM:-2000}"
SERVERS="${SERVERS:-ours noauth daphne uvicorn}"
WORK="$(mktemp -d /tmp/bench-compare.XXXXXX)"
OUT="${OUT:-$WORK/results.txt}"
PORT=8601
ulimit -n "$(ulimit -Hn)"

cargo build --release -p multichat -p loadgen -p leanchat --manifest-path "$ROOT/Cargo.toml" >&2
M="$ROOT/target/release/multichat"
L="$ROOT/target/release/loadgen"
LEAN="$ROOT/target/release/leanchat"

COLD="${COLD:-150000}" COLD_SERVERS="${COLD_SERVERS-ours base lean}"
echo "== seeding $((HOLD + 101)) users for ours" >&2
"$M" --database-url "sqlite://$WORK/ours.db" seed-users --count $((HOLD + 101)) > "$WORK/ours-tokens.txt"
if [ -n "$COLD_SERVERS" ]; then
  echo "== seeding $COLD users for the cold rounds" >&2
  "$M" --database-url "sqlite://$WORK/cold.db" seed-users --count "$COLD" > "$WORK/cold-tokens.txt"
fi
export VENV="${VENV:-/tmp/peer/venv}" DB_PATH="$WORK/peer.sqlite3" TOKENS="$WORK/peer-tokens.txt"
if [[ " $SERVERS " == *" daphne "* || " $SERVERS " == *" uvicorn "* ]]; then
  [ -d "$PEER" ] || { echo "the Django peer is not at $PEER: set PEER, or SERVERS=\"ours noauth\"" >&2; exit 1; }
  echo "== setting up the Django peer" >&2
  (cd "$PEER" && N="$PEER_HOLD" ./run.sh setup >&2)
fi

PID=""
start() { # NAME NOTIFY(1|0) [DATABASE (ours|cold)]
  local name="$1" notify="$2" db="${3:-ours}"
  case "$name" in
    ours|noauth|base)
      # Open WebSockets count against --max-connections: room for the held ones and the probes.
      local extra=(--max-connections $((HOLD + 1000))) bin="$M"
      [ "$name" = noauth ] && extra+=(--insecure-no-auth)
      [ "$name" = base ] && bin="${BASE:?set BASE to the multichat binary of the other build}"
      [ "$notify" = 0 ] && extra+=(--no-notices)
      "$bin" --database-url "sqlite://$WORK/$db.db" serve --bind "127.0.0.1:$PORT" "${extra[@]}" >/dev/null 2>"$WORK/$name.log" &
      PID=$!
      TOKEN_FILE="$WORK/$db-tokens.txt" ;;
    lean)
      local extra=()
      [ "$notify" = 0 ] && extra+=(--no-notices)
      "$LEAN" --bind "127.0.0.1:$PORT" "${extra[@]}" >/dev/null 2>"$WORK/$name.log" &
      PID=$!
      TOKEN_FILE="$WORK/$db-tokens.txt" ;;
    daphne|uvicorn)
      (cd "$PEER" && PORT="$PORT" SERVER="$name" N="$PEER_HOLD" NOTIFY="$notify" exec ./run.sh) >/dev/null 2>"$WORK/$name.log" &
      PID=$!
      TOKEN_FILE="$TOKENS" ;;
  esac
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$name did not start: $(tail -5 "$WORK/$name.log")" >&2
  return 1
}
stop() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PORT=$((PORT + 1)) # a fresh port: no TIME_WAIT or leftover listener in the way
}
TICK_MS=$((1000 / $(getconf CLK_TCK)))
cpu_ms() { # PID: the process's user + system CPU so far, in ms (from /proc)
  awk -v tick="$TICK_MS" '{ print ($14 + $15) * tick }' "/proc/$1/stat"
}
run() { # ROUND NAME MODE ARGS...   (MODE cold: a handshake run with --cold, reported as mode=cold)
  local round="$1" name="$2" mode="$3"
  shift 3
  local line loadgen=("$mode") cpu="" before
  [ "$mode" = cold ] && loadgen=(handshake --cold)
  # The server's own CPU over the run, where PID is the server itself (the peer runs under a script).
  [[ "$name" =~ ^(ours|noauth|base|lean)$ ]] && before="$(cpu_ms "$PID")"
  line="$("$L" "${loadgen[@]}" --url "ws://127.0.0.1:$PORT/chat/stream/" --tokens "$TOKEN_FILE" "$@" 2>>"$WORK/loadgen.log" || echo "mode=${loadgen[0]} failed=1")"
  [ -n "${before:-}" ] && cpu=" server_cpu_ms=$(( $(cpu_ms "$PID") - before ))"
  [ "$mode" = cold ] && line="${line/mode=handshake/mode=cold}"
  echo "round=$round server=$name threads=2 $line$cpu" | tee -a "$OUT"
}

servers=($SERVERS)
for round in $(seq 1 "$ROUNDS"); do
  # Alternate the order from round to round, so that drift hits every server alike.
  order=("${servers[@]:$(( (round - 1) % ${#servers[@]} ))}" "${servers[@]:0:$(( (round - 1) % ${#servers[@]} ))}")
  for name in "${order[@]}"; do
    start "$name" 1; run "$round" "$name" handshake --workers "$WORKERS" --seconds "$HANDSHAKE_SECONDS"; stop
    messages="$MESSAGES"; [[ "$name" == daphne || "$name" == uvicorn ]] && messages="$PEER_MESSAGES"
    start "$name" 1; run "$round" "$name" fanout --receivers "$RECEIVERS" --messages "$messages"; stop
    if [[ " $COLD_SERVERS " == *" $name "* ]]; then
      start "$name" 1 cold; run "$round" "$name" cold --workers "$WORKERS" --seconds "$HANDSHAKE_SECONDS"; stop
    fi
  done
done
for name in ${HOLD_SERVERS-${servers[@]}}; do
  sockets="$HOLD"; [[ "$name" == daphne || "$name" == uvicorn ]] && sockets="$PEER_HOLD"
  start "$name" 0; run hold "$name" hold --sockets "$sockets" --pid "$PID"; stop
done
# The storm lasts about a second: one per server would be noise, so it runs ROUNDS times, alternated.
storm_servers=()
for name in ${STORM_SERVERS-ours noauth base lean}; do
  [[ " $SERVERS " == *" $name "* ]] && storm_servers+=("$name")
done
for round in $(seq 1 "$ROUNDS"); do
  [ "${#storm_servers[@]}" -gt 0 ] || break
  shift_by=$(( (round - 1) % ${#storm_servers[@]} ))
  for name in "${storm_servers[@]:$shift_by}" "${storm_servers[@]:0:$shift_by}"; do
    start "$name" 1; run "storm-$round" "$name" storm --sockets "$STORM"; stop
  done
done
echo "== results: $OUT" >&2
python3 "$ROOT/scripts/bench-summary.py" "$OUT"
