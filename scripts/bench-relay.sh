#!/usr/bin/env bash
# Fan-out across the Redis relay, one run, alternated round by round:
#   solo    one node without Redis, receivers and sender on it: the ceiling
#   redis1  one node with --redis-url: every frame goes to Redis and back
#   redis2  two nodes with --redis-url: the receivers on one, the sender on the other
# for this build ("ours") and, with BASE=<multichat binary of another build>, that one too ("base"), in the
# same rounds. A private redis-server on a free port (never the machine's shared one). Loopback only.
# Prints one line per run (`build=.. mode=.. round=..` and loadgen's fanout line), then per-round ratios
# of each mode's deliveries/s to solo's of the same build and round.
#
# Usage: scripts/bench-relay.sh [ROUNDS]        (default 3)
# Environment: RECEIVERS=100 MESSAGES=2000 BASE=<binary> OUT=<file>
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${1:-3}"
RECEIVERS="${RECEIVERS:-100}" MESSAGES="${MESSAGES:-2000}"
WORK="$(mktemp -d /tmp/bench-relay.XXXXXX)"
OUT="${OUT:-$WORK/results.txt}"
ulimit -n "$(ulimit -Hn)"

cargo build --release -p multichat -p loadgen --manifest-path "$ROOT/Cargo.toml" >&2
M="$ROOT/target/release/multichat"
L="$ROOT/target/release/loadgen"
BUILDS="ours"
[ -n "${BASE:-}" ] && BUILDS="ours base"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RPORT="$(free_port)"
redis-server --bind 127.0.0.1 --port "$RPORT" --save "" --appendonly no --dir "$WORK" >/dev/null 2>&1 &
REDIS_PID=$!
PIDS=()
cleanup() { kill "${PIDS[@]}" "$REDIS_PID" 2>/dev/null || true; }
trap cleanup EXIT
REDIS="redis://127.0.0.1:$RPORT"

"$M" --database-url "sqlite://$WORK/chat.db" seed-users --count $((RECEIVERS + 1)) > "$WORK/tokens.txt"

wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  return 1
}

serve() { # BINARY PORT [REDIS]
  local extra=(--no-notices)
  [ -n "${3:-}" ] && extra+=(--redis-url "$3")
  "$1" --database-url "sqlite://$WORK/chat.db" serve --bind "127.0.0.1:$2" "${extra[@]}" >/dev/null 2>>"$WORK/server.log" &
  PIDS+=($!)
  wait_port "$2"
}

run() { # BUILD MODE ROUND
  local bin="$M" a b
  [ "$1" = base ] && bin="$BASE"
  a="$(free_port)"
  PIDS=()
  case "$2" in
    solo) serve "$bin" "$a" ;;
    redis1) serve "$bin" "$a" "$REDIS" ;;
    redis2)
      b="$(free_port)"
      serve "$bin" "$a" "$REDIS"
      serve "$bin" "$b" "$REDIS" ;;
  esac
  local sender=()
  [ "$2" = redis2 ] && sender=(--sender-url "ws://127.0.0.1:$b/chat/stream/")
  sleep 0.5
  local line
  line="$("$L" fanout --url "ws://127.0.0.1:$a/chat/stream/" "${sender[@]}" --tokens "$WORK/tokens.txt" \
    --receivers "$RECEIVERS" --messages "$MESSAGES")"
  echo "build=$1 relay=$2 round=$3 $line" | tee -a "$OUT"
  kill "${PIDS[@]}" 2>/dev/null || true
  wait "${PIDS[@]}" 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
  for mode in solo redis1 redis2; do
    for build in $BUILDS; do
      run "$build" "$mode" "$round"
    done
  done
done

echo "== results: $OUT" >&2
python3 - "$OUT" <<'EOF'
import re, sys, statistics
rows = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in open(sys.argv[1])]
by = {(r["build"], r["relay"], r["round"]): r for r in rows}
builds = sorted({r["build"] for r in rows}, key=lambda b: b != "ours")
rounds = sorted({r["round"] for r in rows}, key=int)
for build in builds:
    for mode in ["solo", "redis1", "redis2"]:
        rates = [float(by[(build, mode, n)]["deliveries_per_s"]) for n in rounds]
        lost = sum(int(by[(build, mode, n)]["lost"]) for n in rounds)
        ratios = [float(by[(build, mode, n)]["deliveries_per_s"]) / float(by[(build, "solo", n)]["deliveries_per_s"]) for n in rounds]
        print(f"{build:5} {mode:7} deliveries/s median {statistics.median(rates)/1e6:.2f} M "
              f"(rounds {', '.join(f'{r/1e6:.2f}' for r in rates)}) lost {lost} "
              f"x solo per round {', '.join(f'{x:.2f}' for x in ratios)}")
EOF
