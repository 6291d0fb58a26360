//! `ExpiresAt`: the `exp` claim, in Unix seconds.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{MILLISECONDS_THRESHOLD, names, unix_seconds};
use crate::error::ClaimError;

/// The `exp` claim: Unix time in **seconds**, a whole number.
///
/// IVS reads `exp` as Unix seconds (private-channels-generate-tokens). The AWS
/// docs' own Node example writes milliseconds (`Date.now() + ...`), which as
/// seconds lie tens of thousands of years ahead: a token that never expires.
/// So values from 10^11 on (past the year 5000 as seconds) are refused as
/// milliseconds, and 0 is refused. IVS checks `exp` once, when playback
/// starts (`docs/ivs-facts.md` §1): a stream started before it plays on.
///
/// Whether the time is in the future, and within 10 minutes for short-lived
/// tokens, is checked by [`PlaybackClaimsBuilder::build`] and again by
/// [`TokenSigner::sign`], which know the time.
///
/// [`PlaybackClaimsBuilder::build`]: crate::PlaybackClaimsBuilder::build
/// [`TokenSigner::sign`]: crate::TokenSigner::sign
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExpiresAt(pub(super) u64);

impl ExpiresAt {
    /// `exp` from Unix seconds.
    ///
    /// # Errors
    ///
    /// [`ClaimError`] for `exp` when `seconds` is 0, or is 10^11 or more
    /// (only milliseconds would be that large; see the type's docs).
    pub fn from_unix_seconds(seconds: u64) -> Result<Self, ClaimError> {
        if seconds == 0 {
            return Err(ClaimError::new(
                names::EXP,
                "must be a Unix time in seconds, got 0",
            ));
        }
        if seconds >= MILLISECONDS_THRESHOLD {
            return Err(ClaimError::new(
                names::EXP,
                format!(
                    "{seconds} looks like milliseconds; IVS reads `exp` as Unix seconds (a millisecond value makes a token that never expires)"
                ),
            ));
        }
        Ok(Self(seconds))
    }

    /// `exp` as another signer may write it: a JWT NumericDate (RFC 7519
    /// §2), a JSON number of Unix seconds that may have a fraction (PyJWT
    /// with `time.time() + 300`, JavaScript's `Date.now() / 1000 + 300`).
    ///
    /// A fraction is rounded down. IVS documents `exp` as whole seconds and
    /// says nothing of fractions [OPEN]: RFC 7519 allows them, the IVS edge's
    /// errors are a generic JWT library's, so a standard verifier's reading
    /// is taken, and rounding down makes the token expire up to a second
    /// early, never late.
    pub(crate) fn from_numeric_date(value: &serde_json::Value) -> Result<Self, ClaimError> {
        Self::from_unix_seconds(NumericDate::parse(names::EXP, value)?.floor)
    }

    /// `exp` at `now + ttl`, rounded down to a whole second (never later than
    /// asked). A `now` before 1970 counts as 0.
    ///
    /// # Errors
    ///
    /// [`ClaimError`] for `exp` when `now + ttl` overflows `SystemTime`, or
    /// when the result is refused by [`from_unix_seconds`](Self::from_unix_seconds)
    /// (before 1970-01-01T00:00:01Z, or 10^11 s or later).
    pub fn after(now: SystemTime, ttl: Duration) -> Result<Self, ClaimError> {
        let at = now
            .checked_add(ttl)
            .ok_or_else(|| ClaimError::new(names::EXP, "now + ttl overflows"))?;
        Self::from_unix_seconds(unix_seconds(at))
    }

    /// Unix time in seconds, as written in the token.
    pub fn unix_seconds(self) -> u64 {
        self.0
    }

    /// As a `SystemTime`. Never panics: the value is below 10^11 s.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0)
    }
}

/// The Unix seconds, as in the token (`1800000300`).
impl fmt::Display for ExpiresAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A JWT NumericDate read from a token (RFC 7519 §2): Unix seconds, maybe
/// with a fraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NumericDate {
    /// The whole seconds, rounded down.
    pub(crate) floor: u64,
    /// The value was not written as a whole number (`1796013544.5`, or
    /// `1796013544.0`).
    pub(crate) fractional: bool,
}

impl NumericDate {
    /// Reads a claim's NumericDate; anything but a non-negative finite JSON
    /// number is refused, naming the claim.
    pub(crate) fn parse(
        claim: &'static str,
        value: &serde_json::Value,
    ) -> Result<Self, ClaimError> {
        if let Some(n) = value.as_u64() {
            return Ok(Self {
                floor: n,
                fractional: false,
            });
        }
        match value.as_f64() {
            // `as` saturates: a value past u64 is caught as milliseconds by
            // the caller.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(f) if f.is_finite() && f >= 0.0 => Ok(Self {
                floor: f.floor() as u64,
                fractional: true,
            }),
            _ => Err(ClaimError::new(
                claim,
                format!(
                    "must be a NumericDate: Unix time in seconds as a JSON number, got {value}"
                ),
            )),
        }
    }

    /// The first whole second at or after the date.
    pub(crate) fn ceil(self) -> u64 {
        self.floor.saturating_add(u64::from(self.fractional))
    }
}
