#!/usr/bin/env bash
# Runs the fuzz targets, each for SECONDS, one after the other; fails on the
# first crash (libFuzzer leaves the input in fuzz/artifacts/TARGET/).
#
#   fuzz/run.sh SECONDS [TARGET...]     # every target when none is named
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz
# --locked`); both are checked first and their absence is an error, never a
# skip. The corpus grows in fuzz/corpus/TARGET (not committed); the committed
# seeds are fuzz/seeds/TARGET (and tests/data/keys for key_read). Each
# target's last libFuzzer status line (execs, cov, ft) is printed, and the
# whole log kept in fuzz/corpus/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: the nightly toolchain is missing (rustup toolchain list); cargo-fuzz needs it" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi

if [ $# -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
else
  targets=("$@")
fi

# One build of every target first, so that each run below fuzzes for its
# whole time instead of building.
cargo +nightly fuzz build

status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds+=("seeds/$target")
  [ "$target" = key_read ] && seeds+=(../tests/data/keys)
  log="corpus/$target.log"
  echo "== $target: ${seconds}s"
  if cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    >"$log" 2>&1; then
    grep -E '^#[0-9]+' "$log" | tail -1 || true
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | tr '\n' ' '
    echo
  else
    status=1
    echo "== $target FAILED (a crash leaves its input in fuzz/artifacts/$target/; log: fuzz/$log):" >&2
    ls -t "artifacts/$target" | head -3 >&2
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|No such file' "$log" | head -5 >&2
  fi
done
exit $status
