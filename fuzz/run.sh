#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600) and prints the
# executions count of each. The machine has a stable toolchain only;
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the sanitizer flags it needs.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]     (needs: cargo install cargo-fuzz)
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(extract origin command deflate)
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  echo "== $target: ${seconds}s"
  if ! cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "== $target: CRASH (artifact in fuzz/artifacts/$target)"
    exit 1
  fi
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log" | sed "s/^/$target: /"
done
