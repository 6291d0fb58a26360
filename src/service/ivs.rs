//! The few IVS calls the token service makes, through aws-sdk-ivs: listing
//! and reading channels for the cache, importing the signing key at start-up,
//! and creating the demo channel in local mode. None of them is on the token
//! path.

use std::fmt;

use aws_sdk_ivs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ivs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::{ChannelArn, PublicKey};

/// What the cache keeps of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Its ARN.
    pub arn: ChannelArn,
    /// Its name (may be empty).
    pub name: String,
    /// Whether it is private.
    pub authorized: bool,
    /// Where players fetch it.
    pub playback_url: String,
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

/// An aws-sdk-ivs client.
#[derive(Debug, Clone)]
pub struct Ivs {
    client: aws_sdk_ivs::Client,
}

impl Ivs {
    /// A client for real IVS: default credential chain, region from the
    /// configuration or the environment, optional endpoint override.
    pub async fn from_env(region: Option<&str>, endpoint_url: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_owned()));
        }
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        Self {
            client: aws_sdk_ivs::Client::new(&shared),
        }
    }

    /// A client for the embedded local IVS.
    pub fn local(endpoint_url: &str, region: &str) -> Self {
        let config = aws_sdk_ivs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(endpoint_url)
            .credentials_provider(Credentials::new(
                "local-ivs",
                "local-ivs",
                None,
                None,
                "embedded local IVS",
            ))
            .build();
        Self {
            client: aws_sdk_ivs::Client::from_conf(config),
        }
    }

    /// Every channel of the region, with playback URLs (ListChannels, then
    /// BatchGetChannel by 50, since summaries have no playback URL).
    pub async fn all_channels(&self) -> Result<Vec<ChannelInfo>, IvsError> {
        let mut arns = Vec::new();
        let mut pages = self.client.list_channels().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| IvsError::from_sdk("ListChannels", e))?;
            arns.extend(
                page.channels()
                    .iter()
                    .filter_map(|c| c.arn().map(str::to_owned)),
            );
        }
        let mut out = Vec::with_capacity(arns.len());
        for chunk in arns.chunks(50) {
            let got = self
                .client
                .batch_get_channel()
                .set_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| IvsError::from_sdk("BatchGetChannel", e))?;
            out.extend(got.channels().iter().filter_map(info));
        }
        Ok(out)
    }

    /// One channel by ARN; `None` if IVS does not know it.
    pub async fn channel(&self, arn: &str) -> Result<Option<ChannelInfo>, IvsError> {
        match self.client.get_channel().arn(arn).send().await {
            Ok(out) => Ok(out.channel().and_then(info)),
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

    /// The ARN of the key pair holding `key` in IVS, importing it if IVS does
    /// not hold it yet (matched by fingerprint).
    pub async fn ensure_imported(&self, key: &PublicKey, name: &str) -> Result<String, IvsError> {
        let fingerprint = key.fingerprint().to_string();
        let mut pages = self
            .client
            .list_playback_key_pairs()
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| IvsError::from_sdk("ListPlaybackKeyPairs", e))?;
            for summary in page.key_pairs() {
                let Some(arn) = summary.arn() else { continue };
                let pair = self
                    .client
                    .get_playback_key_pair()
                    .arn(arn)
                    .send()
                    .await
                    .map_err(|e| IvsError::from_sdk("GetPlaybackKeyPair", e))?;
                if pair.key_pair().and_then(|k| k.fingerprint()) == Some(fingerprint.as_str()) {
                    return Ok(arn.to_owned());
                }
            }
        }
        let out = self
            .client
            .import_playback_key_pair()
            .public_key_material(key.to_pem())
            .name(name)
            .send()
            .await
            .map_err(|e| IvsError::from_sdk("ImportPlaybackKeyPair", e))?;
        let pair = out.key_pair().ok_or_else(|| {
            IvsError::other("ImportPlaybackKeyPair", "no key pair in the answer".into())
        })?;
        if pair.fingerprint() != Some(fingerprint.as_str()) {
            return Err(IvsError::other(
                "ImportPlaybackKeyPair",
                format!(
                    "IVS reports fingerprint {:?}, the key's is {fingerprint}",
                    pair.fingerprint()
                ),
            ));
        }
        pair.arn()
            .map(str::to_owned)
            .ok_or_else(|| IvsError::other("ImportPlaybackKeyPair", "no ARN in the answer".into()))
    }

    /// A private channel with this name, created if missing.
    pub async fn ensure_private_channel(&self, name: &str) -> Result<ChannelInfo, IvsError> {
        if let Some(existing) = self.channel_by_name(name).await? {
            return Ok(existing);
        }
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

fn info(c: &aws_sdk_ivs::types::Channel) -> Option<ChannelInfo> {
    Some(ChannelInfo {
        arn: ChannelArn::parse(c.arn()?).ok()?,
        name: c.name().unwrap_or_default().to_owned(),
        authorized: c.authorized(),
        playback_url: c.playback_url()?.to_owned(),
    })
}
