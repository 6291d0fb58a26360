//! `ExpiresAt`: the `exp` claim, in Unix seconds.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{MILLISECONDS_THRESHOLD, names, unix_seconds};
use crate::error::ClaimError;

/// The `exp` claim: Unix time in **seconds**.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExpiresAt(pub(super) u64);

impl ExpiresAt {
    /// `exp` from Unix seconds. Values that can only be milliseconds (past the
    /// year 5000 as seconds) are refused.
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

    /// `exp` at `now + ttl`, rounded down to a whole second (never later than
    /// asked).
    pub fn after(now: SystemTime, ttl: Duration) -> Result<Self, ClaimError> {
        let at = now
            .checked_add(ttl)
            .ok_or_else(|| ClaimError::new(names::EXP, "now + ttl overflows"))?;
        Self::from_unix_seconds(unix_seconds(at))
    }

    /// Unix seconds.
    pub fn unix_seconds(self) -> u64 {
        self.0
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0)
    }
}

impl fmt::Display for ExpiresAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
