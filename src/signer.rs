//! The hot path: claims in, IVS playback token out.
//!
//! The header never changes, so its base64url form is a constant; the claims
//! are serialised into a per-thread buffer that is reused; the token is built
//! in one `String` whose prefix is the signing input. The active key is read
//! from the shared key set without a lock. What is left is the ECDSA P-384
//! signature itself, nearly all of the cost (`benches/signing.rs` compares
//! the two).

use std::cell::RefCell;
use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::claims::{ExpiresAt, PlaybackClaims, SHORT_LIVED_LIMIT};
use crate::error::Error;
use crate::keys::Fingerprint;
use crate::keyset::{KeySet, SharedKeySet};
use crate::signing_key::SigningKey;

/// The only header IVS documents, `{"alg":"ES384","typ":"JWT"}`, base64url.
pub(crate) const HEADER_B64: &str = "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCJ9";

/// A signed playback token, with the key that signed it.
///
/// The text is a JWS compact token, `header.payload.signature` in base64url
/// without padding, with the header `{"alg":"ES384","typ":"JWT"}` and a raw
/// 96-byte ES384 signature (private-channels-generate-tokens;
/// `docs/ivs-facts.md` §1). Its characters (`A-Z a-z 0-9 - _ .`) need no
/// escaping in a URL: append it as `playbackUrl + "?token=" + token`, or
/// hand it to the player's token setter.
///
/// A token is a bearer credential until it expires: `Display`,
/// [`as_str`](Self::as_str) and [`into_string`](Self::into_string) give the
/// whole token (for the player, not for logs); `Debug` shows only the
/// fingerprint and `exp`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    jwt: String,
    fingerprint: Fingerprint,
    expires_at: ExpiresAt,
}

impl Token {
    /// The compact JWS, `header.payload.signature`, ASCII.
    pub fn as_str(&self) -> &str {
        &self.jwt
    }

    /// The compact JWS, owned.
    pub fn into_string(self) -> String {
        self.jwt
    }

    /// The fingerprint of the key that signed it (with a [`SharedKeySet`],
    /// the key that was active at that moment).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Its `exp`, Unix seconds: a cache of shareable tokens should hand a
    /// token out only well before it.
    pub fn expires_at(&self) -> ExpiresAt {
        self.expires_at
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.jwt)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A token is a bearer credential until it expires: show whose it is,
        // not the token.
        f.debug_struct("Token")
            .field("fingerprint", &self.fingerprint)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Reused per thread so that serialising claims allocates nothing.
    static CLAIMS_JSON: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Signs IVS playback tokens with the active key of a key set.
///
/// `Send + Sync`: share one behind an `Arc` (or clone it, which is cheap) and
/// sign from every thread; no lock is taken. Signing is synchronous and
/// CPU-bound: one ECDSA P-384 signature and no I/O (`benches/signing.rs`
/// measures it per backend).
/// `Debug` shows the keys' fingerprints, never their secrets.
#[derive(Clone, Debug)]
pub struct TokenSigner {
    keys: SharedKeySet,
}

impl TokenSigner {
    /// A signer with one key. To rotate keys later without a restart, use
    /// [`from_shared`](Self::from_shared) (or rotate through
    /// [`key_set`](Self::key_set)).
    pub fn new(key: SigningKey) -> Self {
        Self {
            keys: SharedKeySet::new(KeySet::new(key)),
        }
    }

    /// A signer that follows a shared key set: when the set is swapped (a
    /// rotation), the next token is signed with the new active key.
    pub fn from_shared(keys: SharedKeySet) -> Self {
        Self { keys }
    }

    /// The shared key set the signer follows: rotating it (for example with
    /// [`SharedKeySet::rotate_to`]) changes the key of every clone.
    pub fn key_set(&self) -> &SharedKeySet {
        &self.keys
    }

    /// Signs claims now, with the active key.
    ///
    /// # Errors
    ///
    /// As [`sign_at`](Self::sign_at).
    pub fn sign(&self, claims: &PlaybackClaims) -> Result<Token, Error> {
        self.sign_at(claims, SystemTime::now())
    }

    /// Signs claims as of `now`. Claims built a while ago are checked again:
    /// a token IVS would refuse is never signed. Records `exp` in the key's
    /// [`max_exp_signed`](SigningKey::max_exp_signed). Never panics.
    ///
    /// # Errors
    ///
    /// - [`Error::Claim`] (claim `exp`) when `exp` is not after `now`, or,
    ///   for a token with a viewer id or a single-use UUID, more than 10
    ///   minutes after it ([`SHORT_LIVED_LIMIT`], without the builder's
    ///   clock-skew margin: that margin was spent when the claims were
    ///   built);
    /// - [`Error::Signing`] if the backend fails to sign, and
    ///   [`Error::Internal`] if the claims cannot be encoded; neither happens
    ///   with a key this crate prepared.
    pub fn sign_at(&self, claims: &PlaybackClaims, now: SystemTime) -> Result<Token, Error> {
        claims.check_lifetime(now, SHORT_LIVED_LIMIT)?;
        let set = self.keys.load();
        let key = set.active();
        let jwt = CLAIMS_JSON.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => encode_and_sign(key, claims, &mut buf),
            // Only reachable if signing re-entered itself on this thread.
            Err(_) => encode_and_sign(key, claims, &mut Vec::with_capacity(512)),
        })?;
        let exp = claims.expires_at();
        key.note_signed(exp.unix_seconds());
        Ok(Token {
            jwt,
            fingerprint: *key.fingerprint(),
            expires_at: exp,
        })
    }
}

fn encode_and_sign(
    key: &SigningKey,
    claims: &PlaybackClaims,
    json: &mut Vec<u8>,
) -> Result<String, Error> {
    json.clear();
    serde_json::to_writer(&mut *json, claims)
        .map_err(|_| Error::Internal("JSON encoding of the claims"))?;
    let payload_len = json.len().div_ceil(3) * 4;
    let mut jwt = String::with_capacity(HEADER_B64.len() + 1 + payload_len + 1 + 128);
    jwt.push_str(HEADER_B64);
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(&json[..], &mut jwt);
    let signature = key.sign_raw(jwt.as_bytes())?;
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
    Ok(jwt)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::claims::{ChannelArn, ViewerId};
    use crate::keys::PrivateKey;
    use crate::signing_key::{Backend, SIGNATURE_LEN};

    fn claims(now: SystemTime) -> PlaybackClaims {
        PlaybackClaims::builder(
            ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/abcd").unwrap(),
        )
        .viewer_id(ViewerId::parse("v1").unwrap())
        .expires_in(Duration::from_secs(300))
        .build_at(now)
        .unwrap()
    }

    #[test]
    fn header_constant_is_the_documented_header() {
        assert_eq!(
            URL_SAFE_NO_PAD.decode(HEADER_B64).unwrap(),
            br#"{"alg":"ES384","typ":"JWT"}"#
        );
    }

    #[test]
    fn signs_with_every_backend_and_tracks_max_exp() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let private = PrivateKey::generate().unwrap();
        for &backend in Backend::ALL {
            let signer = TokenSigner::new(SigningKey::with_backend(&private, backend).unwrap());
            let token = signer.sign_at(&claims(now), now).unwrap();
            let parts: Vec<&str> = token.as_str().split('.').collect();
            assert_eq!(parts.len(), 3);
            assert_eq!(parts[0], HEADER_B64);
            assert_eq!(
                URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(),
                SIGNATURE_LEN
            );
            assert_eq!(token.fingerprint(), private.fingerprint());
            let active = signer.key_set().load();
            assert_eq!(
                active.active().max_exp_signed().unwrap().unix_seconds(),
                1_800_000_300
            );
        }
    }

    #[test]
    fn refuses_claims_that_expired_since_they_were_built() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let signer = TokenSigner::new(SigningKey::new(&PrivateKey::generate().unwrap()).unwrap());
        let err = signer
            .sign_at(&claims(now), now + Duration::from_secs(301))
            .unwrap_err();
        assert!(matches!(err, Error::Claim(_)), "{err}");
    }

    #[test]
    fn debug_hides_key_and_token() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let key = SigningKey::new(&PrivateKey::generate().unwrap()).unwrap();
        assert!(format!("{key:?}").contains("<redacted>"));
        let signer = TokenSigner::new(key);
        let token = signer.sign_at(&claims(now), now).unwrap();
        assert!(!format!("{token:?}").contains(HEADER_B64));
    }

    #[test]
    fn signer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TokenSigner>();
        assert_send_sync::<SigningKey>();
    }
}
