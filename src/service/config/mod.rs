//! The service's configuration, every section of it: a TOML file, then
//! `IVS_AUTH__SECTION__KEY` environment overrides, checked at start-up with
//! errors that name the key. With no file at all, the zero-config defaults
//! run everything locally.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

mod replicas;
mod validate;

pub(crate) use self::replicas::{CoordinationConfig, KeyStoreKind};
#[cfg(test)]
mod deploy_examples;

use self::validate::figment_message;
use super::origins::OriginList;
use super::server::ConnectionLimits;
use crate::MaximumResolution;

/// The whole configuration, as read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// The HTTP listener and its limits.
    pub server: ServerConfig,
    /// Where IVS is.
    pub ivs: IvsConfig,
    /// Where the signing key is.
    pub keys: KeysConfig,
    /// Token lifetimes and sharing.
    pub tokens: TokensConfig,
    /// The channel cache.
    pub channels: ChannelsConfig,
    /// Trusted backends, each with its entitlements.
    pub api_keys: Vec<ApiKeyConfig>,
    /// Access without credentials, for channels marked so.
    pub anonymous: AnonymousConfig,
    /// Pseudonymous viewer ids.
    pub viewer_ids: ViewerIdConfig,
    /// Mint-time network policy.
    pub policy: PolicyConfig,
    /// Viewer JWTs from the application's identity provider.
    pub viewer_jwt: Option<ViewerJwtConfig>,
    /// The admin API (off without it).
    pub admin: Option<AdminConfig>,
    /// Key rotation.
    pub rotation: RotationConfig,
    /// Many replicas: the DynamoDB table they coordinate through.
    pub coordination: CoordinationConfig,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerConfig {
    /// Address of the token API.
    pub listen: SocketAddr,
    /// The URL clients reach the token API at, when it is not `listen`
    /// (a container's published port, a proxy): printed at start-up, and in
    /// local mode the base of playback URLs (the token API's listener serves
    /// the local IVS's playback edge too).
    pub public_url: Option<String>,
    /// Requests taking longer are answered 503.
    pub request_timeout_ms: u64,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// A request's headers must arrive within this (and an idle keep-alive
    /// connection is closed after it).
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this (else 408).
    pub body_read_timeout_ms: u64,
    /// A connection whose client takes none of an answer for this long is
    /// closed (a client that sends requests but never reads the answers).
    pub write_timeout_ms: u64,
    /// Open connections at most, on the token API (the admin API and the
    /// embedded local IVS have their own, smaller shares).
    pub max_connections: usize,
    /// Open connections at most from one client address (an IPv6 client:
    /// its /64).
    pub max_connections_per_ip: usize,
    /// TLS on both listeners: the certificate chain (PEM), with
    /// `tls_key_file`; both files are read again when they change.
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// How often the TLS files are checked for a change.
    pub tls_reload_seconds: u64,
    /// Browser origins allowed to call the API directly (CORS); `*` for any.
    pub cors_origins: Vec<String>,
    /// Seconds to let in-flight requests finish on shutdown.
    pub shutdown_grace_seconds: u64,
    /// The built viewer page (`viewer/`: `npm ci && npm run build`), served
    /// at `/viewer/` when the directory exists.
    pub viewer_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            request_timeout_ms: 5_000,
            max_body_bytes: 64 * 1024,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 10_000,
            write_timeout_ms: 30_000,
            max_connections: 1024,
            max_connections_per_ip: 128,
            tls_cert_file: None,
            tls_key_file: None,
            tls_reload_seconds: 30,
            cors_origins: Vec::new(),
            shutdown_grace_seconds: 10,
            viewer_dir: PathBuf::from("viewer/dist"),
        }
    }
}

/// `[ivs]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct IvsConfig {
    /// `local`: start the embedded local IVS (the zero-config default);
    /// `aws`: talk to IVS through aws-sdk-ivs with the default credential chain.
    pub mode: IvsMode,
    /// AWS region (aws mode; default from the environment's AWS config).
    pub region: Option<String>,
    /// Endpoint override (aws mode), e.g. a local IVS started elsewhere.
    pub endpoint_url: Option<String>,
    /// Where the embedded local IVS listens (local mode).
    pub local_listen: SocketAddr,
    /// In local mode, create a private channel named `demo` (anonymous access).
    pub demo_channel: bool,
}

impl Default for IvsConfig {
    fn default() -> Self {
        Self {
            mode: IvsMode::Local,
            region: None,
            endpoint_url: None,
            local_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            demo_channel: true,
        }
    }
}

/// Which IVS the service talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum IvsMode {
    /// The embedded local IVS.
    Local,
    /// Amazon IVS (or an endpoint override).
    Aws,
}

/// `[keys]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KeysConfig {
    /// Where the private keys are kept: `dir` or `secrets-manager`.
    pub store: KeyStoreKind,
    /// The directory key store.
    pub dir: PathBuf,
    /// Secrets Manager: each key is the secret `<prefix><fingerprint>`.
    pub secret_prefix: String,
    /// Secrets Manager endpoint override (tests, moto).
    pub secrets_endpoint_url: Option<String>,
    /// Generate the first key when the store has none (on by default in
    /// local mode and with Secrets Manager, where it never touches a disk).
    pub generate_if_missing: Option<bool>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            store: KeyStoreKind::Dir,
            dir: PathBuf::from("keys"),
            secret_prefix: "ivs-playback-auth/".into(),
            secrets_endpoint_url: None,
            generate_if_missing: None,
        }
    }
}

/// `[tokens]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TokensConfig {
    /// Lifetime when the caller does not ask for one.
    pub default_ttl_seconds: u64,
    /// Shareable tokens' `exp` is aligned to this many seconds, so that one
    /// signature serves every request in the bucket.
    pub share_bucket_seconds: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            default_ttl_seconds: 300,
            share_bucket_seconds: 30,
        }
    }
}

/// `[channels]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ChannelsConfig {
    /// How often the cache is refreshed from IVS in the background.
    pub refresh_seconds: u64,
    /// How long an unknown channel is remembered as unknown.
    pub negative_ttl_seconds: u64,
    /// Mint tokens for public channels too (they are pointless: IVS ignores
    /// them); otherwise 409.
    pub allow_public: bool,
    /// Apply a private channel's playback restriction policy (countries,
    /// origins, strict enforcement) when minting: IVS ignores it there. Off,
    /// policies are not even read.
    pub enforce_restriction_policies: bool,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            refresh_seconds: 60,
            negative_ttl_seconds: 10,
            allow_public: false,
            enforce_restriction_policies: true,
        }
    }
}

/// `[[api_keys]]`: one trusted backend.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyConfig {
    /// Who this is, for logs and audit.
    pub name: String,
    /// Hex SHA-256 of the key the caller sends in `X-Api-Key` (either case).
    pub sha256: String,
    /// Channels it may mint for: ARNs, names, or globs (`team-*`, `*`).
    pub channels: Vec<String>,
    /// Longest lifetime it may ask for.
    #[serde(default = "default_max_ttl")]
    pub max_ttl_seconds: u64,
    /// Origins put in tokens when the caller names none.
    #[serde(default)]
    pub default_origins: Vec<String>,
    /// Origins the caller may ask for (empty: only the defaults).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// May ask for single-use tokens.
    #[serde(default)]
    pub allow_single_use: bool,
    /// Resolutions it may ask for (empty: any). Tokens without a cap are
    /// refused when this is set.
    #[serde(default)]
    pub allowed_resolutions: Vec<MaximumResolution>,
    /// Requests per second (token bucket; burst of the same size).
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
}

fn default_max_ttl() -> u64 {
    600
}

fn default_rate() -> u32 {
    100
}

/// `[anonymous]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AnonymousConfig {
    /// Channels anyone may get a token for: ARNs, names or globs.
    pub channels: Vec<String>,
    /// Lifetime of anonymous tokens.
    pub ttl_seconds: u64,
    /// Origins put in anonymous tokens (hotlink protection).
    pub origins: Vec<String>,
    /// Requests per second per client IP.
    pub rate_per_ip_per_second: u32,
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            ttl_seconds: 300,
            origins: Vec::new(),
            rate_per_ip_per_second: 10,
        }
    }
}

/// `[viewer_ids]`
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ViewerIdConfig {
    /// At least 32 bytes; viewer ids are HMAC-SHA-256 of the user id with it.
    /// Generated per run when absent (ids then change at every restart).
    #[serde(serialize_with = "never_serialize_secret")]
    pub secret: Option<SecretString>,
}

fn never_serialize_secret<S: serde::Serializer>(
    _: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_none()
}

/// `[policy]`
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PolicyConfig {
    /// Client networks allowed to mint (empty: all).
    pub allow_cidrs: Vec<IpNet>,
    /// Client networks refused.
    pub deny_cidrs: Vec<IpNet>,
    /// Header carrying the viewer's country, trusted only when set (e.g.
    /// `CloudFront-Viewer-Country`).
    pub country_header: Option<String>,
    /// Countries allowed (ISO 3166 alpha-2; empty: all).
    pub allow_countries: Vec<String>,
    /// Countries refused.
    pub deny_countries: Vec<String>,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminConfig {
    /// Where the admin API listens; keep it on loopback or a private network.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// Hex SHA-256 of the bearer token admins send (either case).
    pub token_sha256: String,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

impl AdminConfig {
    /// Checks the section; errors name the key.
    pub(crate) fn validate(&self) -> Result<[u8; 32], String> {
        sha256_from_hex(&self.token_sha256).ok_or_else(|| {
            "admin.token_sha256: must be 64 hex digits (printf %s TOKEN | sha256sum)".into()
        })
    }
}

/// `[viewer_jwt]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ViewerJwtConfig {
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
    pub(crate) fn validate(&self) -> Result<Vec<Algorithm>, String> {
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
        OriginList::from_config(&self.origins)
            .map_err(|(i, e)| format!("viewer_jwt.origins[{i}]: {e}"))?;
        Ok(algorithms)
    }
}

/// `[rotation]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotationConfig {
    /// Rotate on a schedule every this many seconds; 0 = only when asked.
    #[serde(default)]
    pub interval_seconds: u64,
    /// Margin kept after a retired key's last token expires before the key
    /// is deleted (clock skew between here and IVS).
    #[serde(default = "default_skew")]
    pub skew_seconds: u64,
    /// How often retired keys are checked for deletion, and the key store for
    /// changes made by another process (`keys rotate`).
    #[serde(default = "default_sweep")]
    pub sweep_seconds: u64,
    /// How often the key pairs IVS holds are compared with the store (an
    /// active key deleted in the console is imported again).
    #[serde(default = "default_reconcile")]
    pub reconcile_seconds: u64,
    /// A private channel (ARN or name) whose playback URL must accept a
    /// canary token of the new key before it signs. The channel must be live
    /// for real IVS to answer 200. Local mode uses the demo channel.
    #[serde(default)]
    pub canary_channel: Option<String>,
}

fn default_skew() -> u64 {
    60
}
fn default_sweep() -> u64 {
    15
}
fn default_reconcile() -> u64 {
    300
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            interval_seconds: 0,
            skew_seconds: default_skew(),
            sweep_seconds: default_sweep(),
            reconcile_seconds: default_reconcile(),
            canary_channel: None,
        }
    }
}

/// A SHA-256 written as 64 hex digits, as API keys and the admin token are
/// stored: `sha256sum` prints lower case, other tools upper case, and both
/// name the same hash.
pub(crate) fn sha256_from_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

/// Environment variables `IVS_AUTH__SECTION__KEY` override the file.
const ENV_PREFIX: &str = "IVS_AUTH__";
const ENV_SEPARATOR: &str = "__";

/// The environment variable that sets the key at `path`.
fn env_var(path: &[impl AsRef<str>]) -> String {
    let keys: Vec<String> = path
        .iter()
        .map(|k| k.as_ref().to_ascii_uppercase())
        .collect();
    format!("{ENV_PREFIX}{}", keys.join(ENV_SEPARATOR))
}

/// A configuration that could not be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub(crate) struct ConfigError(pub String);

impl Config {
    /// Reads the file (if any) and the environment, then checks everything.
    pub(crate) fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => {}
                Ok(_) => {
                    return Err(ConfigError(format!(
                        "{}: is a directory (or not a regular file); give the TOML file itself",
                        path.display()
                    )));
                }
                Err(e) => return Err(ConfigError(format!("{}: {e}", path.display()))),
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed(ENV_PREFIX).split(ENV_SEPARATOR);
        let env_name = figment::Provider::metadata(&env).name;
        figment = figment.merge(env);
        // An error is blamed on where its value came from: the environment
        // variable that overrode the key, else the file.
        let blame = |message: String, from_env: bool| match file {
            _ if from_env => ConfigError(message),
            Some(path) => ConfigError(format!("{}: {message}", path.display())),
            None => ConfigError(message),
        };
        let config: Config = figment.extract().map_err(|e| {
            let (message, from_env) = figment_message(&e, &env_name);
            blame(message, from_env)
        })?;
        config.validate().map_err(|ConfigError(message)| {
            // Validation names the key first (`server.max_connections: ...`).
            let key = message.split_once(": ").map_or("", |(key, _)| key);
            let from_env = figment
                .find_metadata(key)
                .is_some_and(|m| m.name == env_name);
            if from_env {
                let var = env_var(&key.split('.').collect::<Vec<_>>());
                blame(format!("{var} (environment variable): {message}"), true)
            } else {
                blame(message, false)
            }
        })?;
        Ok(config)
    }

    /// Whether a missing key is generated: by default in local mode, and
    /// in Secrets Manager, where a fresh deployment's first key is made in
    /// memory and shared at once. A key directory in aws mode is not: a
    /// volume forgotten would otherwise make a new key at every start.
    pub(crate) fn generate_keys(&self) -> bool {
        self.keys
            .generate_if_missing
            .unwrap_or(self.ivs.mode == IvsMode::Local || self.shared_store())
    }

    /// The longest TTL any caller can be granted: a retired key's tokens
    /// have all expired this long after it stopped signing.
    pub(crate) fn longest_ttl(&self) -> Duration {
        let longest = self
            .api_keys
            .iter()
            .map(|k| k.max_ttl_seconds)
            .chain([
                self.tokens.default_ttl_seconds,
                self.anonymous.ttl_seconds,
                self.viewer_jwt.as_ref().map_or(0, |v| v.max_ttl_seconds),
            ])
            .max()
            .unwrap_or(0);
        Duration::from_secs(longest)
    }

    /// The request timeout.
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.server.request_timeout_ms)
    }

    /// The connection limits as configured (the token API's).
    pub(crate) fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_millis(self.server.header_read_timeout_ms),
            write_timeout: Duration::from_millis(self.server.write_timeout_ms),
            max_connections: self.server.max_connections,
            max_connections_per_ip: self.server.max_connections_per_ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_config_is_local_with_generated_keys() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.ivs.mode, IvsMode::Local);
        assert!(config.generate_keys());
    }

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let example = Config::load(Some(&path)).unwrap();
        let defaults = Config::default();
        assert_eq!(
            serde_json::to_value(&example).unwrap(),
            serde_json::to_value(&defaults).unwrap()
        );
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nlisten = 5\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("server.listen"), "{e}");
        std::fs::write(&file, "[tokens]\nshare_bucket_seconds = 0\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("tokens.share_bucket_seconds"), "{e}");
        std::fs::write(
            &file,
            "[[api_keys]]\nname='a'\nsha256='xyz'\nchannels=['*']\n",
        )
        .unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("api_keys[0].sha256"), "{e}");
        for (url, rule) in [
            ("127.0.0.1:8080", "must start with http://"),
            ("http://", "has no host"),
            ("http://127.0.0.1:8080/api", "without `/`"),
            ("https://auth.example.com?x=1", "without `?`"),
        ] {
            std::fs::write(&file, format!("[server]\npublic_url = '{url}'\n")).unwrap();
            let e = Config::load(Some(&file)).unwrap_err().to_string();
            assert!(e.contains("server.public_url") && e.contains(rule), "{e}");
            assert!(e.contains("http://HOST:PORT"), "the fix is named: {e}");
        }
        for url in [
            "http://127.0.0.1:8080",
            "https://auth.example.com/",
            "http://[::1]:80",
        ] {
            std::fs::write(&file, format!("[server]\npublic_url = '{url}'\n")).unwrap();
            Config::load(Some(&file)).unwrap();
        }
        std::fs::write(&file, "[serverx]\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("serverx"), "{e}");
    }

    #[test]
    fn hashes_are_hex_in_either_case_and_compared_so() {
        let lower = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let upper = lower.to_ascii_uppercase();
        assert_eq!(sha256_from_hex(lower), sha256_from_hex(&upper));
        assert!(sha256_from_hex(&upper).is_some());
        assert!(sha256_from_hex(&lower.replace('f', "g")).is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let key = |name: &str, hash: &str| {
            format!("[[api_keys]]\nname = '{name}'\nsha256 = '{hash}'\nchannels = ['*']\n")
        };
        std::fs::write(&file, key("a", &upper)).unwrap();
        Config::load(Some(&file)).unwrap();
        std::fs::write(&file, key("a", lower) + &key("b", &upper)).unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(
            e.contains("api_keys[1].sha256") && e.contains("api_keys[0].sha256"),
            "{e}"
        );
        let empty = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        std::fs::write(&file, key("a", empty)).unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("empty string"), "{e}");
    }

    #[test]
    fn the_admin_token_must_not_be_an_api_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        std::fs::write(
            &file,
            format!(
                "[[api_keys]]\nname = 'backend'\nsha256 = '{hash}'\nchannels = ['*']\n[admin]\ntoken_sha256 = '{}'\n",
                hash.to_ascii_uppercase()
            ),
        )
        .unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        for want in [
            "admin.token_sha256",
            "api_keys[0].sha256",
            "`backend`",
            "openssl rand",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
