#!/usr/bin/env bash
# Load benchmark of POST /v1/token, in one run, on this machine:
#   1. the ceiling: two cores' raw aws-lc-rs ES384 signing rate (examples/sign_rate.rs);
#   2. the signing path: viewer tokens through an API key (every request signs);
#   3. the shared path: anonymous tokens for the demo channel (signed once per bucket);
#   4. p99 latency of the signing path at half its peak rate (oha, fixed rate);
#   5. the same signing load against the IVS docs' Node snippet behind express (benches/node-baseline);
#   6. the service's peak RSS.
# It installs what it needs (wrk from Debian, oha from crates.io, the Node packages from the lock file).
#
# Every request must be answered 200: a non-200 answer or a socket error in any run (wrk or oha)
# stops the script with exit 1. Each goal is checked: a missed one prints a `MISSED` line, and the
# script exits 2 after writing the whole report (target/load-report.txt).
#
#   benches/load.sh            # DURATION=10 CONNECTIONS=64 by default
#   BASELINE_BIN=/path/to/older/ivs-playback-auth benches/load.sh
#                              # also measures an older build's signing and shared
#                              # paths in the same run, for a before/after table
#   PROFILE=dev DURATION=2 benches/load.sh
#                              # a quick run of the script itself on the debug build
#                              # (the goals are for the release build: expect MISSED)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10}
connections=${CONNECTIONS:-64}
profile=${PROFILE:-release}
case "$profile" in dev) out=debug ;; *) out=$profile ;; esac
export PATH="$HOME/.cargo/bin:$PATH"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
command -v oha >/dev/null || cargo install oha --locked
command -v node >/dev/null || { echo "node is needed for the baseline" >&2; exit 1; }
(cd benches/node-baseline && npm ci --no-audit --no-fund --silent)
cargo build --profile "$profile" --locked --bin ivs-playback-auth --example sign_rate
bin=target/$out/ivs-playback-auth

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

key=bench-api-key-0123456789
cat >"$work/config.toml" <<EOF
[server]
listen = "127.0.0.1:0"
[keys]
dir = "$work/keys"
[[api_keys]]
name = "bench"
sha256 = "$(printf %s "$key" | sha256sum | cut -c1-64)"
channels = ["*"]
rate_per_second = 10000000
[anonymous]
rate_per_ip_per_second = 10000000
[viewer_ids]
secret = "load-benchmark-secret-0123456789abcdef"
EOF

RUST_LOG=error "$bin" serve --config "$work/config.toml" >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
pids+=("$serve_pid")
for _ in $(seq 100); do grep -q '^demo channel' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
api=$(sed -n 's/^token API: *//p' "$work/serve.out")
[ -n "$api" ] || { cat "$work/serve.err" >&2; exit 1; }
demo_arn=$(sed -n 's/^demo channel: \([^ ]*\).*/\1/p' "$work/serve.out")
playback=$(curl -s -X POST "$api/v1/token" -H 'content-type: application/json' -d '{"channel":"demo"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["playback_url"].split("?")[0])')

node benches/node-baseline/server.js 0 "$work/keys/playback-key.pem" "$demo_arn" "$playback" >"$work/node.out" 2>&1 &
node_pid=$!
pids+=("$node_pid")
for _ in $(seq 100); do grep -q listening "$work/node.out" 2>/dev/null && break; sleep 0.1; done
node_port=$(sed -n 's/^listening on //p' "$work/node.out")
[ -n "$node_port" ] || { cat "$work/node.out" >&2; exit 1; }
node_api="http://127.0.0.1:$node_port"

lua() { # file body [api-key]
  {
    echo 'wrk.method = "POST"'
    echo "wrk.body = '$2'"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    if [ -n "${3:-}" ]; then echo "wrk.headers[\"X-Api-Key\"] = \"$3\""; fi
  } >"$1"
}
lua "$work/viewer.lua" '{"channel":"demo","viewer_id":"bench-user"}' "$key"
lua "$work/shared.lua" '{"channel":"demo"}'

cpu_seconds() { # pid -> user+system CPU seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

wrk_run() { # name url lua pid -> $work/name.res "rps p50 p99"; the server's CPU seconds in $work/name.cpu
  # Runs in this shell (not in a command or process substitution), so that its exit stops the script.
  local out before failed
  before=$(cpu_seconds "$4")
  out=$(wrk -t1 -c"$connections" -d"${duration}s" --latency -s "$3" "$2/v1/token")
  python3 -c "print($(cpu_seconds "$4") - $before)" >"$work/$1.cpu"
  echo "$out" >"$work/$1.wrk"
  failed=$(echo "$out" | grep -E '^ *(Non-2xx or 3xx responses|Socket errors):' || true)
  if [ -n "$failed" ]; then
    echo "FAILED $1: not every request was answered 200: $failed" >&2
    echo "$out" >&2
    exit 1
  fi
  printf '%s %s %s\n' \
    "$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')" \
    "$(echo "$out" | awk '$1 == "50%" {print $2}')" \
    "$(echo "$out" | awk '$1 == "99%" {print $2}')" >"$work/$1.res"
}

echo "measuring the raw signing rate on 2 threads..." >&2
raw=$("target/$out/examples/sign_rate" 2 "$duration")
echo "signing path..." >&2
wrk_run signing "$api" "$work/viewer.lua" "$serve_pid"
read -r sign_rps sign_p50 sign_p99 <"$work/signing.res"
echo "shared path..." >&2
wrk_run shared "$api" "$work/shared.lua" "$serve_pid"
read -r shared_rps shared_p50 shared_p99 <"$work/shared.res"
half=$(python3 -c "print(int(float('$sign_rps') / 2))")
echo "signing path at half peak ($half/s)..." >&2
oha -z "${duration}s" -w -q "$half" -c 32 --no-tui --output-format json -m POST \
  -H 'content-type: application/json' -H "x-api-key: $key" \
  -d '{"channel":"demo","viewer_id":"bench-user"}' "$api/v1/token" >"$work/half.json"
python3 - "$work/half.json" >"$work/half.res" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
errors = d.get("errorDistribution", {})
if set(codes) - {"200"} or errors or not codes:
    print(f"FAILED half peak (oha): not every request was answered 200: status codes {codes}, errors {errors}",
          file=sys.stderr)
    sys.exit(1)
print(f'{p["p50"] * 1000:.3f}ms {p["p99"] * 1000:.3f}ms {codes["200"]}')
EOF
read -r half_p50 half_p99 half_ok <"$work/half.res"
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")
echo "Node baseline..." >&2
wrk_run node "$node_api" "$work/viewer.lua" "$node_pid"
read -r node_rps node_p50 node_p99 <"$work/node.res"

if [ -n "${BASELINE_BIN:-}" ]; then
  echo "baseline build ($BASELINE_BIN)..." >&2
  sed "s|$work/keys|$work/baseline-keys|" "$work/config.toml" >"$work/baseline.toml"
  RUST_LOG=error "$BASELINE_BIN" serve --config "$work/baseline.toml" >"$work/baseline.out" 2>"$work/baseline.err" &
  base_pid=$!
  pids+=("$base_pid")
  for _ in $(seq 100); do grep -q '^demo channel' "$work/baseline.out" 2>/dev/null && break; sleep 0.1; done
  base_api=$(sed -n 's/^token API: *//p' "$work/baseline.out")
  [ -n "$base_api" ] || { cat "$work/baseline.err" >&2; exit 1; }
  wrk_run base-signing "$base_api" "$work/viewer.lua" "$base_pid"
  read -r base_sign_rps base_sign_p50 base_sign_p99 <"$work/base-signing.res"
  wrk_run base-shared "$base_api" "$work/shared.lua" "$base_pid"
  read -r base_shared_rps base_shared_p50 base_shared_p99 <"$work/base-shared.res"
  base_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$base_pid/status")
  kill "$base_pid" 2>/dev/null || true
fi

sign_cpu=$(cat "$work/signing.cpu")
# The report, with one MISSED line per goal missed (python exits 2); then, after the baseline table,
# the script exits 2 too.
missed=0
python3 - "$raw" "$sign_rps" "$shared_rps" "$node_rps" "$rss_kb" "$sign_cpu" "$half_p99" <<EOF | tee target/load-report.txt || missed=$?
import sys
raw, sign, shared, node, rss, sign_cpu = map(float, sys.argv[1:7])
half_p99 = float(sys.argv[7].removesuffix("ms"))
print("POST /v1/token on loopback, ${connections} connections, ${duration} s each, wrk -t1 and oha on the same 2 cores (${profile} build)")
print(f"raw aws-lc-rs ES384 sign, 2 threads: {raw:,.0f}/s")
print(f"signing path (viewer tokens):        {sign:,.0f}/s  p50 ${sign_p50} p99 ${sign_p99}  = {sign / raw:.2f}x raw (goal >= 0.80)")
print(f"  the service used {sign_cpu / ${duration}:.2f} of the 2 cores (the load generator the rest): "
      f"{sign * ${duration} / sign_cpu:,.0f} tokens per service CPU-second = {sign * ${duration} / sign_cpu / (raw / 2):.2f}x one core's raw rate")
print(f"shared path (anonymous, cached):     {shared:,.0f}/s  p50 ${shared_p50} p99 ${shared_p99}  = {shared / sign:.1f}x signing (goal >= 4)")
print(f"signing path at half peak (oha -q):  p50 ${half_p50} p99 ${half_p99} ok ${half_ok}  (goal p99 <= 2 ms)")
print(f"Node docs snippet (express):         {node:,.0f}/s  p50 ${node_p50} p99 ${node_p99}  -> ours {sign / node:.1f}x (goal >= 20)")
print(f"service peak RSS (VmHWM):            {rss / 1024:.1f} MB (goal <= 30)")
goals = [
    ("signing path / raw signing rate", sign / raw, ">=", 0.80, "x"),
    ("shared path / signing path", shared / sign, ">=", 4.0, "x"),
    ("p99 at half the peak rate", half_p99, "<=", 2.0, " ms"),
    ("ours / the Node snippet", sign / node, ">=", 20.0, "x"),
    ("peak RSS", rss / 1024, "<=", 30.0, " MB"),
]
missed = [g for g in goals if not (g[1] >= g[3] if g[2] == ">=" else g[1] <= g[3])]
for name, value, op, goal, unit in missed:
    print(f"MISSED: {name} {value:.2f}{unit}, goal {op} {goal:g}{unit}")
print(f"goals met: {len(goals) - len(missed)} of {len(goals)}")
sys.exit(2 if missed else 0)
EOF
if [ -n "${BASELINE_BIN:-}" ]; then
  python3 - "$sign_rps" "$(cat "$work/signing.cpu")" "$shared_rps" "$(cat "$work/shared.cpu")" \
    "$base_sign_rps" "$(cat "$work/base-signing.cpu")" "$base_shared_rps" "$(cat "$work/base-shared.cpu")" \
    "$rss_kb" "$base_rss_kb" <<EOF | tee -a target/load-report.txt
import sys
s, s_cpu, sh, sh_cpu, bs, bs_cpu, bsh, bsh_cpu, rss, brss = map(float, sys.argv[1:])
d = ${duration}
print("same run, this build vs BASELINE_BIN:        this      baseline")
print(f"signing path, tokens/s:                 {s:>10,.0f}    {bs:>10,.0f}   p50 ${sign_p50} vs ${base_sign_p50}, p99 ${sign_p99} vs ${base_sign_p99}")
print(f"signing path, tokens per service CPU-s: {s * d / s_cpu:>10,.0f}    {bs * d / bs_cpu:>10,.0f}")
print(f"shared path, tokens/s:                  {sh:>10,.0f}    {bsh:>10,.0f}   p50 ${shared_p50} vs ${base_shared_p50}, p99 ${shared_p99} vs ${base_shared_p99}")
print(f"shared path, tokens per service CPU-s:  {sh * d / sh_cpu:>10,.0f}    {bsh * d / bsh_cpu:>10,.0f}")
print(f"peak RSS (VmHWM), MB:                   {rss / 1024:>10.1f}    {brss / 1024:>10.1f}")
EOF
fi
if [ "$missed" -eq 2 ]; then
  echo "load.sh: goals missed (the MISSED lines above)" >&2
  exit 2
elif [ "$missed" -ne 0 ]; then
  echo "load.sh: the report could not be made" >&2
  exit 1
fi
