//! The sections of many replicas: where the keys are kept (`keys.store`)
//! and the coordination table (`[coordination]`), with their checks.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, IvsMode};

/// Where the private keys are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum KeyStoreKind {
    /// `keys.dir` on this replica's disk.
    Dir,
    /// AWS Secrets Manager, one secret per key.
    SecretsManager,
}

/// `[coordination]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CoordinationConfig {
    /// The DynamoDB table; unset, this replica runs alone.
    pub table: Option<String>,
    /// Endpoint override (tests, moto).
    pub endpoint_url: Option<String>,
    /// How often a replica reads the table.
    pub poll_seconds: u64,
    /// How long the rotation lease lasts without renewal.
    pub lease_seconds: u64,
    /// How often a replica writes its heartbeat.
    pub heartbeat_seconds: u64,
    /// Stores unreachable this long: /readyz answers not ready.
    pub stale_after_seconds: u64,
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        Self {
            table: None,
            endpoint_url: None,
            poll_seconds: 5,
            lease_seconds: 30,
            heartbeat_seconds: 10,
            stale_after_seconds: 60,
        }
    }
}

/// What Secrets Manager allows in a secret's name.
fn secret_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)
}

/// An endpoint override: `http://` or `https://` and a host; with
/// `carries_keys`, `http://` only to loopback.
fn check_endpoint(key: &str, url: &str, carries_keys: bool) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or_default();
    if rest.is_empty() || rest.starts_with('/') {
        return Err(ConfigError(format!(
            "{key}: must be a URL such as http://127.0.0.1:5000 or https://dynamodb.us-west-2.amazonaws.com, got `{url}`"
        )));
    }
    // Private keys travel to Secrets Manager: in cleartext only over
    // loopback (a local test server), never across a network.
    if carries_keys && url.starts_with("http://") && !loopback_host(rest) {
        return Err(ConfigError(format!(
            "{key}: `{url}` would send private keys in cleartext; use https://, or http:// only to a loopback address (127.0.0.1, [::1], localhost)"
        )));
    }
    Ok(())
}

/// Whether the host of `authority[/path]` is a loopback address.
fn loopback_host(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Config {
    /// Whether replicas share keys and coordinate through AWS.
    pub(crate) fn shared_store(&self) -> bool {
        self.keys.store == KeyStoreKind::SecretsManager
    }

    /// Checks `keys.store`, `keys.secret_prefix` and `[coordination]`.
    pub(super) fn validate_replicas(&self) -> Result<(), ConfigError> {
        let err = |key: &str, why: String| Err(ConfigError(format!("{key}: {why}")));
        let c = &self.coordination;
        let prefix = &self.keys.secret_prefix;
        if prefix.is_empty() || prefix.len() > 480 || !prefix.chars().all(secret_name_char) {
            return err(
                "keys.secret_prefix",
                format!(
                    "must be 1 to 480 characters of letters, digits and /_+=.@- (what Secrets Manager allows in a name; the key's fingerprint follows it), got `{prefix}`"
                ),
            );
        }
        if let Some(url) = &self.keys.secrets_endpoint_url {
            check_endpoint("keys.secrets_endpoint_url", url, true)?;
        }
        if let Some(url) = &c.endpoint_url {
            check_endpoint("coordination.endpoint_url", url, false)?;
        }
        if let Some(table) = &c.table {
            let ok = (3..=255).contains(&table.len())
                && table
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch));
            if !ok {
                return err(
                    "coordination.table",
                    format!(
                        "must be 3 to 255 letters, digits, `_`, `.` or `-` (a DynamoDB table name), got `{table}`"
                    ),
                );
            }
        }
        match (self.keys.store, &c.table) {
            (KeyStoreKind::SecretsManager, None) => {
                return err(
                    "coordination.table",
                    "keys.store = \"secrets-manager\" keeps the rotation state in the coordination table: name one (create it with `ivs-playback-auth coordination create-table --config FILE`)".into(),
                );
            }
            (KeyStoreKind::Dir, Some(_)) => {
                return err(
                    "keys.store",
                    "must be \"secrets-manager\" with coordination.table: replicas share their keys through Secrets Manager, a key directory is one replica's".into(),
                );
            }
            _ => {}
        }
        if self.shared_store() && self.ivs.mode == IvsMode::Local {
            return err(
                "ivs.mode",
                "must be \"aws\" with keys.store = \"secrets-manager\": the embedded local IVS lives inside one replica (point ivs.endpoint_url at a `local-ivs` to try many replicas locally)".into(),
            );
        }
        for (key, value, min, max) in [
            ("coordination.poll_seconds", c.poll_seconds, 1, 300),
            ("coordination.lease_seconds", c.lease_seconds, 2, 600),
            (
                "coordination.heartbeat_seconds",
                c.heartbeat_seconds,
                1,
                300,
            ),
            (
                "coordination.stale_after_seconds",
                c.stale_after_seconds,
                2,
                3600,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return err(key, format!("must be {min} to {max} (s), got {value}"));
            }
        }
        // Readiness must not flap at one slow poll or heartbeat.
        let slowest = c.poll_seconds.max(c.heartbeat_seconds);
        if c.stale_after_seconds < 2 * slowest {
            return err(
                "coordination.stale_after_seconds",
                format!(
                    "must be at least twice the longer of coordination.poll_seconds and coordination.heartbeat_seconds ({} s), got {}",
                    2 * slowest,
                    c.stale_after_seconds
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(toml: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, toml).unwrap();
        Config::load(Some(Path::new(&file))).map_err(|e| e.to_string())
    }

    const AWS: &str = "[ivs]\nmode = \"aws\"\n";

    #[test]
    fn replicas_need_secrets_manager_and_a_table_together_in_aws_mode() {
        let ok = load(&format!(
            "{AWS}[keys]\nstore = \"secrets-manager\"\n[coordination]\ntable = \"ivs-auth\"\n"
        ))
        .unwrap();
        assert!(ok.shared_store() && ok.generate_keys());
        let e = load(&format!("{AWS}[keys]\nstore = \"secrets-manager\"\n")).unwrap_err();
        assert!(
            e.contains("coordination.table") && e.contains("create-table"),
            "{e}"
        );
        let e = load(&format!("{AWS}[coordination]\ntable = \"ivs-auth\"\n")).unwrap_err();
        assert!(
            e.contains("keys.store") && e.contains("secrets-manager"),
            "{e}"
        );
        let e = load("[keys]\nstore = \"secrets-manager\"\n[coordination]\ntable = \"ivs-auth\"\n")
            .unwrap_err();
        assert!(e.contains("ivs.mode") && e.contains("local-ivs"), "{e}");
        let e = load("[keys]\nstore = \"s3\"\n").unwrap_err();
        assert!(e.contains("keys.store"), "{e}");
        // A key directory in aws mode still generates nothing by default.
        assert!(!load(AWS).unwrap().generate_keys());
    }

    #[test]
    fn names_endpoints_and_intervals_are_checked_with_the_rule() {
        let shared = |extra: &str| {
            load(&format!(
                "{AWS}[keys]\nstore = \"secrets-manager\"\n{extra}\n[coordination]\ntable = \"ivs-auth\"\n"
            ))
        };
        let e = shared("secret_prefix = \"has:colon/\"").unwrap_err();
        assert!(
            e.contains("keys.secret_prefix") && e.contains("/_+=.@-"),
            "{e}"
        );
        let e = shared("secrets_endpoint_url = \"127.0.0.1:5000\"").unwrap_err();
        assert!(
            e.contains("keys.secrets_endpoint_url") && e.contains("http://"),
            "{e}"
        );
        let e = shared("secrets_endpoint_url = \"http://secrets.internal:5000\"").unwrap_err();
        assert!(
            e.contains("keys.secrets_endpoint_url") && e.contains("cleartext"),
            "{e}"
        );
        for ok in [
            "http://127.0.0.1:5000",
            "http://[::1]:5000/",
            "http://localhost:5000",
            "https://secretsmanager.us-west-2.amazonaws.com",
        ] {
            assert!(
                shared(&format!("secrets_endpoint_url = \"{ok}\"")).is_ok(),
                "{ok}"
            );
        }
        let with = |coordination: &str| {
            load(&format!(
                "{AWS}[keys]\nstore = \"secrets-manager\"\n[coordination]\n{coordination}\n"
            ))
        };
        let e = with("table = \"a b\"").unwrap_err();
        assert!(
            e.contains("coordination.table") && e.contains("DynamoDB"),
            "{e}"
        );
        let with = |more: &str| with(&format!("table = \"ivs-auth\"\n{more}"));
        let e = with("poll_seconds = 0").unwrap_err();
        assert!(
            e.contains("coordination.poll_seconds") && e.contains("1 to 300"),
            "{e}"
        );
        let e = with("poll_seconds = 40").unwrap_err();
        assert!(
            e.contains("coordination.stale_after_seconds") && e.contains("80"),
            "{e}"
        );
        with("poll_seconds = 1\nheartbeat_seconds = 1\nstale_after_seconds = 2\nlease_seconds = 2")
            .unwrap();
    }
}
