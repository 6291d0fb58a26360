//! Why the mint room says no, in its own terms. The HTTP room maps each kind
//! to a status and a stable code in one place (`http::error`); nothing here
//! knows of HTTP.

use std::time::Duration;

/// A decision not to mint, with the field at fault when the caller's input
/// is the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A field of the request breaks a rule (its message names the rule).
    Invalid {
        /// The request field, e.g. `ttl_seconds`, `origins[1]`.
        field: String,
        /// The rule and, where there is one, the fix.
        message: String,
    },
    /// No valid credentials for what was asked.
    Unauthenticated(String),
    /// The caller is known but may not have this.
    NotEntitled {
        /// The field that asked too much, if one.
        field: Option<String>,
        /// Which entitlement refused.
        message: String,
    },
    /// The network or country policy, or the channel's playback restriction
    /// policy, refused the client.
    PolicyDenied(String),
    /// The channel's playback restriction policy limits countries, and the
    /// service has no trusted country header to check them.
    PolicyUnverifiable(String),
    /// The viewer's sessions on this channel were revoked.
    ViewerRevoked(String),
    /// No such channel (in the last listing, or at IVS for an entitled miss).
    ChannelNotFound(String),
    /// The channel is public: IVS plays it without a token.
    ChannelNotPrivate(String),
    /// A rate limit (the caller's, or the shared budget of IVS lookups).
    RateLimited {
        /// When a retry may succeed.
        retry_after: Duration,
        /// Which limit.
        message: String,
    },
    /// Minting is impossible now through no fault of the caller.
    Unavailable {
        /// Stable code: `ivs_unavailable`, `signing_failed`.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// A fault of ours; the details were logged where it happened.
    Internal,
}

impl Refusal {
    /// A field that breaks a rule.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An entitlement that does not cover what was asked.
    pub(crate) fn not_entitled(field: Option<&str>, message: impl Into<String>) -> Self {
        Self::NotEntitled {
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}
