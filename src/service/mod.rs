//! Everything that needs the `service` feature: the token service, the
//! control module and the local IVS, in rooms whose imports run one way.
//!
//! ```text
//! app.rs (wiring) ──▶ http/ ──▶ mint/      (decisions, caches; IVS only through
//!                         │                 its ChannelSource trait)
//!                         └──▶ control/   (IVS client, key store, rotation)
//! app.rs makes control's IVS client the mint's ChannelSource. mint/ and
//! control/ never import each other: they share channel.rs, ledger.rs,
//! origins.rs, outbound.rs and config.rs. tools/rooms.py checks this.
//! ```
//!
//! - [`http`](self::http): routes, authentication (headers → caller), the
//!   token and admin handlers, the mapping of errors to JSON, OpenAPI;
//! - [`mint`]: who may get a token for what, and the token: network rules,
//!   entitlements, rate limits, viewer JWTs, the channel cache (channels
//!   with the playback restriction policies they name, applied at mint
//!   time), the viewer deny-list, signing and the shareable-token cache. No HTTP types, and
//!   nothing of `control` (IVS only through the channel cache's seam, for an
//!   entitled caller's miss, within a small budget);
//! - [`control`]: the IVS client, the key store, key rotation;
//! - `config`: every section of the configuration, validated at start-up;
//! - [`channel`]: a channel as IVS describes it and as callers name it;
//! - `ledger`: the count of signed tokens per key (written by the mint,
//!   read by rotation);
//! - `log_writer`: log lines to stderr in batches, from a thread of their
//!   own (nothing dropped; lost writes counted);
//! - `origins`: origin lists as configuration and requests write them;
//! - `outbound`: the HTTP clients of the calls the service makes (canary,
//!   JWKS), with the certificate authorities each needs;
//! - `server`: the HTTP/1.1 server under every listener (header and write
//!   deadlines, connection limits overall and per client address, TLS);
//! - `app`: `Application::build(config)` → bound listeners; `run(shutdown)`;
//! - [`local_ivs`]: IVS's control plane and playback edge on loopback.

pub(crate) mod app;
pub mod channel;
pub(crate) mod config;
pub mod control;
pub(crate) mod http;
pub(crate) mod ledger;
pub mod local_ivs;
pub(crate) mod log_writer;
pub mod mint;
pub(crate) mod origins;
pub(crate) mod outbound;
pub(crate) mod server;

pub(crate) use self::app::{Application, StartupInfo, coordination_table, key_control};
