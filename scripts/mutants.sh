#!/usr/bin/env bash
# Mutation testing of the library's core modules with cargo-mutants (not in CI:
# it takes hours on two cores). Each mutant is one small change to the code; a
# test suite worth its name fails ("catches" it). Survivors are listed in
# mutants.out/missed.txt; docs/MUTANTS.md records the last run's figures and
# what was done about each survivor.
#
# Usage: scripts/mutants.sh [FILE_GLOB...]    default: the core modules
#        ITERATE=1 scripts/mutants.sh ...      retest only what the last run missed (and what it never saw)
# Needs DATABASE_URL and REDIS_URL as the tests do (bash .ci/run's defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null 2>&1 || cargo install --locked cargo-mutants
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(src/token.rs src/extract.rs src/origin.rs src/authenticator.rs 'src/layer/*.rs'
  src/identity.rs src/rejection.rs src/lifecycle.rs src/live.rs)
args=()
for f in "${files[@]}"; do args+=(-f "$f"); done
# The tests that exercise these modules and run in seconds; doctests are left
# out (each mutant would recompile them).
cargo mutants --package ws-token-auth --all-features --timeout 120 --jobs "${JOBS:-1}" ${ITERATE:+--iterate} "${args[@]}" -- \
  --lib --test layer --test properties --test secrecy --test refusals --test axum_extractors \
  --test tungstenite_adapter --test live_redis --test revocation_races --test store_cache
