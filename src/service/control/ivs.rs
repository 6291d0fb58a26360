//! The IVS calls the service makes, through aws-sdk-ivs: listing and reading
//! channels for the channel cache, the key-pair calls of rotation, viewer
//! revocation, and creating the demo channel in local mode. The token path
//! reaches these only through the channel cache, for an entitled caller's
//! miss within its budget. A channel is read with the playback restriction
//! policy it names (unless told not to), so that the cache holds both.
//!
//! Every call waits for its quota first (IVS allows 3 key-pair calls and 5
//! channel calls per second per region, not adjustable), is retried by the
//! SDK's standard retry (exponential backoff with jitter on throttling, 5xx,
//! dropped connections and attempt timeouts), and has a deadline.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ivs::config::retry::RetryConfig;
use aws_sdk_ivs::config::timeout::TimeoutConfig;
use aws_sdk_ivs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ivs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::{Builder as HttpClientBuilder, tls};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::service::channel::{ChannelInfo, RestrictionPolicy};
use crate::{ChannelArn, PublicKey};

/// A playback key pair as IVS holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyPairInfo {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// Its fingerprint (`aa:bb:...`).
    pub fingerprint: String,
    /// Its tags.
    pub tags: std::collections::BTreeMap<String, String>,
}

/// One viewer's sessions on one channel, to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerSession {
    /// The channel.
    pub channel_arn: ChannelArn,
    /// The `aws:viewer-id` of its tokens.
    pub viewer_id: String,
    /// Sessions whose `aws:viewer-session-version` is at most this end.
    pub versions_up_to: i32,
}

/// An IVS call that failed; the SDK error is kept as the source.
#[derive(Debug)]
pub struct IvsError {
    operation: &'static str,
    code: Option<String>,
    message: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl IvsError {
    fn from_sdk<E, R>(operation: &'static str, e: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        Self {
            operation,
            code: e.code().map(str::to_owned),
            message: DisplayErrorContext(&e).to_string(),
            source: Box::new(e),
        }
    }

    fn other(operation: &'static str, message: String) -> Self {
        Self {
            operation,
            code: None,
            message: message.clone(),
            source: message.into(),
        }
    }

    /// The IVS error code, when IVS answered.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl fmt::Display for IvsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IVS {}: {}", self.operation, self.message)
    }
}

impl std::error::Error for IvsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Patience and quotas of the IVS client.
#[derive(Debug, Clone)]
pub struct IvsOptions {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Longest one attempt may take.
    pub attempt_timeout: Duration,
    /// Longest a call may take, retries included.
    pub operation_timeout: Duration,
    /// Key-pair calls per second (IVS: 3).
    pub key_pair_calls_per_second: u32,
    /// Channel calls per second (IVS: 5).
    pub channel_calls_per_second: u32,
    /// BatchStartViewerSessionRevocation calls per second (IVS: 2).
    pub revocation_calls_per_second: u32,
}

impl Default for IvsOptions {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(20),
            key_pair_calls_per_second: 3,
            channel_calls_per_second: 5,
            revocation_calls_per_second: 2,
        }
    }
}

struct Quotas {
    key_pairs: DefaultDirectRateLimiter,
    channels: DefaultDirectRateLimiter,
    revocations: DefaultDirectRateLimiter,
}

impl fmt::Debug for Quotas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Quotas")
    }
}

fn per_second(n: u32) -> DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN),
    ))
}

/// An aws-sdk-ivs client, paced to IVS's quotas.
#[derive(Debug, Clone)]
pub struct Ivs {
    client: aws_sdk_ivs::Client,
    quotas: Arc<Quotas>,
    /// Read the playback restriction policy each channel names.
    restriction_policies: bool,
}

impl Ivs {
    /// A client for real IVS: default credential chain, region from the
    /// configuration or the environment, optional endpoint override.
    pub async fn from_env(
        region: Option<&str>,
        endpoint_url: Option<&str>,
        options: &IvsOptions,
    ) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_owned()));
        }
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        let config = Self::patience(aws_sdk_ivs::config::Builder::from(&shared), options).build();
        Self::with_config(config, options)
    }

    /// A client for the embedded local IVS (or any IVS at `endpoint_url`
    /// that accepts these fixed credentials), over plain HTTP.
    pub fn local(endpoint_url: &str, region: &str, options: &IvsOptions) -> Self {
        // The SDK's default client loads the system's CA roots, warns when
        // there are none, and in debug builds asserts that there are some:
        // a local IVS on loopback needs none, so this client trusts no root
        // and runs where the system has none (a slim container image).
        let trust = tls::TrustStore::empty().with_native_roots(false);
        let http = tls::TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map(|context| {
                HttpClientBuilder::new()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::AwsLc,
                    ))
                    .tls_context(context)
                    .build_https()
            });
        let mut builder = aws_sdk_ivs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(endpoint_url)
            .credentials_provider(Credentials::new(
                "local-ivs",
                "local-ivs",
                None,
                None,
                "embedded local IVS",
            ));
        // `build` cannot fail today (its Result is for later options); if it
        // ever does, the SDK's default client is the fallback.
        if let Ok(http) = http {
            builder = builder.http_client(http);
        }
        Self::with_config(Self::patience(builder, options).build(), options)
    }

    fn patience(
        builder: aws_sdk_ivs::config::Builder,
        options: &IvsOptions,
    ) -> aws_sdk_ivs::config::Builder {
        builder
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(options.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(options.attempt_timeout)
                    .operation_timeout(options.operation_timeout)
                    .build(),
            )
    }

    fn with_config(config: aws_sdk_ivs::Config, options: &IvsOptions) -> Self {
        Self {
            client: aws_sdk_ivs::Client::from_conf(config),
            quotas: Arc::new(Quotas {
                key_pairs: per_second(options.key_pair_calls_per_second),
                channels: per_second(options.channel_calls_per_second),
                revocations: per_second(options.revocation_calls_per_second),
            }),
            restriction_policies: true,
        }
    }

    /// Whether channels are read with their playback restriction policies
    /// (on by default). Off, channel reads make no policy calls and every
    /// [`ChannelInfo::restriction`] is `None`.
    #[must_use]
    pub fn reading_restriction_policies(mut self, on: bool) -> Self {
        self.restriction_policies = on;
        self
    }

    /// Only a private channel's policy is ours to apply: IVS enforces a
    /// public channel's itself, so reading it would cost calls (and IAM
    /// permissions) for nothing.
    fn reads_policy_of(&self, channel: &ChannelInfo) -> bool {
        self.restriction_policies && channel.authorized
    }

    async fn channel_quota(&self) {
        self.quotas.channels.until_ready().await;
    }

    async fn key_pair_quota(&self) {
        self.quotas.key_pairs.until_ready().await;
    }

    /// Every channel of the region, with playback URLs (ListChannels, then
    /// BatchGetChannel by 50, since summaries have no playback URL), and the
    /// restriction policies they name (GetPlaybackRestrictionPolicy once per
    /// policy: a region's channels share few).
    pub async fn all_channels(&self) -> Result<Vec<ChannelInfo>, IvsError> {
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            self.channel_quota().await;
            let page = self
                .client
                .list_channels()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| IvsError::from_sdk("ListChannels", e))?;
            arns.extend(
                page.channels()
                    .iter()
                    .filter_map(|c| c.arn().map(str::to_owned)),
            );
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        let mut read = Vec::with_capacity(arns.len());
        for chunk in arns.chunks(50) {
            self.channel_quota().await;
            let got = self
                .client
                .batch_get_channel()
                .set_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| IvsError::from_sdk("BatchGetChannel", e))?;
            read.extend(
                got.channels()
                    .iter()
                    .filter_map(|c| Some((info(c)?, policy_arn(c)))),
            );
        }
        // Each policy read once per listing; a failed read marks only the
        // channels that name it.
        let mut policies: HashMap<String, Result<RestrictionPolicy, String>> = HashMap::new();
        let mut out = Vec::with_capacity(read.len());
        for (mut channel, policy) in read {
            if let Some(arn) = policy.filter(|_| self.reads_policy_of(&channel)) {
                if !policies.contains_key(&arn) {
                    let fetched = self
                        .restriction_policy(&channel, &arn)
                        .await
                        .map_err(|e| e.to_string());
                    if let Err(e) = &fetched {
                        tracing::warn!(policy = %arn, error = %e, "a playback restriction policy could not be read: the private channels that name it get no token until it can");
                    }
                    policies.insert(arn.clone(), fetched);
                }
                match policies.get(&arn) {
                    Some(Ok(policy)) => channel.restriction = Some(policy.clone()),
                    Some(Err(e)) => channel.restriction_unreadable = Some(e.clone()),
                    None => {}
                }
            }
            out.push(channel);
        }
        Ok(out)
    }

    /// The policy a channel names. One IVS does not hold (it refuses to
    /// delete a policy in use, so only a race gets here) fails the read, and
    /// the caller marks the channel unreadable: it is never cached as if
    /// it had no restriction.
    async fn restriction_policy(
        &self,
        channel: &ChannelInfo,
        arn: &str,
    ) -> Result<RestrictionPolicy, IvsError> {
        const OPERATION: &str = "GetPlaybackRestrictionPolicy";
        // Policy reads are paced with the channel calls: both serve the
        // channel cache, and IVS publishes no separate rate for them here.
        self.channel_quota().await;
        metrics::counter!("ivs_calls_total", "operation" => OPERATION).increment(1);
        let answer = self
            .client
            .get_playback_restriction_policy()
            .arn(arn)
            .send()
            .await;
        let out = match answer {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Err(IvsError::other(
                    OPERATION,
                    format!(
                        "channel {} names playback restriction policy {arn}, which IVS does not hold",
                        channel.arn
                    ),
                ));
            }
            Err(e) => return Err(IvsError::from_sdk(OPERATION, e)),
        };
        let p = out
            .playback_restriction_policy()
            .ok_or_else(|| IvsError::other(OPERATION, "no policy in the answer".into()))?;
        Ok(RestrictionPolicy {
            arn: p.arn().to_owned(),
            name: p.name().unwrap_or_default().to_owned(),
            allowed_countries: p.allowed_countries().to_vec(),
            allowed_origins: p.allowed_origins().to_vec(),
            strict_origin_enforcement: p.enable_strict_origin_enforcement().unwrap_or(false),
        })
    }

    /// One channel by ARN, with the restriction policy it names; `None` if
    /// IVS does not know it.
    pub async fn channel(&self, arn: &str) -> Result<Option<ChannelInfo>, IvsError> {
        self.channel_quota().await;
        match self.client.get_channel().arn(arn).send().await {
            Ok(out) => {
                let Some(c) = out.channel() else {
                    return Ok(None);
                };
                let Some(mut channel) = info(c) else {
                    return Ok(None);
                };
                if let Some(policy) = policy_arn(c).filter(|_| self.reads_policy_of(&channel)) {
                    match self.restriction_policy(&channel, &policy).await {
                        Ok(policy) => channel.restriction = Some(policy),
                        Err(e) => channel.restriction_unreadable = Some(e.to_string()),
                    }
                }
                Ok(Some(channel))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(IvsError::from_sdk("GetChannel", e)),
        }
    }

    /// One channel by exact name; `None` if there is none.
    pub async fn channel_by_name(&self, name: &str) -> Result<Option<ChannelInfo>, IvsError> {
        self.channel_quota().await;
        let out = self
            .client
            .list_channels()
            .filter_by_name(name)
            .send()
            .await
            .map_err(|e| IvsError::from_sdk("ListChannels", e))?;
        match out
            .channels()
            .iter()
            .find(|c| c.name() == Some(name))
            .and_then(|c| c.arn())
        {
            Some(arn) => self.channel(arn).await,
            None => Ok(None),
        }
    }

    /// Every playback key pair of the region, with fingerprints
    /// (ListPlaybackKeyPairs, then GetPlaybackKeyPair each: summaries carry
    /// no fingerprint; a region holds at most 3).
    pub async fn key_pairs(&self) -> Result<Vec<KeyPairInfo>, IvsError> {
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            self.key_pair_quota().await;
            let page = self
                .client
                .list_playback_key_pairs()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| IvsError::from_sdk("ListPlaybackKeyPairs", e))?;
            arns.extend(
                page.key_pairs()
                    .iter()
                    .filter_map(|k| k.arn().map(str::to_owned)),
            );
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        let mut out = Vec::with_capacity(arns.len());
        for arn in arns {
            // Deleted between the listing and now: not held any more.
            if let Some(pair) = self.key_pair(&arn).await? {
                out.push(pair);
            }
        }
        Ok(out)
    }

    /// One key pair by ARN; `None` if IVS does not hold it.
    pub async fn key_pair(&self, arn: &str) -> Result<Option<KeyPairInfo>, IvsError> {
        self.key_pair_quota().await;
        match self.client.get_playback_key_pair().arn(arn).send().await {
            Ok(out) => Ok(out.key_pair().and_then(key_pair_info)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(IvsError::from_sdk("GetPlaybackKeyPair", e)),
        }
    }

    /// Imports a public key; the answer's fingerprint is checked against the
    /// key's own.
    pub async fn import_key_pair(
        &self,
        key: &PublicKey,
        name: &str,
        tags: &[(&str, &str)],
    ) -> Result<KeyPairInfo, IvsError> {
        let fingerprint = key.fingerprint().to_string();
        self.key_pair_quota().await;
        let mut call = self
            .client
            .import_playback_key_pair()
            .public_key_material(key.to_pem())
            .name(name);
        for (k, v) in tags {
            call = call.tags(*k, *v);
        }
        let out = call
            .send()
            .await
            .map_err(|e| IvsError::from_sdk("ImportPlaybackKeyPair", e))?;
        let pair = out.key_pair().and_then(key_pair_info).ok_or_else(|| {
            IvsError::other("ImportPlaybackKeyPair", "no key pair in the answer".into())
        })?;
        if pair.fingerprint != fingerprint {
            return Err(IvsError::other(
                "ImportPlaybackKeyPair",
                format!(
                    "IVS reports fingerprint {}, the key's is {fingerprint}",
                    pair.fingerprint
                ),
            ));
        }
        Ok(pair)
    }

    /// Deletes a key pair; `false` if IVS did not hold it (already deleted).
    pub async fn delete_key_pair(&self, arn: &str) -> Result<bool, IvsError> {
        self.key_pair_quota().await;
        match self.client.delete_playback_key_pair().arn(arn).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(IvsError::from_sdk("DeletePlaybackKeyPair", e)),
        }
    }

    /// The ARN of the key pair holding `key` in IVS, importing it if IVS does
    /// not hold it yet (matched by fingerprint).
    pub async fn ensure_imported(&self, key: &PublicKey, name: &str) -> Result<String, IvsError> {
        let fingerprint = key.fingerprint().to_string();
        if let Some(pair) = self
            .key_pairs()
            .await?
            .into_iter()
            .find(|p| p.fingerprint == fingerprint)
        {
            return Ok(pair.arn);
        }
        Ok(self.import_key_pair(key, name, &[]).await?.arn)
    }

    /// Revokes viewer sessions (BatchStartViewerSessionRevocation by 20, at
    /// IVS's 2 calls/s). Returns one result per item, in order: `None` when
    /// IVS accepted it, else IVS's error code and message.
    pub async fn revoke_viewer_sessions(
        &self,
        items: &[ViewerSession],
    ) -> Result<Vec<Option<(String, String)>>, IvsError> {
        use aws_sdk_ivs::types::BatchStartViewerSessionRevocationViewerSession as Item;
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(20) {
            let mut sessions = Vec::with_capacity(chunk.len());
            for s in chunk {
                sessions.push(
                    Item::builder()
                        .channel_arn(s.channel_arn.as_str())
                        .viewer_id(s.viewer_id.as_str())
                        .viewer_session_versions_less_than_or_equal_to(s.versions_up_to)
                        .build()
                        .map_err(|e| {
                            IvsError::other("BatchStartViewerSessionRevocation", e.to_string())
                        })?,
                );
            }
            self.quotas.revocations.until_ready().await;
            let answer = self
                .client
                .batch_start_viewer_session_revocation()
                .set_viewer_sessions(Some(sessions))
                .send()
                .await
                .map_err(|e| IvsError::from_sdk("BatchStartViewerSessionRevocation", e))?;
            for s in chunk {
                let error = answer.errors().iter().find(|e| {
                    e.channel_arn() == s.channel_arn.as_str() && e.viewer_id() == s.viewer_id
                });
                out.push(error.map(|e| {
                    (
                        e.code().unwrap_or("Error").to_owned(),
                        e.message().unwrap_or_default().to_owned(),
                    )
                }));
            }
        }
        Ok(out)
    }

    /// A private channel with this name, created if missing.
    pub async fn ensure_private_channel(&self, name: &str) -> Result<ChannelInfo, IvsError> {
        if let Some(existing) = self.channel_by_name(name).await? {
            return Ok(existing);
        }
        self.channel_quota().await;
        let out = self
            .client
            .create_channel()
            .name(name)
            .authorized(true)
            .send()
            .await
            .map_err(|e| IvsError::from_sdk("CreateChannel", e))?;
        out.channel()
            .and_then(info)
            .ok_or_else(|| IvsError::other("CreateChannel", "no channel in the answer".into()))
    }
}

fn key_pair_info(k: &aws_sdk_ivs::types::PlaybackKeyPair) -> Option<KeyPairInfo> {
    Some(KeyPairInfo {
        arn: k.arn()?.to_owned(),
        name: k.name().unwrap_or_default().to_owned(),
        fingerprint: k.fingerprint()?.to_owned(),
        tags: k
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}

fn info(c: &aws_sdk_ivs::types::Channel) -> Option<ChannelInfo> {
    Some(ChannelInfo {
        arn: ChannelArn::parse(c.arn()?).ok()?,
        name: c.name().unwrap_or_default().to_owned(),
        authorized: c.authorized(),
        playback_url: c.playback_url()?.to_owned(),
        restriction: None,
        restriction_unreadable: None,
    })
}

/// The restriction policy a channel names; IVS writes "" for none.
fn policy_arn(c: &aws_sdk_ivs::types::Channel) -> Option<String> {
    c.playback_restriction_policy_arn()
        .filter(|arn| !arn.is_empty())
        .map(str::to_owned)
}
