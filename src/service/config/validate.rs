//! Start-up checks of the configuration: every error names its key.

use std::collections::BTreeMap;

use super::{Config, ConfigError, OriginList, sha256_from_hex};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, why: String| Err(ConfigError(format!("{key}: {why}")));
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
            if sha256_from_hex(&key.sha256).is_none() {
                return err(
                    &at("sha256"),
                    "must be 64 lowercase hex digits (sha256sum of the key)".into(),
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

/// figment's error, with the key path first.
pub(super) fn figment_message(e: &figment::Error) -> String {
    let mut out = Vec::new();
    for e in e.clone() {
        let key = e.path.join(".");
        let message = e.kind.to_string();
        out.push(if key.is_empty() {
            message
        } else {
            format!("{key}: {message}")
        });
    }
    out.join("; ")
}
