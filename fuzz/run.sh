#!/usr/bin/env bash
# Runs the fuzz targets, each for SECONDS, one per core at a time; fails
# when any crashes (libFuzzer leaves the input in fuzz/artifacts/TARGET/).
#
#   fuzz/run.sh SECONDS [TARGET...]     # every target when none is named
#   fuzz/run.sh build                   # only build every target
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz
# --locked`); both are checked first and their absence is an error, never a
# skip. The corpus grows in fuzz/corpus/TARGET (not committed); the committed
# seeds are fuzz/seeds/TARGET (and tests/data/keys for key_read). Each
# target's last libFuzzer status line (execs, cov, ft) is printed, and the
# whole log kept in fuzz/corpus/TARGET.log. The build goes to FUZZ_TARGET_DIR
# (default fuzz/target): CARGO_TARGET_DIR is the main crate's, never this
# workspace's.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...] | fuzz/run.sh build}
shift
export PATH="$HOME/.cargo/bin:$PATH"
unset CARGO_TARGET_DIR
target_dir=${FUZZ_TARGET_DIR:-$PWD/target}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: the nightly toolchain is missing (rustup toolchain list); cargo-fuzz needs it" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi

# One build of every target first, so that each run below fuzzes for its
# whole time instead of building (nothing to do when `build` made them).
cargo +nightly fuzz build --target-dir "$target_dir"
[ "$seconds" = build ] && exit 0

if [ $# -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
else
  targets=("$@")
fi

# Targets run side by side, one per core (FUZZ_JOBS, default nproc): each
# libFuzzer process uses one core, so on 2 cores 7 targets take 4 rounds of
# SECONDS instead of 7.
jobs=${FUZZ_JOBS:-$(nproc)}
fuzz_one() { # target: exit status 0, or 1 on a crash
  local target=$1 log="corpus/$1.log" seeds=()
  mkdir -p "corpus/$target" "artifacts/$target"
  [ -d "seeds/$target" ] && seeds+=("seeds/$target")
  [ "$target" = key_read ] && seeds+=(../tests/data/keys)
  if cargo +nightly fuzz run --target-dir "$target_dir" "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    >"$log" 2>&1; then
    return 0
  fi
  return 1
}
report() { # target status
  local target=$1 log="corpus/$1.log"
  if [ "$2" = 0 ]; then
    echo "== $target: ${seconds}s"
    grep -E '^#[0-9]+' "$log" | tail -1 || true
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | tr '\n' ' '
    echo
  else
    echo "== $target FAILED (a crash leaves its input in fuzz/artifacts/$target/; log: fuzz/$log):" >&2
    ls -t "artifacts/$target" | head -3 >&2
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|No such file' "$log" | head -5 >&2
  fi
}

status=0
declare -A running=() # pid -> target
for target in "${targets[@]}"; do
  while [ "${#running[@]}" -ge "$jobs" ]; do
    finished=
    wait -n -p finished "${!running[@]}" && rc=0 || rc=$?
    report "${running[$finished]}" "$rc"
    [ "$rc" = 0 ] || status=1
    unset "running[$finished]"
  done
  fuzz_one "$target" &
  running[$!]=$target
done
for pid in "${!running[@]}"; do
  wait "$pid" && rc=0 || rc=$?
  report "${running[$pid]}" "$rc"
  [ "$rc" = 0 ] || status=1
done
exit $status
