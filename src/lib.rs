//! Amazon IVS playback-authorization tokens for private channels: a signer
//! library for the web backend that decides who may watch.
//!
//! # What a playback token is, and where it goes
//!
//! A channel created with `authorized: true` is private: IVS plays it only
//! for a request that carries a playback token. The token is a JWT in JWS
//! compact form, `base64url(header).base64url(claims).base64url(signature)`,
//! with the header `{"alg":"ES384","typ":"JWT"}` and an ECDSA P-384
//! signature by a key whose public half was imported into IVS as a
//! playback key pair. Your backend mints one after its own login and
//! entitlement checks, and the player gets it in one of two ways:
//!
//! - appended to the channel's playback URL (the `playbackUrl` that IVS's
//!   `GetChannel` returns): `playbackUrl + "?token=" + token`;
//! - or given to the IVS player SDK's token setter, with the plain URL.
//!
//! IVS checks the token when playback starts, not during the stream. A
//! token IVS refuses shows in the IVS Web Player as `ErrorAuthorization`
//! (code 7, `invalid_playback_auth_token`); [`Verifier`] says why.
//!
//! Sources, cited by the items of this crate: the IVS Low-Latency User
//! Guide, pages
//! [private-channels-generate-tokens](https://docs.aws.amazon.com/ivs/latest/LowLatencyUserGuide/private-channels-generate-tokens.html)
//! (the token and its claims),
//! [private-channels-create-key](https://docs.aws.amazon.com/ivs/latest/LowLatencyUserGuide/private-channels-create-key.html)
//! (the key pair),
//! [private-channels-delete-keys](https://docs.aws.amazon.com/ivs/latest/LowLatencyUserGuide/private-channels-delete-keys.html)
//! (deleting one),
//! [private-channels-start-session-revocation](https://docs.aws.amazon.com/ivs/latest/LowLatencyUserGuide/private-channels-start-session-revocation.html)
//! (viewer-session revocation) and
//! [service-quotas](https://docs.aws.amazon.com/ivs/latest/LowLatencyUserGuide/service-quotas.html);
//! the AWS service model of IVS (`2020-07-14`) for patterns and lengths.
//! The repository's `docs/ivs-facts.md` collects each fact with its source
//! and marks what IVS leaves undocumented; "facts §1" below means its
//! section 1.
//!
//! # Minting tokens, step by step
//!
//! 1. **At start-up, load the private key once** with
//!    [`PrivateKey::read_file`] (or [`PrivateKey::from_pem`] for a key from
//!    a secret store) and prepare it with [`SigningKey::new`]. Parsing a key
//!    costs far more than a signature: never do it per request.
//! 2. **Make one [`TokenSigner`]** and share it (it is `Send + Sync`, and
//!    cheap to clone).
//! 3. **Per viewer, build the claims** with [`PlaybackClaims::builder`]:
//!    the channel's [`ChannelArn`], an expiry, and what this viewer may do.
//!    [`build`](PlaybackClaimsBuilder::build) refuses any claim, or
//!    combination of claims, that IVS would refuse.
//! 4. **[`sign`](TokenSigner::sign)** them into a [`Token`] and hand its
//!    text to the player.
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
//!
//! A token bound to one viewer, playable only from your site's origins, at
//! most HD:
//!
//! ```
//! use std::time::Duration;
//! use ivs_playback_auth::{
//!     AllowedOrigins, ChannelArn, MaximumResolution, PlaybackClaims, PrivateKey, SigningKey,
//!     TokenSigner, ViewerIdHasher, ViewerSessionVersion,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let key = PrivateKey::generate()?;
//! # let viewer_id_secret = [7u8; 32];
//! # let playback_url = "https://a1b2c3d4e5f6.us-west-2.playback.live-video.net/api/video/v1/us-west-2.123456789012.channel.abcdEFGH1234.m3u8";
//! // At start-up: the key, and the secret (32 random bytes or more, from
//! // your secret store, the same on every replica) for viewer ids.
//! let signer = TokenSigner::new(SigningKey::new(&key)?);
//! let viewer_ids = ViewerIdHasher::new(&viewer_id_secret)?;
//! let origins = AllowedOrigins::parse("https://www.example.com,https://*.example.org")?;
//!
//! // Per request, after your own login check:
//! let channel = ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234")?;
//! let claims = PlaybackClaims::builder(channel)
//!     .viewer_id(viewer_ids.viewer_id("user-42"))
//!     .viewer_session_version(ViewerSessionVersion::new(1)?)
//!     .allowed_origins(origins.clone())
//!     .strict_origin_enforcement(true)
//!     .maximum_resolution(MaximumResolution::Hd)
//!     // A viewer id caps the lifetime at 10 minutes.
//!     .expires_in(Duration::from_secs(300))
//!     .build()?;
//! let token = signer.sign(&claims)?;
//! let url = format!("{playback_url}?token={token}");
//! # assert!(url.contains("?token=ey"));
//! # Ok(())
//! # }
//! ```
//!
//! `examples/mint_plain.rs` is the same as one function any framework can
//! call; `examples/axum-backend` is a complete axum service that mints
//! behind its own login, with the crate as `default-features = false`.
//!
//! # Key formats
//!
//! IVS playback keys are ECDSA P-384 (secp384r1) key pairs. Private keys are
//! read as SEC1 (`BEGIN EC PRIVATE KEY`, what the IVS docs' `openssl ecparam
//! -name secp384r1 -genkey -noout` writes, with or without its `EC
//! PARAMETERS` block) or PKCS#8 (`BEGIN PRIVATE KEY`), PEM or DER, the curve
//! named or given explicitly, in every PEM layout OpenSSL reads. Encrypted
//! keys, other curves and other algorithms are refused with a
//! [`KeyErrorKind`] and a message that says how to fix the file.
//! [`PrivateKey::generate`] makes a new key; [`PublicKey::to_pem`] gives the
//! `BEGIN PUBLIC KEY` text that IVS's `ImportPlaybackKeyPair` takes, and
//! [`Fingerprint`] is the fingerprint IVS shows for it, so a private key can
//! be matched to its key pair without a call to AWS.
//!
//! # Choosing a lifetime (`exp`)
//!
//! IVS checks `exp` only when playback starts: a stream that started before
//! `exp` plays on after it (facts §1). So `exp` bounds how long a token, or
//! a URL that leaked with it, can *start* playback, not how long anyone
//! watches. Mint the token right before the player loads and keep it short:
//! a few minutes covers a slow page load. Two rules of IVS shape the choice:
//!
//! - a token with `aws:viewer-id` or `aws:single-use-uuid` may expire at
//!   most 10 minutes after it is issued ([`claims::SHORT_LIVED_LIMIT`]; the
//!   builder keeps [`claims::DEFAULT_CLOCK_SKEW`] below it, so 595 s is the
//!   longest `expires_in` it takes by default);
//! - a token without either may live longer and be shared between viewers
//!   ([`PlaybackClaims::is_shareable`]), for example cached per channel for
//!   a minute.
//!
//! To stop a session that is already playing, `exp` does nothing: revoke
//! the viewer's sessions with IVS's `StartViewerSessionRevocation`, which
//! needs the token to carry a viewer id.
//!
//! # Viewer ids
//!
//! `aws:viewer-id` names the viewer so that IVS can revoke their sessions;
//! IVS forbids personal data in it and allows 1 to 40 characters.
//! [`ViewerIdHasher`] derives a stable, opaque 40-character id from your own
//! user id with a keyed hash (HMAC-SHA-256), so no e-mail address or user
//! name reaches IVS; keep its secret with your other secrets. A revocation
//! ends the viewer's sessions whose `aws:viewer-session-version` is at most
//! the one it names (facts §5): mint later tokens with a higher
//! [`ViewerSessionVersion`] (a counter, or the Unix seconds of the
//! revocation) to keep them out of its reach.
//!
//! # Rotating keys
//!
//! IVS offers no key rotation and allows 3 key pairs per region; the
//! procedure (facts §6) is: import the new public key, check the fingerprint
//! IVS returns, switch signing to it, keep the old key pair in IVS until the
//! last token it signed has expired, then delete it. A [`SharedKeySet`]
//! does the switch inside the process: every [`TokenSigner`] made with
//! [`TokenSigner::from_shared`] signs with the new key from its next token,
//! with no lock on the signing path, and the old key stays as a retiring
//! key whose [`max_exp_signed`](SigningKey::max_exp_signed) says when IVS
//! may forget it.
//!
//! ```
//! use std::time::Duration;
//! use ivs_playback_auth::{ChannelArn, KeySet, PlaybackClaims, PrivateKey, SharedKeySet, SigningKey, TokenSigner};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let old = PrivateKey::generate()?;
//! # let new = PrivateKey::generate()?;
//! let keys = SharedKeySet::new(KeySet::new(SigningKey::new(&old)?));
//! let signer = TokenSigner::from_shared(keys.clone());
//!
//! // Once IVS has imported `new` and returned its fingerprint:
//! keys.rotate_to(SigningKey::new(&new)?);
//! let claims = PlaybackClaims::builder(ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234")?)
//!     .expires_in(Duration::from_secs(300))
//!     .build()?;
//! assert_eq!(signer.sign(&claims)?.fingerprint(), new.fingerprint());
//!
//! // Once the old key's last token has expired (plus a margin for skew),
//! // delete its key pair from IVS, then:
//! assert!(keys.remove(old.fingerprint()));
//! # Ok(())
//! # }
//! ```
//!
//! # Verifying tokens
//!
//! [`Verifier`] checks a token the way IVS does (signature by any imported
//! key, header, `exp` and the 10-minute rule, every claim's value, the
//! channel) and returns a [`Rejection`] that says which check failed. Use
//! it in tests, and to explain a player's `ErrorAuthorization`; it is not
//! needed to mint tokens, and IVS remains the judge.
//!
//! # Features
//!
//! - `aws-lc-rs` (default): signs and verifies with AWS-LC, the fastest
//!   backend here; needs a C toolchain.
//! - without it, the pure-Rust RustCrypto `p384` backend signs (always
//!   compiled, see [`Backend`]): for targets where C cannot be built (WASM,
//!   edge runtimes). Tokens are the same to IVS.
//! - `service` (default): the binary's CLI, HTTP token service and local
//!   IVS, with tokio, axum and the AWS SDK. Not an API of this library:
//!   its modules are hidden from these docs and carry no semver promise.
//!
//! A backend that embeds the signer turns the defaults off:
//!
//! ```toml
//! [dependencies]
//! ivs-playback-auth = { version = "0.1", default-features = false, features = ["aws-lc-rs"] }
//! ```
//!
//! The signer then pulls in no async runtime, web framework or AWS SDK, and
//! does no I/O but reading and writing key files.
//!
//! # Layout
//!
//! - [`claims`] (one file per claim type): the eight IVS claims as types
//!   that only hold values IVS accepts ([`ChannelArn`], [`ExpiresAt`],
//!   [`AllowedOrigins`], [`ViewerId`], ...), and [`PlaybackClaims::builder`]
//!   that checks how they combine; [`claims::names`] and the limits are
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
//! - `error`: [`Error`], with [`ClaimError`] and [`KeyError`] for callers
//!   that match on what went wrong.
//!
//! With the `service` feature, `service` (the token service in rooms: `http`,
//! `mint`, `control`, `config`, `local_ivs`; its module docs give the
//! direction of imports, which `tools/rooms.py` checks) and `cli` (the
//! binary's command line).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(rustdoc::missing_crate_level_docs)]

// The signer's modules: every fallible public function says when it fails,
// and where it can panic (the service's modules are not held to it: they
// are no API).
#[warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
pub mod claims;
#[warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
mod error;
mod fsutil;
#[warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
mod keys;
#[warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
mod keyset;
#[warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
mod signer;
#[warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
mod signing_key;
#[warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
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
