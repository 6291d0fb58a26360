#!/usr/bin/env bash
# The signer as other people's backends use it: the docs as docs.rs shows
# them, what `cargo package` ships, and the two embedding examples built and
# run, their tokens checked by the CLI's verifier.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

echo "-- docs: -D warnings, every feature set an embedder may pick"
for features in "" "--no-default-features" "--no-default-features --features aws-lc-rs"; do
  # shellcheck disable=SC2086
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked $features
done

echo "-- cargo package ships sources, licences, README, CHANGELOG, the example config and the clip only"
list=$(cargo package --list --locked --allow-dirty 2>/dev/null)
unexpected=$(grep -vE '^(src/.*\.(rs|der|json)|assets/clip/[0-9a-z]+/[0-9]+\.ts|Cargo\.toml(\.orig)?|Cargo\.lock|README\.md|CHANGELOG\.md|config\.example\.toml|LICENSE-(MIT|APACHE)|\.cargo_vcs_info\.json)$' <<<"$list" || true)
if [ -n "$unexpected" ]; then
  echo "cargo package would ship these, which do not belong in the crate:" >&2
  echo "$unexpected" >&2
  exit 1
fi
echo "$(wc -l <<<"$list") files"

echo "-- mint_plain: the signer from a plain function, both backends"
cargo run --locked --quiet --example mint_plain | grep -q '?token=ey'
cargo run --locked --quiet --no-default-features --example mint_plain | grep -q '?token=ey'

echo "-- axum-backend: depends on the signer alone"
manifest=examples/axum-backend/Cargo.toml
# Nothing async, web or AWS may come from us: only from the backend itself.
if cargo tree --locked --manifest-path "$manifest" -e normal -p ivs-playback-auth --prefix none |
  grep -E '^(tokio|axum|hyper|tower|clap|aws-config|aws-sdk-[a-z]+|aws-smithy-[a-z-]+|reqwest) '; then
  echo "the signer pulls the crates above into a backend that embeds it" >&2
  exit 1
fi
cargo fmt --manifest-path "$manifest" -- --check
cargo clippy --locked --quiet --manifest-path "$manifest" --target-dir "$target" -- -D warnings
cargo build --locked --quiet --manifest-path "$manifest" --target-dir "$target"
# The binary as the default-feature tests built it (see .ci/run).
cargo test --locked --no-run --quiet
bin=$target/debug/ivs-playback-auth

work=$(mktemp -d)
backend_pid=
# Never fails: under `set -e` a failing command here (the killed backend's
# status from `wait`) would become the script's exit status.
cleanup() {
  if [ -n "$backend_pid" ]; then
    kill "$backend_pid" 2>/dev/null || true
    wait "$backend_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
"$bin" keys generate --out "$work/keys" >/dev/null
arn=arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234
PLAYBACK_KEY="$work/keys/playback-key.pem" CHANNEL_ARN="$arn" \
  PLAYBACK_URL=https://example.invalid/api/video/v1/demo.m3u8 \
  VIEWER_ID_SECRET=0123456789abcdef0123456789abcdef USERS=alice:correct-horse LISTEN=127.0.0.1:0 \
  "$target/debug/axum-backend" >"$work/out" 2>&1 &
backend_pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
base=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$work/out")
[ -n "$base" ] || { cat "$work/out" >&2; echo "axum-backend did not start" >&2; exit 1; }

status=$(curl -s -o /dev/null -w '%{http_code}' "$base/watch")
[ "$status" = 401 ] || { echo "GET /watch without a login: $status, wanted 401" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/login" -H 'content-type: application/json' \
  -d '{"user":"alice","password":"wrong"}')
[ "$status" = 401 ] || { echo "a wrong password: $status, wanted 401" >&2; exit 1; }
session=$(curl -sf -X POST "$base/login" -H 'content-type: application/json' \
  -d '{"user":"alice","password":"correct-horse"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
url=$(curl -sf "$base/watch" -H "authorization: Bearer $session" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["playback_url"])')
"$bin" verify --public-key "$work/keys/playback-key.pub.pem" --channel-arn "$arn" "$url"
echo "axum-backend: 401 before login, a token after it that verifies"
