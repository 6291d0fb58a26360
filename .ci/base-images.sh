#!/usr/bin/env bash
# Local stand-ins for the two registry images the Dockerfile starts FROM,
# for machines that cannot pull from a container registry (this CI). They
# carry the registry images' names, so `podman build --pull=never` uses them;
# the Dockerfile knows nothing of this script, and on a machine that can pull
# it is not needed.
#
#   debian:bookworm-slim       debootstrap --variant=minbase bookworm
#   rust:RUST-slim-bookworm    the same, plus what the official image adds
#                              (gcc, libc6-dev, ca-certificates) and the Rust
#                              toolchain installed on this machine (the Rust
#                              distribution server is not reachable here)
#
# Both also trust the extra certificate authorities of this machine's trust
# store (/usr/local/share/ca-certificates): without them a build step in a
# container fails to reach the package registries ("self-signed certificate
# in certificate chain") behind this network's TLS-inspecting egress.
#
# Usage: .ci/base-images.sh   (as root; does nothing for an image that exists)
set -euo pipefail
cd "$(dirname "$0")/.."

debian_image=docker.io/library/debian:bookworm-slim
rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)
rust_image=docker.io/library/rust:${rust_version}-slim-bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=${BASE_IMAGES_WORK:-/var/tmp/ivs-base-images}

for image in "$debian_image" "$rust_image"; do
  grep -q "^FROM ${image#docker.io/library/}\|^FROM docker.io/library/${image#docker.io/library/}" \
    <(sed "s/\${RUST_VERSION}/$rust_version/" Dockerfile) || {
    echo "the Dockerfile no longer starts FROM $image: update .ci/base-images.sh" >&2
    exit 1
  }
done

# The toolchain copied in must be the version the tag claims.
toolchain=$(rustc --print sysroot)
have=$(rustc --version | cut -d' ' -f2)
case $have in
  "$rust_version" | "$rust_version".*) ;;
  *) echo "this machine's rustc is $have; the Dockerfile asks for rust:$rust_version" >&2; exit 1 ;;
esac

minbase() { # DIR: a minimal bookworm with this machine's extra CAs
  local dir=$1
  rm -rf "$dir"
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1 ||
    { tail -20 "$dir.log" >&2; exit 1; }
  # What makes the registry image slim (its apt and dpkg settings, in
  # debuerreotype's words): no package caches or lists kept, no
  # documentation, manual pages or translations installed.
  cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
  echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$dir/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$dir/etc/apt/apt.conf.d/docker-autoremove-suggests"
  mkdir -p "$dir/etc/dpkg/dpkg.cfg.d"
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
CONF
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$dir"/usr/share/{groff,info,linda,lintian,locale,man}/*
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
  mkdir -p "$dir/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/" 2>/dev/null || true
}

in_root() { # DIR COMMAND...: run in the root, with /proc and the host's DNS
  local dir=$1; shift
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  mount -t proc proc "$dir/proc"
  local rc=0
  chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@" || rc=$?
  umount "$dir/proc"
  : >"$dir/etc/resolv.conf"
  return $rc
}

mkdir -p "$work"
if ! podman image exists "$debian_image"; then
  echo "making $debian_image"
  minbase "$work/debian"
  tar -C "$work/debian" -c . | podman import --quiet \
    --change 'CMD ["bash"]' - "$debian_image" >/dev/null
  rm -rf "$work/debian"
fi

if ! podman image exists "$rust_image"; then
  echo "making $rust_image (Rust $have from $toolchain)"
  root=$work/rust
  minbase "$root"
  in_root "$root" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends \
    ca-certificates gcc libc6-dev >/dev/null && update-ca-certificates >/dev/null && \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb'
  # The official image's layout: the toolchain under /usr/local/rustup, the
  # commands in /usr/local/cargo/bin (here links into the toolchain, with no
  # rustup: the Dockerfile does not call it). The documentation is left out.
  dest=$root/usr/local/rustup/toolchains/$have-x86_64-unknown-linux-gnu
  mkdir -p "$dest" "$root/usr/local/cargo/bin"
  tar -C "$toolchain" --exclude=./share/doc -c . | tar -C "$dest" -x
  for tool in cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt; do
    [ -e "$dest/bin/$tool" ] && ln -s "../../rustup/toolchains/$have-x86_64-unknown-linux-gnu/bin/$tool" "$root/usr/local/cargo/bin/$tool"
  done
  tar -C "$root" -c . | podman import --quiet \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV RUST_VERSION=$have" \
    --change 'CMD ["bash"]' - "$rust_image" >/dev/null
  podman run --rm --network=host --pull=never "$rust_image" cargo --version
  rm -rf "$root"
fi
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'debian|rust'
