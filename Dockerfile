# syntax=docker/dockerfile:1
#
# The token service in a container. With no configuration it is the
# zero-config demo (embedded local IVS, a dev key, a demo channel):
#
#   docker build -t ivs-playback-auth .
#   docker run --rm -p 8080:8080 -v ivs-keys:/keys ivs-playback-auth
#
# and the curls it prints work from the host. Podman: `podman build --format
# docker` (the OCI image format has no HEALTHCHECK). Configuration: the
# IVS_AUTH__SECTION__KEY environment variables, or a file mounted and named
# with `serve --config FILE` (README, "Deploy").

ARG RUST_VERSION=1.95

# cargo-chef turns the manifests into a recipe of the dependencies alone, so
# that they are built in a layer of their own, rebuilt only when Cargo.toml
# or Cargo.lock change, not at every change of our sources.
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --bin ivs-playback-auth --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The registry (downloaded crates) in a cache shared by builds; the target
# directory stays in the layers, which is what keeps the dependencies built.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo chef cook --release --locked --bin ivs-playback-auth --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --bin ivs-playback-auth \
 && install -D -m 0755 target/release/ivs-playback-auth /out/ivs-playback-auth

FROM docker.io/library/debian:bookworm-slim
# ca-certificates: aws mode talks to IVS (and viewer_jwt.jwks_url to the
# identity provider) over HTTPS. Versions are not pinned: bookworm's security
# updates are what the image should get at each build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ivs \
 && useradd --system --uid 10001 --gid ivs --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin ivs \
 && install -d -o ivs -g ivs -m 0700 /keys
COPY --from=builder /out/ivs-playback-auth /usr/local/bin/ivs-playback-auth

# The listener on every interface of the container, the key store in the
# volume, and the URL the host reaches the service at (with `-p 8080:8080`):
# printed in the banner's curls, and the base of the local IVS's playback
# URLs (the token API's listener serves the local IVS's playback edge too, so
# one published port is enough). Publishing another host port? Set
# IVS_AUTH__SERVER__PUBLIC_URL to match.
ENV IVS_AUTH__SERVER__LISTEN=0.0.0.0:8080 \
    IVS_AUTH__SERVER__PUBLIC_URL=http://127.0.0.1:8080 \
    IVS_AUTH__KEYS__DIR=/keys
# Private keys and the rotation state: keep them across restarts and
# upgrades. A named volume starts as this directory (uid 10001, mode 0700); a
# host directory must be owned by uid 10001 and closed to group and others.
VOLUME ["/keys"]
USER 10001:10001
EXPOSE 8080
# `serve` ends on SIGTERM (it handles it, also as PID 1), letting in-flight
# requests finish within server.shutdown_grace_seconds.
STOPSIGNAL SIGTERM
# GET /readyz over loopback, by the binary itself (the image has no curl):
# it reads the same configuration as `serve` to find the port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["ivs-playback-auth", "healthcheck"]
ENTRYPOINT ["ivs-playback-auth"]
CMD ["serve"]
