#!/usr/bin/env bash
# Two latencies of `serve` in its local mode (embedded local IVS), each over several fresh starts:
#   1. start to first token: from spawning `serve` with no configuration file (the zero-config
#      defaults, but port 0 and a fresh temporary directory, so that runs never collide) to the
#      first 200 answer of POST /v1/token for the demo channel. A fresh start generates the dev
#      key, starts the local IVS, creates the demo channel and adopts the key.
#   2. rotation end to end: from sending POST /admin/v1/keys/rotate to holding a minted token that
#      the new key verifies (checked with `verify` after the clock stops), for a first rotation
#      2 s after start (the key-pair calls of start-up have used IVS's quota of 3 per second, which
#      the client keeps; by then it has refilled) and for a second one right after it (whose calls
#      wait for that quota).
# It prints min / median / max and each run, and writes timings-report.txt in the target directory (CARGO_TARGET_DIR or target/).
#
#   benches/timings.sh              # RUNS=5, release build (what the CHANGELOG quotes)
#   PROFILE=dev RUNS=2 benches/timings.sh   # a quick run of the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
# Where cargo builds: CARGO_TARGET_DIR when set, as cargo reads it.
target=${CARGO_TARGET_DIR:-target}
runs=${RUNS:-5}
profile=${PROFILE:-release}
case "$profile" in dev) out=debug ;; *) out=$profile ;; esac
cargo build --profile "$profile" --locked --bin ivs-playback-auth
command -v openssl >/dev/null || { echo "openssl is needed to check the new key's token" >&2; exit 1; }

python3 - "$target/$out/ivs-playback-auth" "$runs" "$profile" <<'PY' | tee "$target"/timings-report.txt
import hashlib, json, os, statistics, subprocess, sys, tempfile, time, urllib.error, urllib.request

binary, runs, profile = os.path.abspath(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
API_KEY, ADMIN = "timings-api-key-0123456789", "timings-admin-token-0123456789"


def post(url, body=None, headers=None):
    """POST JSON; (status, parsed body)."""
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Serve:
    """`serve` in a temporary directory; its banner's addresses."""

    def __init__(self, cwd, args, env):
        self.proc = subprocess.Popen([binary, "serve", *args], cwd=cwd, env={**os.environ, **env},
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.banner = {}

    def wait_for(self, name):
        while name not in self.banner:
            line = self.proc.stdout.readline()
            if not line:
                sys.exit(f"serve exited before printing {name!r} (exit {self.proc.wait()})")
            key, sep, value = line.partition(":")
            if sep:
                self.banner[key.strip()] = value.strip()
        return self.banner[name]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def first_token():
    with tempfile.TemporaryDirectory() as cwd:
        started = time.perf_counter()
        serve = Serve(cwd, [], {"IVS_AUTH__SERVER__LISTEN": "127.0.0.1:0", "RUST_LOG": "error"})
        try:
            api = serve.wait_for("token API")
            deadline = started + 60
            while True:
                try:
                    status, answer = post(f"{api}/v1/token", {"channel": "demo"})
                except OSError:
                    status, answer = None, None
                if status == 200:
                    return (time.perf_counter() - started) * 1000
                if time.perf_counter() > deadline:
                    sys.exit(f"no token within 60 s: {status} {answer}")
                time.sleep(0.002)
        finally:
            serve.stop()


def rotations():
    """(first, second) rotation end to end, in ms."""
    with tempfile.TemporaryDirectory() as cwd:
        config = os.path.join(cwd, "config.toml")
        with open(config, "w") as f:
            f.write(f"""[server]
listen = "127.0.0.1:0"
[keys]
dir = "{cwd}/keys"
[[api_keys]]
name = "timings"
sha256 = "{hashlib.sha256(API_KEY.encode()).hexdigest()}"
channels = ["*"]
rate_per_second = 1000
[viewer_ids]
secret = "timings-viewer-id-secret-0123456789abcdef"
[admin]
listen = "127.0.0.1:0"
token_sha256 = "{hashlib.sha256(ADMIN.encode()).hexdigest()}"
""")
        serve = Serve(cwd, ["--config", config], {"RUST_LOG": "error"})
        try:
            api, admin = serve.wait_for("token API"), serve.wait_for("admin API")
            serve.wait_for("signing key")
            # Start-up's key-pair calls spent the quota the client keeps (3/s): let it refill, as on
            # a service that has been running.
            time.sleep(2)
            took = []
            for _ in range(2):
                started = time.perf_counter()
                status, rotated = post(f"{admin}/admin/v1/keys/rotate",
                                       headers={"authorization": f"Bearer {ADMIN}"})
                if status != 200:
                    sys.exit(f"rotation answered {status}: {rotated}")
                status, minted = post(f"{api}/v1/token", {"channel": "demo", "viewer_id": "timer"},
                                      {"x-api-key": API_KEY})
                elapsed = (time.perf_counter() - started) * 1000
                if status != 200:
                    sys.exit(f"mint after the rotation answered {status}: {minted}")
                # The token must be the new key's: verified with its public key, off the clock.
                private = os.path.join(cwd, "keys", rotated["active"].replace(":", "") + ".pem")
                public = os.path.join(cwd, "new.pub.pem")
                subprocess.run(["openssl", "pkey", "-in", private, "-pubout", "-out", public], check=True)
                check = subprocess.run([binary, "verify", "--public-key", public, minted["token"]],
                                       capture_output=True, text=True)
                if check.returncode != 0:
                    sys.exit(f"the token after the rotation is not the new key's: {check.stdout}{check.stderr}")
                took.append(elapsed)
            return took
        finally:
            serve.stop()


def summary(name, values):
    ordered = " ".join(f"{v:.0f}" for v in values)
    return (f"{name}: min {min(values):.0f} ms, median {statistics.median(values):.0f} ms, "
            f"max {max(values):.0f} ms  (runs: {ordered})")


starts = [first_token() for _ in range(runs)]
pairs = [rotations() for _ in range(runs)]
print(f"serve, local mode, {profile} build, {runs} fresh starts each, on this host ({os.cpu_count()} CPUs)")
print(summary("start to first token           ", starts))
print(summary("first rotation (2 s after start)", [p[0] for p in pairs]))
print(summary("second rotation right after    ", [p[1] for p in pairs]))
PY
