//! Amazon IVS playback-authorization tokens for private channels.
//!
//! # Layout
//!
//! The signer (no async runtime, no web or AWS crate):
//! - `claims` (one file per claim type): the eight IVS claims as types that
//!   only hold values IVS accepts ([`ChannelArn`], [`ExpiresAt`],
//!   [`AllowedOrigins`], [`ViewerId`], ...), and [`PlaybackClaims::builder`]
//!   that checks how they combine. Its [`claims::names`] and limits are
//!   public.
//! - `keys`: P-384 keys in and out (SEC1 and PKCS#8, PEM and DER), key
//!   generation and the IVS [`Fingerprint`].
//! - `signing_key`: a key made ready to sign ([`SigningKey`]) by a
//!   [`Backend`] (AWS-LC or pure-Rust p384).
//! - `keyset`: the active key and the retiring keys of a rotation
//!   ([`KeySet`]), swapped atomically without a lock on the signing path
//!   ([`SharedKeySet`]).
//! - `signer`: the hot path ([`TokenSigner`]), ES384 over a pre-encoded
//!   header and reused buffers.
//! - `verify`: [`Verifier`] checks a token the way IVS does; a [`Rejection`]
//!   says why it fails.
//!
//! With the `service` feature (the binary):
//! - `service`: the token service in rooms: `http` (routes, auth, handlers,
//!   errors), `mint` (entitlements, limits, channel cache, deny-list,
//!   signing), `control` (IVS client, key store, rotation), `config`, and
//!   `local_ivs` (IVS's control plane and playback edge on loopback). See
//!   its module docs for the direction of imports (`tools/rooms.py`
//!   checks it).
//! - `cli`: the command line of the binary.
//!
//! The signer does no I/O but reading and writing key files, and needs no
//! async runtime: embed it with `default-features = false` (add the
//! `aws-lc-rs` feature for the fast backend).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use ivs_playback_auth::{ChannelArn, PlaybackClaims, PrivateKey, SigningKey, TokenSigner, Verifier};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = PrivateKey::generate()?; // or PrivateKey::read_file("keys/playback-key.pem")?
//! let signer = TokenSigner::new(SigningKey::new(&key)?);
//!
//! let channel = ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234")?;
//! let claims = PlaybackClaims::builder(channel.clone())
//!     .expires_in(Duration::from_secs(300))
//!     .build()?;
//! let token = signer.sign(&claims)?;
//! // playback_url + "?token=" + token
//!
//! let verified = Verifier::new([key.public_key()]).expect_channel(channel).verify(token.as_str())?;
//! assert_eq!(verified.fingerprint(), key.fingerprint());
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod claims;
mod error;
mod fsutil;
mod keys;
mod keyset;
mod signer;
mod signing_key;
mod verify;

#[cfg(feature = "service")]
#[doc(hidden)]
pub mod cli;
// The binary's rooms, public only so that the integration tests can drive
// them: not an API, no semver promise, and hidden from the docs.
#[cfg(feature = "service")]
// Its module docs link the private rooms they describe, for readers of
// `cargo doc --document-private-items`.
#[doc(hidden)]
#[allow(rustdoc::private_intra_doc_links, rustdoc::redundant_explicit_links)]
pub mod service;

// The fuzz targets' way in (`fuzz/`); not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use crate::claims::{
    AllowedOrigins, ChannelArn, ExpiresAt, MaximumResolution, Origin, PlaybackClaims,
    PlaybackClaimsBuilder, ViewerId, ViewerIdHasher, ViewerSessionVersion,
};
pub use crate::error::{ClaimError, Error, KeyError, KeyErrorKind};
pub use crate::keys::{Fingerprint, PrivateKey, PublicKey};
pub use crate::keyset::{KeySet, SharedKeySet};
pub use crate::signer::{Token, TokenSigner};
pub use crate::signing_key::{Backend, SigningKey};
pub use crate::verify::{Rejection, VerifiedToken, Verifier};
