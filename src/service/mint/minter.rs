//! Minting: claims from a grant, signed by the active key; tokens that can be
//! shared are signed once per claims and `exp` bucket. Every signature is
//! counted in the token ledger, which the control room reads.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use moka::sync::Cache;

use super::policy::Grant;
use super::refusal::Refusal;
use crate::claims::unix_seconds;
use crate::service::channel::ChannelInfo;
use crate::service::ledger::TokenLedger;
use crate::{Error, Fingerprint, PlaybackClaims, TokenSigner};

/// A minted token and what the caller needs to know of it.
#[derive(Debug, Clone)]
pub(crate) struct Minted {
    /// The token (shared: a cached token is handed out as is).
    pub(crate) token: Arc<str>,
    /// Its `exp`, Unix seconds.
    pub(crate) expires_at: u64,
    /// When the caller should ask again, Unix seconds.
    pub(crate) refresh_after: u64,
    /// The key that signed it.
    pub(crate) fingerprint: Fingerprint,
    /// Served from the shared-token cache.
    pub(crate) cached: bool,
    /// A shareable token's answer as the front end wrote it, shared by every
    /// request of its bucket (`None` for a token made for one caller).
    pub(crate) shared_answer: Option<Arc<SharedAnswer>>,
}

/// The bytes a front end wrote to answer with a shared token, kept with the
/// token so that the other callers of its bucket are answered without the
/// answer being written (and the token JSON-escaped) again. The mint does not
/// read them; the front end says what they are.
#[derive(Default)]
pub(crate) struct SharedAnswer(OnceLock<(String, Arc<[u8]>)>);

/// Whether an answer is kept, never its bytes: they hold the token.
impl std::fmt::Debug for SharedAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAnswer")
            .field("written", &self.0.get().is_some())
            .finish()
    }
}

impl SharedAnswer {
    /// The answer written for `playback_url`, written by `write` the first
    /// time. A channel refreshed within the bucket may have a new playback
    /// URL: then the answer is written afresh for each request (not kept:
    /// the first one written stays), which is correct and rare.
    pub(crate) fn get_or_write<E>(
        &self,
        playback_url: &str,
        write: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Arc<[u8]>, E> {
        if let Some((url, bytes)) = self.0.get()
            && url == playback_url
        {
            return Ok(Arc::clone(bytes));
        }
        let bytes: Arc<[u8]> = write()?.into();
        // Another request may have set it meanwhile, with the same bytes or
        // for another URL: either way this request answers with its own.
        let _ = self.0.set((playback_url.to_owned(), Arc::clone(&bytes)));
        Ok(bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShareKey {
    channel: String,
    origins: Option<String>,
    strict: bool,
    resolution: Option<&'static str>,
    exp: u64,
}

/// Signs tokens and keeps the shareable ones.
pub(crate) struct Minter {
    signer: TokenSigner,
    ledger: Arc<TokenLedger>,
    shared: Cache<ShareKey, Arc<Minted>>,
    bucket: u64,
}

impl Minter {
    /// A minter over a signer; shareable tokens align `exp` to `bucket` s;
    /// every signature is counted in `ledger`.
    pub(crate) fn new(signer: TokenSigner, bucket: Duration, ledger: Arc<TokenLedger>) -> Self {
        Self {
            signer,
            ledger,
            shared: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(bucket + Duration::from_secs(1))
                .build(),
            bucket: bucket.as_secs().max(1),
        }
    }

    /// The signer.
    pub(crate) fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    /// Drops every shared token (a key was revoked: its tokens must not be
    /// served again).
    pub(crate) fn forget_shared(&self) {
        self.shared.invalidate_all();
    }

    /// Mints a token for a channel as granted.
    pub(crate) fn mint(
        &self,
        channel: &ChannelInfo,
        grant: &Grant,
        now: SystemTime,
    ) -> Result<Minted, Refusal> {
        let now_s = unix_seconds(now);
        let ttl = grant.ttl.as_secs();
        // PlaybackClaims::is_shareable's rule, decided before the claims exist
        // because a shareable token's `exp` is aligned to the bucket.
        let shareable = grant.viewer.is_none() && !grant.single_use;
        if !shareable {
            let minted = self.sign(channel, grant, now, now_s + ttl)?;
            return Ok(minted);
        }
        // Every request in the same bucket gets the same `exp`, hence the same
        // claims and the same token.
        let aligned = (now_s + ttl) / self.bucket * self.bucket;
        let exp = if aligned > now_s + ttl / 2 {
            aligned
        } else {
            now_s + ttl
        };
        let key = ShareKey {
            channel: channel.arn.as_str().to_owned(),
            origins: grant.origins.as_ref().map(ToString::to_string),
            strict: grant.strict,
            resolution: grant.resolution.map(|r| r.as_str()),
            exp,
        };
        if let Some(hit) = self.shared.get(&key) {
            cache_metrics().hit.increment(1);
            return Ok(Minted {
                cached: true,
                ..Minted::clone(&hit)
            });
        }
        cache_metrics().miss.increment(1);
        let minted = Arc::new(Minted {
            shared_answer: Some(Arc::default()),
            ..self.sign(channel, grant, now, exp)?
        });
        self.shared.insert(key, Arc::clone(&minted));
        Ok(Minted::clone(&minted))
    }

    fn sign(
        &self,
        channel: &ChannelInfo,
        grant: &Grant,
        now: SystemTime,
        exp: u64,
    ) -> Result<Minted, Refusal> {
        let mut builder = PlaybackClaims::builder(channel.arn.clone())
            .expires_at(
                crate::ExpiresAt::from_unix_seconds(exp)
                    .map_err(|e| Refusal::invalid("ttl_seconds", e.to_string()))?,
            )
            .strict_origin_enforcement(grant.strict);
        if let Some(origins) = &grant.origins {
            builder = builder.allowed_origins(origins.clone());
        }
        if grant.single_use {
            builder = builder.single_use();
        }
        if let Some(viewer) = &grant.viewer {
            // The session version is the minting second: a revocation at
            // second T ends sessions ≤ T (see revocation.rs).
            let version = crate::ViewerSessionVersion::new(unix_seconds(now))
                .map_err(|e| Refusal::invalid("viewer_id", e.to_string()))?;
            builder = builder
                .viewer_id(viewer.clone())
                .viewer_session_version(version);
        }
        if let Some(r) = grant.resolution {
            builder = builder.maximum_resolution(r);
        }
        let claims = builder.build_at(now).map_err(|e| match e {
            Error::Claim(c) => claim_error(&c),
            other => {
                tracing::error!(error = %other, "building claims");
                Refusal::Internal
            }
        })?;
        let token = self.signer.sign_at(&claims, now).map_err(|e| {
            tracing::error!(error = %e, "signing");
            Refusal::Unavailable {
                code: "signing_failed",
                message: "the token could not be signed".into(),
            }
        })?;
        let now_s = unix_seconds(now);
        self.ledger.record(token.fingerprint(), exp);
        let ttl = exp.saturating_sub(now_s);
        Ok(Minted {
            fingerprint: *token.fingerprint(),
            expires_at: exp,
            refresh_after: exp.saturating_sub((ttl / 4).max(1)).max(now_s),
            token: token.into_string().into(),
            cached: false,
            shared_answer: None,
        })
    }
}

/// `token_cache_total`, registered once (on the first request, after the
/// HTTP room installed the recorder), so that a shared token costs an
/// atomic add rather than a registry look-up.
struct CacheMetrics {
    hit: metrics::Counter,
    miss: metrics::Counter,
}

fn cache_metrics() -> &'static CacheMetrics {
    static METRICS: OnceLock<CacheMetrics> = OnceLock::new();
    METRICS.get_or_init(|| CacheMetrics {
        hit: metrics::counter!("token_cache_total", "result" => "hit"),
        miss: metrics::counter!("token_cache_total", "result" => "miss"),
    })
}

/// A claim rule broken by what the caller asked, named by the request field.
fn claim_error(e: &crate::ClaimError) -> Refusal {
    use crate::claims::names;
    let field = match e.claim() {
        names::EXP => "ttl_seconds",
        names::ALLOW_ORIGIN => "origins",
        names::STRICT_ORIGIN => "strict_origin",
        names::VIEWER_ID => "viewer_id",
        names::MAXIMUM_RESOLUTION => "maximum_resolution",
        names::SINGLE_USE_UUID => "single_use",
        _ => "channel",
    };
    Refusal::invalid(field, e.to_string())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_shared_answer_is_written_once_per_playback_url() {
        let answer = SharedAnswer::default();
        let writes = Cell::new(0);
        let write = |body: &str| {
            writes.set(writes.get() + 1);
            Ok::<_, ()>(body.as_bytes().to_vec())
        };
        let first = answer.get_or_write("https://a/1.m3u8", || write("one"));
        let again = answer.get_or_write("https://a/1.m3u8", || write("two"));
        assert_eq!(writes.get(), 1, "the second request wrote the answer again");
        let (first, again) = (first.unwrap(), again.unwrap());
        assert!(Arc::ptr_eq(&first, &again), "not the same bytes");
        assert_eq!(&*first, b"one");
        // A channel refreshed within the bucket with a new playback URL: its
        // answer names the new URL, written for each request.
        let moved = answer.get_or_write("https://b/1.m3u8", || write("moved"));
        assert_eq!(&*moved.unwrap(), b"moved");
        assert_eq!(writes.get(), 2);
        let back = answer.get_or_write("https://a/1.m3u8", || write("three"));
        assert_eq!(&*back.unwrap(), b"one");
        // A failed write is the request's error, and nothing is kept.
        let once_failed = SharedAnswer::default();
        let failed = once_failed.get_or_write("u", || Err::<Vec<u8>, _>("no"));
        assert_eq!(failed.unwrap_err(), "no");
        let after = once_failed.get_or_write("u", || Ok::<_, &str>(b"ok".to_vec()));
        assert_eq!(
            &*after.unwrap(),
            b"ok",
            "a failed write left something kept"
        );
    }
}
