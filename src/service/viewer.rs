//! Viewer JWTs from the application's identity provider (OIDC): verified
//! against a JWKS (fetched from a URL and cached, or read from a file), with
//! issuer, audience and expiry (plus leeway); a configured claim lists the
//! channels the viewer may watch, and `sub` becomes the pseudonymous
//! `aws:viewer-id`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use super::error::AppError;

/// `[viewer_jwt]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ViewerJwtConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Where the JWKS is fetched (https in production).
    pub jwks_url: Option<String>,
    /// Or a JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// Refetch the JWKS this often.
    #[serde(default = "default_refresh")]
    pub jwks_refresh_seconds: u64,
    /// Tolerated clock difference on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Signature algorithms accepted (asymmetric only).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim listing the channels (names, ARNs or globs) the viewer may
    /// watch: a list of strings, or one space-separated string.
    #[serde(default = "default_channels_claim")]
    pub channels_claim: String,
    /// Longest playback token for a viewer (at most 595 s: viewer tokens
    /// carry `aws:viewer-id`).
    #[serde(default = "default_viewer_ttl")]
    pub max_ttl_seconds: u64,
    /// Origins put in viewer tokens (viewers may narrow them).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Viewers may ask for single-use tokens.
    #[serde(default)]
    pub allow_single_use: bool,
    /// Requests per second per viewer (`sub`).
    #[serde(default = "default_viewer_rate")]
    pub rate_per_viewer_per_second: u32,
}

fn default_refresh() -> u64 {
    300
}
fn default_leeway() -> u64 {
    60
}
fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "ES384", "PS256", "EdDSA"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}
fn default_channels_claim() -> String {
    "ivs_channels".into()
}
fn default_viewer_ttl() -> u64 {
    300
}
fn default_viewer_rate() -> u32 {
    5
}

impl ViewerJwtConfig {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<Vec<Algorithm>, String> {
        if self.issuer.is_empty() {
            return Err("viewer_jwt.issuer: must not be empty".into());
        }
        if self.audience.is_empty() {
            return Err("viewer_jwt.audience: must not be empty".into());
        }
        if self.jwks_url.is_some() == self.jwks_file.is_some() {
            return Err("viewer_jwt: give exactly one of jwks_url and jwks_file".into());
        }
        if self.max_ttl_seconds == 0 || self.max_ttl_seconds > 595 {
            return Err(
                "viewer_jwt.max_ttl_seconds: must be 1 to 595 (viewer tokens are capped by IVS)"
                    .into(),
            );
        }
        if self.rate_per_viewer_per_second == 0 {
            return Err("viewer_jwt.rate_per_viewer_per_second: must be at least 1".into());
        }
        let mut algorithms = Vec::new();
        for (i, name) in self.algorithms.iter().enumerate() {
            let alg: Algorithm = name.parse().map_err(|_| {
                format!("viewer_jwt.algorithms[{i}]: `{name}` is not a JWS algorithm")
            })?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(format!(
                    "viewer_jwt.algorithms[{i}]: {name} is symmetric; a JWKS holds public keys"
                ));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err("viewer_jwt.algorithms: must list at least one algorithm".into());
        }
        for (i, origin) in self.origins.iter().enumerate() {
            if origin != "*"
                && let Err(e) = crate::Origin::parse(origin)
            {
                return Err(format!("viewer_jwt.origins[{i}]: {e}"));
            }
        }
        Ok(algorithms)
    }
}

/// A verified viewer.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// `sub`.
    pub subject: String,
    /// The channels of the configured claim.
    pub channels: Vec<String>,
}

/// The verifier with its cached key set.
pub struct ViewerAuth {
    config: ViewerJwtConfig,
    algorithms: Vec<Algorithm>,
    keys: ArcSwap<JwkSet>,
    http: reqwest::Client,
    /// When the set was last fetched; refetches on an unknown `kid` are
    /// spaced so that forged kids cannot make us hammer the provider.
    last_fetch: Mutex<Option<Instant>>,
}

/// The shortest time between two refetches caused by unknown `kid`s.
const REFETCH_SPACING: Duration = Duration::from_secs(10);

impl ViewerAuth {
    /// Loads the key set; fails if it cannot be had at start-up.
    pub async fn new(config: ViewerJwtConfig) -> Result<Self, String> {
        let algorithms = config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("viewer_jwt: HTTP client: {e}"))?;
        let auth = Self {
            config,
            algorithms,
            keys: ArcSwap::from_pointee(JwkSet { keys: Vec::new() }),
            http,
            last_fetch: Mutex::new(None),
        };
        let set = auth.fetch().await?;
        auth.keys.store(Arc::new(set));
        *auth.last_fetch.lock().await = Some(Instant::now());
        Ok(auth)
    }

    /// How often the set should be refetched.
    pub fn refresh_every(&self) -> Duration {
        Duration::from_secs(self.config.jwks_refresh_seconds.max(10))
    }

    /// The section this was built from.
    pub fn config(&self) -> &ViewerJwtConfig {
        &self.config
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let text = match (&self.config.jwks_url, &self.config.jwks_file) {
            (Some(url), _) => {
                let response = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("viewer_jwt.jwks_url: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!(
                        "viewer_jwt.jwks_url: {} answered {}",
                        url,
                        response.status()
                    ));
                }
                response
                    .text()
                    .await
                    .map_err(|e| format!("viewer_jwt.jwks_url: {e}"))?
            }
            (None, Some(file)) => tokio::fs::read_to_string(file)
                .await
                .map_err(|e| format!("viewer_jwt.jwks_file: {}: {e}", file.display()))?,
            (None, None) => return Err("viewer_jwt: no JWKS source".into()),
        };
        serde_json::from_str(&text).map_err(|e| format!("viewer_jwt: the JWKS is not valid: {e}"))
    }

    /// Refetches the set (background refresh); keeps the old one on failure.
    pub async fn refresh(&self) {
        match self.fetch().await {
            Ok(set) => {
                self.keys.store(Arc::new(set));
                *self.last_fetch.lock().await = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys"),
        }
    }

    /// Verifies a viewer JWT.
    pub async fn verify(&self, token: &str) -> Result<Viewer, AppError> {
        let unauthenticated =
            |why: String| AppError::Unauthenticated(format!("viewer token: {why}"));
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| unauthenticated(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(unauthenticated(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .clone()
            .ok_or_else(|| unauthenticated("the header has no `kid`".into()))?;
        let mut jwk = self.keys.load().find(&kid).cloned();
        if jwk.is_none() && self.config.jwks_url.is_some() {
            // A new signing key at the provider: refetch, at most every 10 s.
            let mut last = self.last_fetch.lock().await;
            if last.is_none_or(|t| t.elapsed() >= REFETCH_SPACING) {
                *last = Some(Instant::now());
                drop(last);
                if let Ok(set) = self.fetch().await {
                    self.keys.store(Arc::new(set));
                }
                jwk = self.keys.load().find(&kid).cloned();
            }
        }
        let jwk = jwk.ok_or_else(|| unauthenticated(format!("no key `{kid}` in the JWKS")))?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| unauthenticated(format!("key `{kid}`: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| unauthenticated(e.to_string()))?;
        let subject = data.claims["sub"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthenticated("`sub` must be a non-empty string".into()))?
            .to_owned();
        let channels = match &data.claims[self.config.channels_claim.as_str()] {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        Ok(Viewer { subject, channels })
    }
}
