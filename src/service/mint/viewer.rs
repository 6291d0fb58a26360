//! Viewer JWTs from the application's identity provider (OIDC): verified
//! against a JWKS (fetched from a URL and cached, or read from a file), with
//! issuer, audience and expiry (plus leeway); a configured claim lists the
//! channels the viewer may watch, and `sub` becomes the pseudonymous
//! `aws:viewer-id`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::Mutex;

use super::refusal::Refusal;
use crate::service::config::ViewerJwtConfig;
use crate::service::outbound::{self, Trust};

/// A verified viewer.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// `sub`.
    pub(crate) subject: String,
    /// The channels of the configured claim.
    pub(crate) channels: Vec<String>,
}

/// The verifier with its cached key set.
pub(crate) struct ViewerAuth {
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
    pub(crate) async fn new(config: ViewerJwtConfig) -> Result<Self, String> {
        let algorithms = config.validate()?;
        let trust = config
            .jwks_url
            .as_deref()
            .map_or(Trust::PlainHttp, Trust::for_url);
        let http = outbound::client(
            trust,
            Duration::from_secs(10),
            "viewer_jwt.jwks_url (HTTPS)",
        )?;
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
    pub(crate) fn refresh_every(&self) -> Duration {
        Duration::from_secs(self.config.jwks_refresh_seconds.max(10))
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
    pub(crate) async fn refresh(&self) {
        match self.fetch().await {
            Ok(set) => {
                self.keys.store(Arc::new(set));
                *self.last_fetch.lock().await = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys"),
        }
    }

    /// Verifies a viewer JWT.
    pub(crate) async fn verify(&self, token: &str) -> Result<Viewer, Refusal> {
        let unauthenticated =
            |why: String| Refusal::Unauthenticated(format!("viewer token: {why}"));
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
