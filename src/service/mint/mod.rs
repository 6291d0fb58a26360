//! The mint room: everything that decides whether a caller gets a token and
//! which one, in the order a request meets it. Pure decisions and caches: no
//! HTTP types (the HTTP room maps a [`Refusal`] to an answer) and no import
//! from the control room (IVS is reached only through
//! [`channels::ChannelSource`]).
//!
//! - [`network`]: client networks and countries, before anything else;
//! - [`policy`]: callers (API keys, anonymous, viewers) and their
//!   entitlements, narrowed by what the caller asks;
//! - [`limits`]: rate limits per caller;
//! - [`viewer`]: viewer JWTs from the application's identity provider;
//! - [`channels`]: the channel cache (IVS only for an entitled caller's miss
//!   by ARN, within a small budget);
//! - [`restriction`]: a private channel's playback restriction policy
//!   (countries, origins), from the channel cache;
//! - [`revocation`]: the viewer deny-list;
//! - [`minter`]: claims from a grant, signed, or served from the
//!   shareable-token cache.

pub mod channels;
pub(crate) mod limits;
pub(crate) mod minter;
pub(crate) mod network;
pub(crate) mod policy;
pub(crate) mod refusal;
pub(crate) mod restriction;
pub(crate) mod revocation;
pub(crate) mod viewer;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use self::channels::{ChannelCache, Lookup};
use self::limits::Limits;
use self::minter::{Minted, Minter};
use self::network::NetworkRules;
use self::policy::{Caller, Grant, Policy};
pub(crate) use self::refusal::Refusal;
use self::restriction::Whereabouts;
use self::revocation::Revocations;
use self::viewer::ViewerAuth;
use crate::MaximumResolution;
use crate::claims::unix_seconds;
use crate::service::channel::{ChannelInfo, ChannelRef};

/// What a caller asked for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenRequest {
    /// The channel, by ARN or name.
    pub(crate) channel: ChannelRef,
    /// The application's user id (pseudonymised before it goes in a token).
    pub(crate) viewer_id: Option<String>,
    /// Make the token single-use.
    pub(crate) single_use: bool,
    /// Requested lifetime.
    pub(crate) ttl_seconds: Option<u64>,
    /// Requested origins.
    pub(crate) origins: Option<Vec<String>>,
    /// Requested strict origin enforcement.
    pub(crate) strict_origin: bool,
    /// Requested resolution cap.
    pub(crate) maximum_resolution: Option<MaximumResolution>,
}

/// The parts of the mint room, wired once at start-up.
pub(crate) struct Mint {
    pub(crate) network: NetworkRules,
    pub(crate) policy: Policy,
    pub(crate) limits: Limits,
    pub(crate) viewers: Option<Arc<ViewerAuth>>,
    pub(crate) channels: ChannelCache,
    pub(crate) revocations: Arc<Revocations>,
    pub(crate) minter: Minter,
    /// Mint for public channels too (`channels.allow_public`).
    pub(crate) allow_public: bool,
}

impl Mint {
    /// Network rules, before anything else is looked at.
    pub(crate) fn check_network(&self, ip: IpAddr, country: Option<&str>) -> Result<(), Refusal> {
        self.network.check(ip, country)
    }

    /// Takes `n` requests from the caller's rate-limit bucket.
    pub(crate) fn rate_limit(&self, caller: &Caller, n: u32) -> Result<(), Refusal> {
        self.limits.take(caller, n)
    }

    /// The channel a request names. From memory; IVS is asked only on a
    /// miss by ARN, only when the caller's entitlements cover that ARN, and
    /// within the cache's budget; a name the last listing lacks is not found.
    /// An anonymous caller gets the same refusal for a channel it may not
    /// watch as for one that does not exist: it learns nothing of either.
    pub(crate) async fn resolve(
        &self,
        caller: &Caller,
        reference: &ChannelRef,
    ) -> Result<Arc<ChannelInfo>, Refusal> {
        if matches!(caller, Caller::Anonymous(_)) {
            // A miss is no channel anyone may watch: the listing holds every
            // channel, and anonymous access names channels it holds. Not
            // counted as hit or miss, so that /metrics says nothing of which
            // channels exist.
            return self
                .channels
                .cached_uncounted(reference)
                .await
                .ok_or_else(policy::needs_credentials);
        }
        if let Some(channel) = self.channels.cached(reference).await {
            return Ok(channel);
        }
        if !self.channels.is_warm() {
            return Err(Refusal::Unavailable {
                code: "ivs_unavailable",
                message: "the channel list has not been loaded from IVS yet; try again shortly"
                    .into(),
            });
        }
        let ChannelRef::Arn(arn) = reference else {
            return Err(Refusal::ChannelNotFound(reference.to_string()));
        };
        self.policy.may_look_up(caller, arn)?;
        self.channels.fetch(arn).await.map_err(|e| match e {
            Lookup::NotFound => Refusal::ChannelNotFound(reference.to_string()),
            Lookup::Busy(retry_after) => Refusal::RateLimited {
                retry_after,
                message: "lookups of channels outside the cache are rate-limited (they share IVS's channel quota); try again shortly".into(),
            },
            Lookup::Unavailable(e) => {
                tracing::warn!(error = %e, "channel lookup failed");
                Refusal::Unavailable {
                    code: "ivs_unavailable",
                    message: "IVS could not be reached to look the channel up; try again".into(),
                }
            }
        })
    }

    /// What the caller gets for this channel at `now`: the caller entitled
    /// (decided first, so that the answer says nothing of a channel the
    /// caller may not have), the channel private, the viewer not revoked,
    /// then the channel's playback restriction policy applied for a viewer
    /// in `country` (the trusted header's value, if sent).
    pub(crate) fn entitle(
        &self,
        caller: &Caller,
        channel: &ChannelInfo,
        request: &TokenRequest,
        country: Option<&str>,
        now: SystemTime,
    ) -> Result<Grant, Refusal> {
        let grant = self.policy.entitle(caller, channel, request)?;
        if !channel.authorized && !self.allow_public {
            return Err(Refusal::ChannelNotPrivate(channel.arn.to_string()));
        }
        if let Some(viewer) = &grant.viewer
            && let Some(until) =
                self.revocations
                    .denied_until(&channel.arn, viewer.as_str(), unix_seconds(now))
        {
            return Err(Refusal::ViewerRevoked(format!(
                "this viewer's sessions on {} were revoked; no token until {until} (Unix seconds)",
                channel.arn
            )));
        }
        // A public channel's policy is IVS's to enforce; the cache holds a
        // policy only when enforcement is configured on.
        if let Some(why) = channel
            .restriction_unreadable
            .as_ref()
            .filter(|_| channel.authorized)
        {
            return Err(Refusal::Unavailable {
                code: "ivs_unavailable",
                message: format!(
                    "the playback restriction policy of {} could not be read from IVS ({why}); try again later",
                    channel.arn
                ),
            });
        }
        match &channel.restriction {
            Some(policy) if channel.authorized => restriction::apply(
                policy,
                grant,
                Whereabouts {
                    header: self.network.country_header(),
                    country,
                },
                &caller_label(caller),
            ),
            _ => Ok(grant),
        }
    }

    /// The token of a grant, signed at `now` or shared from the cache.
    pub(crate) fn sign(
        &self,
        channel: &ChannelInfo,
        grant: &Grant,
        now: SystemTime,
    ) -> Result<Minted, Refusal> {
        self.minter.mint(channel, grant, now)
    }

    /// Warns of cached private channels whose restriction policy limits
    /// countries while no country header is configured: every token for
    /// them is refused (`policy_unverifiable`). Logged after each listing,
    /// so that operators learn it before viewers do.
    pub(crate) fn warn_unverifiable(&self) {
        if self.network.country_header().is_some() {
            return;
        }
        let blind: Vec<String> = self
            .channels
            .snapshot()
            .iter()
            .filter(|c| {
                c.authorized
                    && c.restriction
                        .as_ref()
                        .is_some_and(|p| !p.allowed_countries.is_empty())
            })
            .map(|c| c.arn.to_string())
            .collect();
        if !blind.is_empty() {
            tracing::warn!(
                channels = %blind.join(","),
                "private channels have playback restriction policies that limit countries, and no policy.country_header is configured: their tokens are refused (403 policy_unverifiable)"
            );
        }
    }

    /// Periodic clean-up of per-client state.
    pub(crate) fn housekeeping(&self, now: SystemTime) {
        self.limits.housekeeping();
        self.revocations.prune(unix_seconds(now));
    }
}

/// How a refusal names the caller whose origins met a channel's policy.
fn caller_label(caller: &Caller) -> String {
    match caller {
        Caller::ApiKey(rule) => format!("API key {}", rule.name),
        Caller::Anonymous(_) => "anonymous tokens".into(),
        Caller::Viewer(_) => "viewer tokens".into(),
    }
}
