//! Start-up checks of the configuration: every error names its key.

use std::collections::BTreeMap;

use super::{Config, ConfigError, OriginList, env_var, sha256_from_hex};

/// The longest token lifetime any rule may grant: a day. IVS sets no limit
/// on tokens without a viewer id, but a retired key stays in one of IVS's 3
/// key-pair slots until the last token it signed expired, so a longer TTL
/// would stall rotation for as long (and a TTL in the years is a mistake).
pub(crate) const MAX_TTL_SECONDS: u64 = 86_400;
/// `sha256sum` of nothing: what a hash of an empty token looks like.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Requests per second any one rate limit may allow (governor's buckets
/// stay exact well past this).
const MAX_RATE: u64 = 100_000_000;

/// `server.public_url`: a scheme and an authority, nothing after (it is the
/// base that paths are appended to).
fn check_public_url(url: &str) -> Result<(), String> {
    let fix = "write it as http://HOST:PORT or https://HOST, e.g. http://127.0.0.1:8080";
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("must start with http:// or https:// ({fix}), got `{url}`"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(format!("has no host ({fix}), got `{url}`"));
    }
    if let Some(c) = authority
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "must be a scheme and host[:port] only, without `{c}` (a path, query, fragment or user: {fix}), got `{url}`"
        ));
    }
    Ok(())
}

impl Config {
    /// Every number within bounds from the IVS rules and common sense; the
    /// error names the key, the bounds and the unit.
    fn check_numbers(&self) -> Result<(), ConfigError> {
        const DAY: u64 = 86_400;
        let mut numbers: Vec<(String, u64, u64, u64, &str)> = vec![
            (
                "tokens.default_ttl_seconds".into(),
                self.tokens.default_ttl_seconds,
                1,
                MAX_TTL_SECONDS,
                "s",
            ),
            (
                "tokens.share_bucket_seconds".into(),
                self.tokens.share_bucket_seconds,
                1,
                300,
                "s",
            ),
            (
                "server.request_timeout_ms".into(),
                self.server.request_timeout_ms,
                1,
                600_000,
                "ms",
            ),
            (
                "server.header_read_timeout_ms".into(),
                self.server.header_read_timeout_ms,
                100,
                600_000,
                "ms",
            ),
            (
                "server.body_read_timeout_ms".into(),
                self.server.body_read_timeout_ms,
                100,
                600_000,
                "ms",
            ),
            (
                "server.write_timeout_ms".into(),
                self.server.write_timeout_ms,
                100,
                600_000,
                "ms",
            ),
            (
                "server.max_body_bytes".into(),
                self.server.max_body_bytes as u64,
                256,
                16 << 20,
                "bytes",
            ),
            (
                "server.max_connections".into(),
                self.server.max_connections as u64,
                1,
                1_000_000,
                "connections",
            ),
            (
                "server.shutdown_grace_seconds".into(),
                self.server.shutdown_grace_seconds,
                0,
                600,
                "s",
            ),
            (
                "server.tls_reload_seconds".into(),
                self.server.tls_reload_seconds,
                1,
                DAY,
                "s",
            ),
            (
                "channels.refresh_seconds".into(),
                self.channels.refresh_seconds,
                1,
                DAY,
                "s",
            ),
            (
                "channels.negative_ttl_seconds".into(),
                self.channels.negative_ttl_seconds,
                0,
                3_600,
                "s",
            ),
            (
                "anonymous.ttl_seconds".into(),
                self.anonymous.ttl_seconds,
                1,
                MAX_TTL_SECONDS,
                "s",
            ),
            (
                "anonymous.rate_per_ip_per_second".into(),
                u64::from(self.anonymous.rate_per_ip_per_second),
                1,
                MAX_RATE,
                "requests/s",
            ),
            (
                "rotation.interval_seconds".into(),
                self.rotation.interval_seconds,
                0,
                366 * DAY,
                "s (0: only when asked)",
            ),
            (
                "rotation.skew_seconds".into(),
                self.rotation.skew_seconds,
                0,
                3_600,
                "s",
            ),
            (
                "rotation.sweep_seconds".into(),
                self.rotation.sweep_seconds,
                1,
                3_600,
                "s",
            ),
            (
                "rotation.reconcile_seconds".into(),
                self.rotation.reconcile_seconds,
                1,
                DAY,
                "s",
            ),
        ];
        for (i, key) in self.api_keys.iter().enumerate() {
            numbers.push((
                format!("api_keys[{i}].max_ttl_seconds"),
                key.max_ttl_seconds,
                1,
                MAX_TTL_SECONDS,
                "s",
            ));
            numbers.push((
                format!("api_keys[{i}].rate_per_second"),
                u64::from(key.rate_per_second),
                1,
                MAX_RATE,
                "requests/s",
            ));
        }
        if let Some(v) = &self.viewer_jwt {
            numbers.push((
                "viewer_jwt.jwks_refresh_seconds".into(),
                v.jwks_refresh_seconds,
                10,
                DAY,
                "s",
            ));
            numbers.push((
                "viewer_jwt.leeway_seconds".into(),
                v.leeway_seconds,
                0,
                600,
                "s",
            ));
        }
        for (key, value, min, max, unit) in numbers {
            if !(min..=max).contains(&value) {
                return Err(ConfigError(format!(
                    "{key}: must be {min} to {max} ({unit}), got {value}"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, why: String| Err(ConfigError(format!("{key}: {why}")));
        self.check_numbers()?;
        self.validate_replicas()?;
        // IVS holds 3 key pairs; a retired key keeps its slot for the longest
        // TTL plus the skew. Rotating faster than every half of that would
        // fill the slots and every later scheduled rotation would fail.
        let retire = self.longest_ttl().as_secs() + self.rotation.skew_seconds;
        let fastest = retire.div_ceil(2);
        if self.rotation.interval_seconds > 0 && self.rotation.interval_seconds < fastest {
            return err(
                "rotation.interval_seconds",
                format!(
                    "must be 0 or at least {fastest} s: a retired key holds one of IVS's 3 key-pair slots for the longest token lifetime plus rotation.skew_seconds ({retire} s), so rotating faster fills them; got {}",
                    self.rotation.interval_seconds
                ),
            );
        }
        if let Some(url) = &self.server.public_url {
            check_public_url(url)
                .map_err(|why| ConfigError(format!("server.public_url: {why}")))?;
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            return err(
                "server.tls_cert_file",
                "give both server.tls_cert_file and server.tls_key_file, or neither".into(),
            );
        }
        if self.tokens.default_ttl_seconds == 0 {
            return err("tokens.default_ttl_seconds", "must be at least 1".into());
        }
        if self.tokens.share_bucket_seconds == 0 || self.tokens.share_bucket_seconds > 300 {
            return err("tokens.share_bucket_seconds", "must be 1 to 300".into());
        }
        if self.server.max_body_bytes < 256 {
            return err("server.max_body_bytes", "must be at least 256".into());
        }
        if self.server.request_timeout_ms == 0 {
            return err("server.request_timeout_ms", "must be at least 1".into());
        }
        for (key, ms) in [
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms,
            ),
            (
                "server.body_read_timeout_ms",
                self.server.body_read_timeout_ms,
            ),
        ] {
            if !(100..=600_000).contains(&ms) {
                return err(key, format!("must be 100 to 600000 (ms), got {ms}"));
            }
        }
        if self.server.max_connections == 0 || self.server.max_connections > 1_000_000 {
            return err("server.max_connections", "must be 1 to 1000000".into());
        }
        if self.server.max_connections_per_ip == 0
            || self.server.max_connections_per_ip > self.server.max_connections
        {
            return err(
                "server.max_connections_per_ip",
                format!(
                    "must be 1 to server.max_connections ({})",
                    self.server.max_connections
                ),
            );
        }
        if self.anonymous.rate_per_ip_per_second == 0 {
            return err(
                "anonymous.rate_per_ip_per_second",
                "must be at least 1".into(),
            );
        }
        // Anonymous tokens always name their origins: no `*` here.
        for (i, origin) in self.anonymous.origins.iter().enumerate() {
            if let Err(e) = crate::Origin::parse(origin) {
                return err(&format!("anonymous.origins[{i}]"), e.to_string());
            }
        }
        if let Err((i, e)) = OriginList::from_config(&self.server.cors_origins) {
            return err(&format!("server.cors_origins[{i}]"), e.to_string());
        }
        let mut names = BTreeMap::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            let at = |field: &str| format!("api_keys[{i}].{field}");
            if key.name.is_empty() {
                return err(&at("name"), "must not be empty".into());
            }
            if names.insert(key.name.clone(), i).is_some() {
                return err(&at("name"), format!("`{}` is used twice", key.name));
            }
            if let Some(j) = self.api_keys[..i]
                .iter()
                .position(|k| k.sha256.eq_ignore_ascii_case(&key.sha256))
            {
                return err(
                    &at("sha256"),
                    format!(
                        "is also api_keys[{j}].sha256 (`{}`): one key would silently act as the other; give each backend its own key",
                        self.api_keys[j].name
                    ),
                );
            }
            if key.sha256.eq_ignore_ascii_case(EMPTY_SHA256) {
                return err(
                    &at("sha256"),
                    "is the SHA-256 of the empty string: no API key is empty; hash the key itself (printf %s KEY | sha256sum)".into(),
                );
            }
            if sha256_from_hex(&key.sha256).is_none() {
                return err(
                    &at("sha256"),
                    "must be 64 hex digits (printf %s KEY | sha256sum)".into(),
                );
            }
            if key.channels.is_empty() {
                return err(
                    &at("channels"),
                    "must list at least one channel or glob".into(),
                );
            }
            if key.max_ttl_seconds == 0 {
                return err(&at("max_ttl_seconds"), "must be at least 1".into());
            }
            if key.rate_per_second == 0 {
                return err(&at("rate_per_second"), "must be at least 1".into());
            }
            for (field, list) in [
                ("default_origins", &key.default_origins),
                ("allowed_origins", &key.allowed_origins),
            ] {
                if let Err((j, e)) = OriginList::from_config(list) {
                    return err(&at(&format!("{field}[{j}]")), e.to_string());
                }
            }
        }
        if let Some(admin) = &self.admin {
            admin.validate().map_err(ConfigError)?;
            if admin.token_sha256 == EMPTY_SHA256 {
                return err(
                    "admin.token_sha256",
                    "is the SHA-256 of the empty string: an empty admin token guards nothing; make one (openssl rand -hex 32) and hash it (printf %s TOKEN | sha256sum)".into(),
                );
            }
            if let Some((i, key)) = self
                .api_keys
                .iter()
                .enumerate()
                .find(|(_, k)| k.sha256.eq_ignore_ascii_case(&admin.token_sha256))
            {
                return err(
                    "admin.token_sha256",
                    format!(
                        "is also api_keys[{i}].sha256 (`{}`): the backend holding that API key could rotate and revoke keys; make the admin token its own (openssl rand -hex 32) and hash it (printf %s TOKEN | sha256sum)",
                        key.name
                    ),
                );
            }
        }
        if self.rotation.sweep_seconds == 0 {
            return err("rotation.sweep_seconds", "must be at least 1".into());
        }
        if self.rotation.reconcile_seconds == 0 {
            return err("rotation.reconcile_seconds", "must be at least 1".into());
        }
        if let Some(viewer) = &self.viewer_jwt {
            viewer.validate().map_err(ConfigError)?;
        }
        if let Some(secret) = &self.viewer_ids.secret {
            use secrecy::ExposeSecret as _;
            if secret.expose_secret().len() < 32 {
                return err("viewer_ids.secret", "must be at least 32 bytes".into());
            }
        }
        for (i, c) in self
            .policy
            .allow_countries
            .iter()
            .chain(&self.policy.deny_countries)
            .enumerate()
        {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return err(
                    &format!("policy.countries[{i}]"),
                    format!("`{c}` is not an ISO 3166 alpha-2 code like `DE`"),
                );
            }
        }
        if (!self.policy.allow_countries.is_empty() || !self.policy.deny_countries.is_empty())
            && self.policy.country_header.is_none()
        {
            return err(
                "policy.country_header",
                "is required when country rules are set (which header carries the country?)".into(),
            );
        }
        Ok(())
    }
}

/// figment's error, with the key path first, or the environment variable
/// that set the value (its provider's metadata is named `env_name`); and
/// whether any of it came from the environment.
pub(super) fn figment_message(e: &figment::Error, env_name: &str) -> (String, bool) {
    let mut out = Vec::new();
    let mut from_env = false;
    for e in e.clone() {
        let key = e.path.join(".");
        let message = e.kind.to_string();
        let env = e.metadata.as_ref().is_some_and(|m| m.name == env_name);
        from_env |= env;
        out.push(if env {
            format!(
                "{} (environment variable, for {key}): {message}",
                env_var(&e.path)
            )
        } else if key.is_empty() {
            message
        } else {
            format!("{key}: {message}")
        });
    }
    (out.join("; "), from_env)
}
