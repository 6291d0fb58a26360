#!/usr/bin/env bash
# Soak of `serve` (release build) on loopback, bounded in time:
#   1. measure the peak signing rate (viewer tokens through an API key, wrk, PEAK_SECONDS);
#   2. load at half of it for WARMUP + DURATION seconds: viewer tokens (API key) and
#      shareable tokens (anonymous, the demo channel) half and half, at a fixed rate (oha -q);
#      a player asks for 1 token in 100 itself, alternating the two kinds, and plays
#      each at the local IVS playback URL; the admin API rotates the key every
#      ROTATE_EVERY seconds;
#   3. report: errors, failed plays, failed rotations, RSS after the warm-up and at the
#      end (within 10 %), open fds (/proc/PID/fd) after the warm-up and at the end (flat),
#      ERROR lines in the service's log. Any miss prints a MISSED line and exits 1.
#
#   benches/soak.sh                       # DURATION=600 WARMUP=60 ROTATE_EVERY=120
#   DURATION=60 WARMUP=20 benches/soak.sh # a short run
#   PEAK=8000 benches/soak.sh             # skip the peak measurement, take this rate
#
# `serve` runs in AWS mode against a local IVS in its own process (its endpoint
# given as the IVS endpoint): the RSS and fds measured are the service's alone,
# as in production, and not the stand-in's (whose playback sessions, up to its
# cap of 10,000, are memory that no deployment of `serve` holds).
#
# Token lifetimes are 60 s (and the rotation skew 10 s) so that a retired key's last
# token expires, and the key is deleted, before the next rotation: IVS allows 3 key
# pairs per region and the local IVS enforces it.
set -euo pipefail
cd "$(dirname "$0")/.."
# Where cargo builds: CARGO_TARGET_DIR when set, as cargo reads it.
target=${CARGO_TARGET_DIR:-target}
duration=${DURATION:-600}
warmup=${WARMUP:-60}
rotate_every=${ROTATE_EVERY:-120}
peak_seconds=${PEAK_SECONDS:-10}
export PATH="$HOME/.cargo/bin:$PATH"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --locked --bin ivs-playback-auth

work=$(mktemp -d)
serve_pid=
ivs_pid=
cleanup() {
  [ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null || true
  [ -z "$ivs_pid" ] || kill "$ivs_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The stand-in for IVS, and the demo channel in it (private, as a real one
# would be). With no --credential it takes any well-formed SigV4 signature.
"$target"/release/ivs-playback-auth local-ivs --listen 127.0.0.1:0 --test-controls \
  --state-file "$work/ivs-state.json" >"$work/ivs.out" 2>"$work/ivs.err" &
ivs_pid=$!
for _ in $(seq 100); do [ -s "$work/ivs.out" ] && break; sleep 0.1; done
ivs=$(head -1 "$work/ivs.out")
[ -n "$ivs" ] || { cat "$work/ivs.err" >&2; exit 1; }
ivs_call() { # OPERATION JSON
  local date
  date=$(date -u +%Y%m%dT%H%M%SZ)
  curl -sf -X POST "$ivs/$1" -H 'content-type: application/json' -H "x-amz-date: $date" \
    -H "authorization: AWS4-HMAC-SHA256 Credential=AKIDSOAK/${date:0:8}/us-west-2/ivs/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=$(printf '%064d' 0)" \
    -d "$2"
}
ivs_call CreateChannel '{"name":"demo","authorized":true}' >"$work/channel.json"

api_key=soak-api-key-0123456789
admin_token=soak-admin-token-0123456789
cat >"$work/config.toml" <<EOF
[server]
listen = "127.0.0.1:0"
[ivs]
mode = "aws"
region = "us-west-2"
endpoint_url = "$ivs"
[keys]
dir = "$work/keys"
generate_if_missing = true
[tokens]
default_ttl_seconds = 60
share_bucket_seconds = 10
[[api_keys]]
name = "soak"
sha256 = "$(printf %s "$api_key" | sha256sum | cut -c1-64)"
channels = ["*"]
max_ttl_seconds = 60
rate_per_second = 10000000
[anonymous]
channels = ["demo"]
ttl_seconds = 60
rate_per_ip_per_second = 10000000
[viewer_ids]
secret = "soak-benchmark-secret-0123456789abcdef"
[admin]
listen = "127.0.0.1:0"
token_sha256 = "$(printf %s "$admin_token" | sha256sum | cut -c1-64)"
[rotation]
skew_seconds = 10
sweep_seconds = 5
EOF

AWS_ACCESS_KEY_ID=AKIDSOAK AWS_SECRET_ACCESS_KEY=soak-secret AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
  RUST_LOG=warn "$target"/release/ivs-playback-auth serve --config "$work/config.toml" >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
for _ in $(seq 300); do grep -q '^admin API' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
api=$(sed -n 's/^token API: *//p' "$work/serve.out")
admin=$(sed -n 's/^admin API: *//p' "$work/serve.out")
[ -n "$api" ] && [ -n "$admin" ] || { cat "$work/serve.out" "$work/serve.err" >&2; exit 1; }

if [ -z "${PEAK:-}" ]; then
  cat >"$work/viewer.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"channel":"demo","viewer_id":"soak-peak"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Api-Key"] = "$api_key"
EOF
  echo "measuring the peak signing rate (${peak_seconds} s)..." >&2
  out=$(wrk -t1 -c64 -d"${peak_seconds}s" -s "$work/viewer.lua" "$api/v1/token")
  if echo "$out" | grep -q 'Non-2xx'; then echo "$out" >&2; echo "MISSED: the peak measurement had failed responses" >&2; exit 1; fi
  PEAK=$(echo "$out" | awk '/^Requests\/sec:/ {printf "%d", $2}')
fi

[ -n "${PEAK:-}" ] && [ -z "${out:-}" ] && export PEAK_SOURCE="given as PEAK"
python3 - "$serve_pid" "$api" "$admin" "$api_key" "$admin_token" "$PEAK" "$warmup" "$duration" \
  "$rotate_every" "$work" <<'EOF' | tee "$target"/soak-report.txt
import http.client, json, os, subprocess, sys, threading, time, urllib.parse

pid, api, admin, api_key, admin_token = sys.argv[1:6]
peak, warmup, duration, rotate_every = (int(x) for x in sys.argv[6:10])
work = sys.argv[10]
half = peak // 2
total = warmup + duration
# The player's share is 1 in 100 tokens: the rest of the half-peak rate goes to oha.
play_rate = half / 100
oha_rate = max(1, (half - int(play_rate)) // 2)  # per kind
stop = threading.Event()
lock = threading.Lock()
counts = {"player_tokens": 0, "plays": 0, "failed_plays": 0, "player_errors": 0,
          "rotations": 0, "failed_rotations": 0}
problems = []


def note(kind, what):
    with lock:
        counts[kind] += 1
        if len(problems) < 20:
            problems.append(f"{kind}: {what}")


def oha(name, body, headers):
    cmd = ["oha", "-z", f"{total}s", "-q", str(oha_rate), "-c", "16", "--no-tui",
           "--output-format", "json", "-m", "POST", "-H", "content-type: application/json",
           "-d", body]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"{api}/v1/token")
    return subprocess.Popen(cmd, stdout=open(f"{work}/{name}.json", "w"), stderr=subprocess.DEVNULL)


def connection(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10)


def player():
    """Asks for a token at play_rate, alternating viewer and shareable, and plays it."""
    api_conn = connection(api)
    play_conn = None
    i = 0
    next_at = time.monotonic()
    while not stop.is_set():
        next_at += 1 / play_rate
        time.sleep(max(0.0, next_at - time.monotonic()))
        i += 1
        viewer = i % 2 == 0
        body = {"channel": "demo", "viewer_id": f"soak-viewer-{i % 1000}"} if viewer else {"channel": "demo"}
        headers = {"content-type": "application/json"}
        if viewer:
            headers["x-api-key"] = api_key
        try:
            api_conn.request("POST", "/v1/token", json.dumps(body), headers)
            r = api_conn.getresponse()
            data = r.read()
            if r.status != 200:
                note("player_errors", f"token {r.status} {data[:200]!r}")
                continue
            with lock:
                counts["player_tokens"] += 1
            url = json.loads(data)["playback_url"]
            u = urllib.parse.urlsplit(url)
            if play_conn is None:
                play_conn = connection(url)
            play_conn.request("GET", f"{u.path}?{u.query}")
            r = play_conn.getresponse()
            data = r.read()
            if r.status == 200 and data.startswith(b"#EXTM3U"):
                with lock:
                    counts["plays"] += 1
            else:
                note("failed_plays", f"{r.status} {data[:200]!r}")
        except Exception as e:  # a broken connection is a failure, then a new one
            note("player_errors", repr(e))
            api_conn.close()
            api_conn = connection(api)
            if play_conn is not None:
                play_conn.close()
                play_conn = None


def rotator():
    n = 0
    while not stop.wait(rotate_every):
        n += 1
        # A new connection each time: the service closes keep-alive connections
        # idle longer than its header deadline (10 s), and rotations are minutes apart.
        conn = connection(admin)
        try:
            conn.request("POST", "/admin/v1/keys/rotate", headers={
                "authorization": f"Bearer {admin_token}", "idempotency-key": f"soak-{n}"})
            r = conn.getresponse()
            data = r.read()
            if r.status == 200:
                with lock:
                    counts["rotations"] += 1
            else:
                note("failed_rotations", f"{r.status} {data[:300]!r}")
        except Exception as e:
            note("failed_rotations", repr(e))
        finally:
            conn.close()


def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))


print(f"soak: peak {peak}/s ({os.environ.get('PEAK_SOURCE', 'measured')}), load {half}/s for {warmup} s warm-up + {duration} s "
      f"(viewer {oha_rate}/s + shareable {oha_rate}/s by oha, player {play_rate:.1f}/s), "
      f"rotation every {rotate_every} s", flush=True)
procs = [oha("viewer", '{"channel":"demo","viewer_id":"soak-viewer"}', [f"x-api-key: {api_key}"]),
         oha("shared", '{"channel":"demo"}', [])]
threads = [threading.Thread(target=player, daemon=True), threading.Thread(target=rotator, daemon=True)]
for t in threads:
    t.start()
start = time.monotonic()
samples = []  # (seconds, rss kB, fds)
warm = None
while time.monotonic() - start < total - 2:
    time.sleep(5)
    s = (round(time.monotonic() - start), rss_kb(), fds())
    samples.append(s)
    if warm is None and s[0] >= warmup:
        warm = s
        print(f"after warm-up ({s[0]} s): RSS {s[1] / 1024:.1f} MB, {s[2]} fds", flush=True)
    if s[0] % 60 < 5:
        print(f"  {s[0]:4d} s: RSS {s[1] / 1024:.1f} MB, {s[2]} fds, {counts}", flush=True)
end = (round(time.monotonic() - start), rss_kb(), fds())
stop.set()
for p in procs:
    p.wait()
for t in threads:
    t.join(timeout=15)
warm = warm or samples[0]

served = {}
missed = []
for name in ("viewer", "shared"):
    d = json.load(open(f"{work}/{name}.json"))
    codes = d.get("statusCodeDistribution", {})
    errors = d.get("errorDistribution", {})
    # Requests still in flight when oha's -z deadline falls are cut by oha itself.
    cut = sum(n for e, n in errors.items() if "deadline" in e)
    other = {e: n for e, n in errors.items() if "deadline" not in e}
    ok = codes.get("200", 0)
    bad = sum(n for c, n in codes.items() if c != "200")
    p = d.get("latencyPercentiles", {})
    served[name] = ok
    print(f"{name:8} {ok} ok, {bad} non-200 {dict((c, n) for c, n in codes.items() if c != '200')}, "
          f"{sum(other.values())} errors {other}, {cut} cut at the deadline; "
          f"{d['summary']['requestsPerSec']:.0f}/s, p50 {p.get('p50', 0) * 1000:.2f} ms, p99 {p.get('p99', 0) * 1000:.2f} ms")
    if bad or other:
        missed.append(f"{name} tokens: {bad} non-200 answers, {sum(other.values())} errors")

serve_errors = sum(1 for l in open(f"{work}/serve.err") if "ERROR" in l)
print(f"player   {counts['player_tokens']} tokens, {counts['plays']} played, {counts['failed_plays']} failed plays, "
      f"{counts['player_errors']} errors; tokens played: 1 in "
      f"{(served['viewer'] + served['shared'] + counts['player_tokens']) / max(1, counts['plays']):.0f}")
print(f"rotation {counts['rotations']} done, {counts['failed_rotations']} failed (every {rotate_every} s)")
rss_change = (end[1] - warm[1]) / warm[1] * 100
print(f"RSS      {warm[1] / 1024:.1f} MB after warm-up, {end[1] / 1024:.1f} MB at the end ({rss_change:+.1f} %), "
      f"min {min(s[1] for s in samples) / 1024:.1f} max {max(s[1] for s in samples) / 1024:.1f} MB")
print(f"fds      {warm[2]} after warm-up, {end[2]} at the end, min {min(s[2] for s in samples)} max {max(s[2] for s in samples)}")
print(f"log      {serve_errors} ERROR lines from serve")
for p in problems:
    print("  " + p)
if counts["player_errors"]:
    missed.append(f"{counts['player_errors']} player errors")
if counts["failed_plays"]:
    missed.append(f"{counts['failed_plays']} failed plays")
if counts["plays"] == 0:
    missed.append("nothing was played")
if counts["failed_rotations"] or counts["rotations"] < total // rotate_every:
    missed.append(f"{counts['rotations']} rotations of {total // rotate_every}, {counts['failed_rotations']} failed")
if abs(rss_change) > 10:
    missed.append(f"RSS changed {rss_change:+.1f} % after the warm-up (limit 10 %)")
# Flat: the keep-alive connections of the load are open all along; a few may be
# reopened at any moment, so 8 fds of slack.
if end[2] > warm[2] + 8:
    missed.append(f"fds grew from {warm[2]} to {end[2]}")
if serve_errors:
    missed.append(f"{serve_errors} ERROR lines in the service's log")
for m in missed:
    print(f"MISSED: {m}")
print("soak: " + ("FAILED" if missed else "passed"))
sys.exit(1 if missed else 0)
EOF
