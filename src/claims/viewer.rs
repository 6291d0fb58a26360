//! `ViewerId`, `ViewerSessionVersion` and `ViewerIdHasher`: who watches, and
//! which of their sessions a revocation ends.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{MAX_VIEWER_SESSION_VERSION, VIEWER_ID_MAX_LEN, names};
use crate::error::{ClaimError, Error};

/// `aws:viewer-id`: 1 to 40 characters identifying a viewer, with no
/// personal data (IVS's rule, private-channels-generate-tokens). Use
/// [`ViewerIdHasher`] to derive one from an application user id.
///
/// A viewer id is what viewer-session revocation targets
/// (private-channels-start-session-revocation), and a token that carries one
/// may expire at most 10 minutes after it is issued
/// ([`SHORT_LIVED_LIMIT`](super::SHORT_LIVED_LIMIT)).
///
/// The length is counted in characters (Unicode scalar values), not bytes:
/// the IVS docs say "1-40 characters", and the AWS service model gives
/// `ViewerId` (the revocation API's member) `min 1, max 40`, which Smithy's
/// length trait counts in Unicode scalar values. One unit everywhere, so a
/// viewer id the token may carry is one the revocation API takes. Control
/// characters are refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewerId(Box<str>);

impl ViewerId {
    /// Takes a viewer id as it is (no trimming). This cannot tell personal
    /// data from an opaque id: that is the caller's duty, which
    /// [`ViewerIdHasher`] discharges.
    ///
    /// # Errors
    ///
    /// [`ClaimError`] for `aws:viewer-id` when `id` is empty, longer than 40
    /// characters, or contains a control character.
    pub fn parse(id: &str) -> Result<Self, ClaimError> {
        let chars = id.chars().count();
        if chars == 0 || chars > VIEWER_ID_MAX_LEN {
            return Err(ClaimError::new(
                names::VIEWER_ID,
                format!(
                    "must be 1 to {VIEWER_ID_MAX_LEN} characters (Unicode characters, not bytes), got {chars}"
                ),
            ));
        }
        if id.chars().any(char::is_control) {
            return Err(ClaimError::new(
                names::VIEWER_ID,
                "must not contain control characters",
            ));
        }
        Ok(Self(id.into()))
    }

    /// The id as text, as it goes into the token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Same as [`ViewerId::parse`].
impl FromStr for ViewerId {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ViewerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `aws:viewer-session-version`: 0 to 2^31-1, so that a revocation (whose
/// filter is a 32-bit signed integer) can always reach it. Unix seconds fit
/// (until 2038).
///
/// IVS defines the claim as a 64-bit integer, default 0, meaningful only
/// with `aws:viewer-id`: a viewer-session revocation ends the viewer's
/// sessions whose version is at most the one it names
/// (private-channels-start-session-revocation; `docs/ivs-facts.md` §1, §5).
/// The builder refuses a version without a viewer id. `Default` is 0, IVS's
/// default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewerSessionVersion(pub(super) u32);

impl ViewerSessionVersion {
    /// A version in `0..=2^31-1`
    /// ([`MAX_VIEWER_SESSION_VERSION`](super::MAX_VIEWER_SESSION_VERSION)).
    ///
    /// # Errors
    ///
    /// [`ClaimError`] for `aws:viewer-session-version` when `version` is
    /// above 2^31-1: IVS would take it, but no revocation could ever reach
    /// it.
    pub fn new(version: u64) -> Result<Self, ClaimError> {
        u32::try_from(version)
            .ok()
            .filter(|&v| v <= MAX_VIEWER_SESSION_VERSION)
            .map(Self)
            .ok_or_else(|| {
                ClaimError::new(
                    names::VIEWER_SESSION_VERSION,
                    format!(
                        "must be 0 to {MAX_VIEWER_SESSION_VERSION}, got {version}; a larger version can never be revoked (the revocation filter is a 32-bit integer)"
                    ),
                )
            })
    }

    /// The version, at most 2^31-1.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Parses a decimal whole number.
///
/// # Errors
///
/// [`ClaimError`] for `aws:viewer-session-version` when the text is not a
/// non-negative decimal integer, or is above 2^31-1.
impl FromStr for ViewerSessionVersion {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.parse::<u64>().map_err(|_| {
            ClaimError::new(
                names::VIEWER_SESSION_VERSION,
                format!("must be a whole number 0 to {MAX_VIEWER_SESSION_VERSION}, got `{s}`"),
            )
        })?;
        Self::new(n)
    }
}

impl fmt::Display for ViewerSessionVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Derives pseudonymous viewer ids from application user ids with a keyed
/// hash, because IVS forbids personal data in `aws:viewer-id`.
///
/// `viewer-id = base64url(HMAC-SHA-256(secret, user_id)[..30])`: 40 characters
/// (`A-Z a-z 0-9 - _`, IVS's maximum), stable for a given secret, and not
/// reversible without the secret. Keep the secret as safe as a signing key:
/// whoever holds it can link viewer ids to users. Every replica that mints
/// tokens, and whatever revokes sessions, needs the same secret, or the ids
/// will not match. Clones hold their own copy of the secret, zeroized on
/// drop; `Debug` shows `<redacted>` for it.
///
/// ```
/// use ivs_playback_auth::ViewerIdHasher;
///
/// # fn main() -> Result<(), ivs_playback_auth::Error> {
/// # let secret_from_your_store = [7u8; 32];
/// let hasher = ViewerIdHasher::new(&secret_from_your_store)?;
/// let id = hasher.viewer_id("alice@example.com");
/// assert_eq!(id.as_str().chars().count(), 40);
/// assert!(!id.as_str().contains("alice"));
/// assert_eq!(id, hasher.viewer_id("alice@example.com"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ViewerIdHasher {
    secret: Zeroizing<Vec<u8>>,
}

impl ViewerIdHasher {
    /// Minimum secret length in bytes (32, the output size of SHA-256): a
    /// shorter secret could be guessed, and with it every user behind a
    /// viewer id.
    pub const MIN_SECRET_LEN: usize = 32;

    /// A hasher with a secret of at least [`Self::MIN_SECRET_LEN`] bytes of
    /// random data. The secret is copied (and the copy zeroized on drop).
    ///
    /// # Errors
    ///
    /// [`Error::ViewerIdSecret`] when `secret` is shorter than
    /// [`Self::MIN_SECRET_LEN`] bytes. Its content is not judged: use random
    /// bytes, not a passphrase.
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(Error::ViewerIdSecret(
                "must be at least 32 bytes of random data",
            ));
        }
        Ok(Self {
            secret: Zeroizing::new(secret.to_vec()),
        })
    }

    /// The viewer id of an application user: any text (e-mail address,
    /// database id, ...), of any length, always gives a valid 40-character
    /// [`ViewerId`], the same for the same `user_id` and secret. Never
    /// panics.
    pub fn viewer_id(&self, user_id: &str) -> ViewerId {
        // HMAC accepts keys of any length, and the secret was checked in `new`.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(user_id.as_bytes());
        let tag = mac.finalize().into_bytes();
        // 30 bytes encode to exactly 40 base64url characters, IVS's maximum.
        ViewerId(URL_SAFE_NO_PAD.encode(&tag[..30]).into())
    }
}

impl fmt::Debug for ViewerIdHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ViewerIdHasher { secret: <redacted> }")
    }
}
