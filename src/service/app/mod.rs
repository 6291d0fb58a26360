//! The wiring: [`Application::build`] reads nothing but its [`Config`]. It
//! starts the embedded local IVS in local mode, brings the keys in line with
//! IVS (loading or generating the signing key), warms the channel cache,
//! builds the mint room and binds the listeners; [`Application::run`] serves
//! until the shutdown future ends, with the background work (`background`:
//! channel refresh, key sweep, scheduled rotation, JWKS refresh, upkeep,
//! and with replicas the poll and the heartbeat) beside it.

mod background;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;

use super::channel::ChannelInfo;
use super::config::{Config, ConfigError, IvsMode, KeyStoreKind};
use super::control::aws;
use super::control::coordination::{Coordination, replica_id};
use super::control::ivs::{Ivs, IvsError, IvsOptions};
use super::control::rotation::{FirstKey, RotationError, Rotator, RotatorOptions, Started};
use super::control::store::{DirStore, SecretsKeys, Store};
use super::http::request::BodyLimits;
use super::http::{self, AppParts, AppState, admin};
use super::ledger::TokenLedger;
use super::local_ivs::{LocalIvs, LocalIvsConfig, LocalIvsError};
use super::mint::Mint;
use super::mint::channels::{ChannelCache, ChannelSource, SourceError, SourceFuture};
use super::mint::limits::Limits;
use super::mint::minter::Minter;
use super::mint::network::NetworkRules;
use super::mint::policy::Policy;
use super::mint::revocation::Revocations;
use super::mint::viewer::ViewerAuth;
use super::outbound::{self, Trust};
use super::server::{self, ConnectionLimits, Tls};
use crate::{ChannelArn, TokenSigner, ViewerIdHasher};

/// The file name of the active key in the key directory.
pub(crate) const KEY_FILE: &str = "playback-key.pem";
/// The region the embedded local IVS serves by default.
const LOCAL_REGION: &str = "us-west-2";

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ServiceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The signing key could not be loaded or made.
    #[error("key: {0}")]
    Key(String),
    /// IVS refused or could not be reached.
    #[error(transparent)]
    Ivs(#[from] IvsError),
    /// The keys could not be reconciled with IVS.
    #[error("keys: {0}")]
    Rotation(#[from] RotationError),
    /// The embedded local IVS could not start.
    #[error("local IVS: {0}")]
    LocalIvs(#[from] LocalIvsError),
    /// A system component the service needs is missing (the CA
    /// certificates for HTTPS).
    #[error("{0}")]
    System(String),
    /// The listener could not be bound or served.
    #[error("listener {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What a user needs to know once the service is up.
#[derive(Debug, Clone)]
pub(crate) struct StartupInfo {
    /// Where the token API listens.
    pub(crate) api_url: String,
    /// Where the admin API listens, when enabled.
    pub(crate) admin_url: Option<String>,
    /// The embedded local IVS, in local mode.
    pub(crate) local_ivs_url: Option<String>,
    /// The demo channel, in local mode.
    pub(crate) demo_channel: Option<ChannelInfo>,
    /// The viewer page, when it was built.
    pub(crate) viewer_url: Option<String>,
    /// The active key's fingerprint.
    pub(crate) fingerprint: String,
    /// Where the active key is kept (a file, a secret).
    pub(crate) key_location: String,
    /// Whether the key was generated now.
    pub(crate) key_generated: bool,
}

/// A built service, ready to run.
pub(crate) struct Application {
    listener: TcpListener,
    router: axum::Router,
    admin: Option<(TcpListener, axum::Router)>,
    state: AppState,
    local_ivs: Option<LocalIvs>,
    mint: Arc<Mint>,
    rotator: Rotator,
    budget: Budget,
    tls: Option<Arc<Tls>>,
    config: Config,
    info: StartupInfo,
}

/// The mint room reaches IVS through the channel cache's seam.
impl ChannelSource for Ivs {
    fn all_channels(&self) -> SourceFuture<'_, Vec<ChannelInfo>> {
        Box::pin(async move { Ivs::all_channels(self).await.map_err(source_error) })
    }

    fn channel(&self, arn: &ChannelArn) -> SourceFuture<'_, Option<ChannelInfo>> {
        let arn = arn.as_str().to_owned();
        Box::pin(async move { Ivs::channel(self, &arn).await.map_err(source_error) })
    }

    fn channel_by_name(&self, name: &str) -> SourceFuture<'_, Option<ChannelInfo>> {
        let name = name.to_owned();
        Box::pin(async move {
            Ivs::channel_by_name(self, &name)
                .await
                .map_err(source_error)
        })
    }
}

fn source_error(e: IvsError) -> SourceError {
    Arc::new(e)
}

/// The IVS client and key store the key commands (`keys rotate`, `keys
/// import`) work on. They need a real (or separately running local) IVS:
/// the embedded one lives only inside `serve`.
pub(crate) async fn key_control(
    config: &Config,
) -> Result<(Ivs, Store, RotatorOptions), ServiceError> {
    if config.ivs.mode == IvsMode::Local {
        return Err(ServiceError::Config(ConfigError(
            "ivs.mode: the embedded local IVS lives inside `serve`; rotate it with POST /admin/v1/keys/rotate, or set ivs.mode = \"aws\" (with ivs.endpoint_url for a separately started `local-ivs`)".into(),
        )));
    }
    let http = canary_client(config)?;
    let ivs = aws_ivs(config).await;
    let store = open_store(config).await?;
    let canary = match &config.rotation.canary_channel {
        Some(name) => Some(canary_channel(&ivs, name, None).await?),
        None => None,
    };
    Ok((ivs, store, rotator_options(config, canary, None, http)))
}

/// The key store `keys.store` names: a directory, or Secrets Manager with
/// the coordination table.
async fn open_store(config: &Config) -> Result<Store, ServiceError> {
    match config.keys.store {
        KeyStoreKind::Dir => Ok(Store::Dir(
            DirStore::open(&config.keys.dir).map_err(|e| ServiceError::Key(e.to_string()))?,
        )),
        KeyStoreKind::SecretsManager => {
            let sdk = aws::sdk_config(config.ivs.region.as_deref()).await;
            let client = aws::secrets_manager(&sdk, config.keys.secrets_endpoint_url.as_deref());
            Ok(Store::Shared {
                keys: SecretsKeys::new(client, &config.keys.secret_prefix),
                table: coordination_table(config).await?,
            })
        }
    }
}

/// The coordination table `coordination.table` names, as a new replica.
pub(crate) async fn coordination_table(config: &Config) -> Result<Coordination, ServiceError> {
    let table = config.coordination.table.as_deref().ok_or_else(|| {
        ServiceError::Config(ConfigError(
            "coordination.table: name the DynamoDB table the replicas share".into(),
        ))
    })?;
    let sdk = aws::sdk_config(config.ivs.region.as_deref()).await;
    let client = aws::dynamodb(&sdk, config.coordination.endpoint_url.as_deref());
    Ok(Coordination::new(
        client,
        table,
        &replica_id(),
        Duration::from_secs(config.coordination.lease_seconds),
    ))
}

/// The client that plays canary tokens. Local mode talks only to loopback
/// over plain HTTP and needs no certificate authority; aws mode talks to IVS
/// over HTTPS, so it checks here, before the first IVS call, that the system
/// has its CA certificates (the SDK's own client would only fail later with
/// an opaque TLS error).
fn canary_client(config: &Config) -> Result<reqwest::Client, ServiceError> {
    let (trust, purpose) = match config.ivs.mode {
        IvsMode::Local => (Trust::PlainHttp, "the local IVS"),
        IvsMode::Aws => (Trust::System, "ivs.mode = \"aws\" (IVS over HTTPS)"),
    };
    outbound::client(trust, Duration::from_secs(10), purpose).map_err(ServiceError::System)
}

/// Every reader of channels (the mint's cache, the canary lookup, key
/// control) follows `channels.enforce_restriction_policies`: off, none of
/// them reads a policy, so the IAM policy may leave
/// `GetPlaybackRestrictionPolicy` out.
async fn aws_ivs(config: &Config) -> Ivs {
    Ivs::from_env(
        config.ivs.region.as_deref(),
        config.ivs.endpoint_url.as_deref(),
        &IvsOptions::default(),
    )
    .await
    .reading_restriction_policies(config.channels.enforce_restriction_policies)
}

fn rotator_options(
    config: &Config,
    canary: Option<(ChannelArn, String)>,
    first_key: Option<FirstKey>,
    http: reqwest::Client,
) -> RotatorOptions {
    RotatorOptions {
        longest_ttl: config.longest_ttl(),
        skew: Duration::from_secs(config.rotation.skew_seconds),
        reconcile_every: Duration::from_secs(config.rotation.reconcile_seconds),
        canary,
        first_key,
        http,
        live_for: Duration::from_secs(config.coordination.stale_after_seconds),
    }
}

/// A channel's ARN and the playback URL the canary plays. With a local IVS,
/// at its own listener: the public URL (`server.public_url`) may be one that
/// only clients outside reach, such as a container's published port.
async fn canary_channel(
    ivs: &Ivs,
    name: &str,
    local: Option<&LocalIvs>,
) -> Result<(ChannelArn, String), ServiceError> {
    let found = if name.starts_with("arn:") {
        ivs.channel(name).await?
    } else {
        ivs.channel_by_name(name).await?
    };
    let c = found.ok_or_else(|| {
        ServiceError::Config(ConfigError(format!(
            "rotation.canary_channel: IVS has no channel `{name}`"
        )))
    })?;
    let url = match local {
        Some(local) => inside(local, &c.playback_url),
        None => c.playback_url,
    };
    Ok((c.arn, url))
}

/// A URL of the local IVS, at its own listener rather than its public URL.
fn inside(local: &LocalIvs, url: &str) -> String {
    url.strip_prefix(local.endpoint_url()).map_or_else(
        || url.to_owned(),
        |path| format!("{}{path}", local.local_url()),
    )
}

/// Connections the admin API may hold: a few operators and their scripts.
const ADMIN_CONNECTIONS: usize = 64;
/// Connections the embedded local IVS may hold: the demo's players and the
/// service's own calls.
const LOCAL_IVS_CONNECTIONS: usize = 256;

/// Each listener's connection limits, out of one budget of open files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    api: ConnectionLimits,
    admin: ConnectionLimits,
    local_ivs: usize,
}

/// Splits `room` (the open files left for client connections) among the
/// listeners. Each listener counts only its own connections, so giving each
/// the whole room would let them together run `accept` out of descriptors
/// (and the token API's flood would then starve the admin API): the admin
/// API and the local IVS (when they run) take small fixed shares, at most an
/// eighth and a quarter of the room, and the token API the rest, up to
/// `server.max_connections`. Each gets at least one, so the sum can pass a
/// room of less than three.
fn split_room(configured: ConnectionLimits, room: usize, admin: bool, local_ivs: bool) -> Budget {
    let share = |on: bool, fixed: usize, part: usize| {
        if on { fixed.min(room / part).max(1) } else { 0 }
    };
    let admin_max = share(admin, ADMIN_CONNECTIONS, 8);
    let local_ivs = share(local_ivs, LOCAL_IVS_CONNECTIONS, 4);
    let api_max = configured
        .max_connections
        .min(room.saturating_sub(admin_max + local_ivs))
        .max(1);
    Budget {
        api: configured.at_most(api_max),
        admin: configured.at_most(admin_max),
        local_ivs,
    }
}

/// The configured connection limits, split among the listeners and kept
/// below the open-files limit (raised to its hard limit first) so that
/// `accept` never runs out of descriptors before the limits refuse
/// connections.
fn connection_budget(config: &Config) -> Budget {
    /// Descriptors kept for everything but client connections: the
    /// listeners, key files, outgoing calls to IVS.
    const RESERVE: u64 = 64;
    let configured = config.connection_limits();
    let room = match server::raise_fd_limit() {
        Some(files) => usize::try_from(files.saturating_sub(RESERVE).max(1)).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let budget = split_room(
        configured,
        room,
        config.admin.is_some(),
        config.ivs.mode == IvsMode::Local,
    );
    if budget.api.max_connections < configured.max_connections {
        tracing::warn!(
            configured = configured.max_connections,
            open_files_room = room,
            "server.max_connections is above what the open-files limit allows beside the admin API and the local IVS; using {}",
            budget.api.max_connections
        );
    }
    budget
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServiceError> {
    let listen_error = |source| ServiceError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    Ok((listener, bound))
}

impl Application {
    /// Starts everything the service needs and binds its listeners.
    pub(crate) async fn build(config: Config) -> Result<Self, ServiceError> {
        // Install the metrics recorder before the first IVS call is counted.
        let _ = http::metrics_handle();
        let budget = connection_budget(&config);
        let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
            (Some(cert), Some(key)) => Some(Arc::new(
                Tls::load(cert, key).map_err(|e| ServiceError::Config(ConfigError(e)))?,
            )),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Before the IVS client: in aws mode, the check for CA certificates.
        let canary_http = canary_client(&config)?;
        let (ivs, local_ivs) = match config.ivs.mode {
            IvsMode::Local => {
                let local = LocalIvs::start(LocalIvsConfig {
                    listen: config.ivs.local_listen,
                    max_connections: budget.local_ivs,
                    public_url: config.server.public_url.clone(),
                    ..LocalIvsConfig::default()
                })
                .await?;
                let region = config.ivs.region.as_deref().unwrap_or(LOCAL_REGION);
                let ivs = Ivs::local(&local.local_url(), region, &IvsOptions::default())
                    .reading_restriction_policies(config.channels.enforce_restriction_policies);
                (ivs, Some(local))
            }
            IvsMode::Aws => (aws_ivs(&config).await, None),
        };
        let demo_channel = if local_ivs.is_some() && config.ivs.demo_channel {
            Some(ivs.ensure_private_channel("demo").await?)
        } else {
            None
        };

        let ledger = Arc::new(TokenLedger::default());
        let started = Self::start_keys(
            &config,
            &ivs,
            local_ivs.as_ref(),
            demo_channel.as_ref(),
            &ledger,
            canary_http,
        )
        .await?;
        let rotator = started.rotator.clone();
        let anonymous_extra: Vec<String> = demo_channel
            .iter()
            .map(|d| d.arn.as_str().to_owned())
            .collect();
        let mint = Arc::new(
            Self::build_mint(&config, ivs.clone(), &rotator, ledger, &anonymous_extra).await?,
        );
        mint.warn_unverifiable();

        let state = AppState::new(AppParts {
            mint: Arc::clone(&mint),
            body: BodyLimits {
                max: config.server.max_body_bytes,
                timeout: Duration::from_millis(config.server.body_read_timeout_ms),
            },
            timeout: config.request_timeout(),
            active_since: rotator.active_since(),
            freshness: rotator
                .coordination()
                .map(|_| (rotator.freshness(), config.coordination.stale_after_seconds)),
        });
        let mut router = http::router(
            state.clone(),
            &config.server.cors_origins,
            &config.server.viewer_dir,
        );
        if let Some(local) = &local_ivs {
            // The playback edge on the token API's listener too: the playback
            // URLs can then name `server.public_url`, and a container needs
            // one published port (the local IVS's own is on loopback).
            router = router.merge(local.playback_router());
        }
        let (listener, addr) = bind(config.server.listen).await?;
        let api_url = match &config.server.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{scheme}://{}", server::reachable(addr)),
        };
        let admin = match &config.admin {
            Some(section) => {
                let token_hash = section
                    .validate()
                    .map_err(|e| ServiceError::Config(ConfigError(e)))?;
                let (listener, bound) = bind(section.listen).await?;
                if !section.listen.ip().is_loopback() {
                    // Allowed (a container's admin port is reached through
                    // its network), but loud: the admin API can rotate and
                    // revoke keys, and its token is all that guards it.
                    tracing::warn!(listen = %section.listen, "the admin API listens beyond loopback: keep it on a private network or behind a firewall (admin.listen)");
                }
                let router = admin::router(admin::AdminParts {
                    token_hash,
                    mint: Arc::clone(&mint),
                    rotator: rotator.clone(),
                    ivs,
                    coordination: rotator.coordination().cloned(),
                });
                Some((listener, router, bound))
            }
            None => None,
        };
        let info = StartupInfo {
            admin_url: admin
                .as_ref()
                .map(|(_, _, a)| format!("{scheme}://{}", server::reachable(*a))),
            local_ivs_url: local_ivs.as_ref().map(LocalIvs::local_url),
            viewer_url: config
                .server
                .viewer_dir
                .is_dir()
                .then(|| format!("{api_url}/viewer/")),
            api_url,
            demo_channel,
            fingerprint: started.fingerprint,
            key_location: started.key_location,
            key_generated: started.generated,
        };
        Ok(Self {
            listener,
            router,
            admin: admin.map(|(l, r, _)| (l, r)),
            state,
            local_ivs,
            mint,
            rotator,
            budget,
            tls,
            config,
            info,
        })
    }

    /// The keys: the store's record reconciled with IVS; a fresh store
    /// adopts `keys/playback-key.pem` (generated in local mode).
    async fn start_keys(
        config: &Config,
        ivs: &Ivs,
        local: Option<&LocalIvs>,
        demo: Option<&ChannelInfo>,
        ledger: &Arc<TokenLedger>,
        http: reqwest::Client,
    ) -> Result<Started, ServiceError> {
        let store = open_store(config).await?;
        let canary = match (&config.rotation.canary_channel, demo, local) {
            (Some(name), _, _) => Some(canary_channel(ivs, name, local).await?),
            (None, Some(demo), Some(local)) => {
                Some((demo.arn.clone(), inside(local, &demo.playback_url)))
            }
            (None, _, _) => None,
        };
        // With Secrets Manager a first key never touches the disk.
        let first_key = FirstKey {
            path: (config.keys.store == KeyStoreKind::Dir).then(|| config.keys.dir.join(KEY_FILE)),
            generate: config.generate_keys(),
        };
        let options = rotator_options(config, canary, Some(first_key), http);
        Ok(Rotator::start(ivs.clone(), store, options, Arc::clone(ledger)).await?)
    }

    /// The mint room, with a warm channel cache when IVS answers.
    async fn build_mint(
        config: &Config,
        ivs: Ivs,
        rotator: &Rotator,
        ledger: Arc<TokenLedger>,
        anonymous_extra: &[String],
    ) -> Result<Mint, ServiceError> {
        let channels = ChannelCache::new(
            ivs,
            Duration::from_secs(config.channels.negative_ttl_seconds),
        );
        if let Err(e) = channels.refresh().await {
            tracing::warn!(error = %e, "channel cache not warm yet; /readyz stays 503 until a refresh succeeds");
        }
        let viewer_ids = match &config.viewer_ids.secret {
            Some(secret) => ViewerIdHasher::new(secret.expose_secret().as_bytes())
                .map_err(|e| ServiceError::Key(e.to_string()))?,
            None => {
                tracing::warn!("viewer_ids.secret is not set: viewer ids change at every restart");
                let mut secret = [0u8; 32];
                for chunk in secret.chunks_mut(16) {
                    chunk.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..chunk.len()]);
                }
                ViewerIdHasher::new(&secret).map_err(|e| ServiceError::Key(e.to_string()))?
            }
        };
        let viewers = match &config.viewer_jwt {
            Some(section) => Some(Arc::new(
                ViewerAuth::new(section.clone())
                    .await
                    .map_err(|e| ServiceError::Config(ConfigError(e)))?,
            )),
            None => None,
        };
        Ok(Mint {
            network: NetworkRules::new(config.policy.clone()),
            policy: Policy::new(config, anonymous_extra, viewer_ids.clone()),
            limits: Limits::new(config),
            viewers,
            channels,
            revocations: Arc::new(Revocations::new(viewer_ids)),
            minter: Minter::new(
                TokenSigner::from_shared(rotator.keys().clone()),
                Duration::from_secs(config.tokens.share_bucket_seconds),
                ledger,
            ),
            allow_public: config.channels.allow_public,
        })
    }

    /// What was started.
    pub(crate) fn info(&self) -> &StartupInfo {
        &self.info
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish
    /// (up to the grace period) and stops the local IVS.
    pub(crate) async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let background = self.background();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let budget = self.budget;
        let mut api = tokio::spawn(server::serve(
            self.listener,
            self.router,
            budget.api,
            self.tls.clone(),
            stopped(stop_rx.clone()),
        ));
        let tls = self.tls.clone();
        let admin = self.admin.map(|(listener, router)| {
            tokio::spawn(server::serve(
                listener,
                router,
                budget.admin,
                tls,
                stopped(stop_rx.clone()),
            ))
        });
        let grace = Duration::from_secs(self.config.server.shutdown_grace_seconds);
        let finished = tokio::select! {
            _ = &mut api => true,
            () = async move {
                stopped(stop_rx).await;
                tokio::time::sleep(grace).await;
            } => false,
        };
        if !finished {
            tracing::warn!("in-flight requests did not finish within the grace period");
            api.abort();
        }
        for task in background {
            task.abort();
        }
        if let Some(task) = admin
            && tokio::time::timeout(grace, task).await.is_err()
        {
            tracing::warn!("admin requests did not finish within the grace period");
        }
        if let Some(local) = self.local_ivs {
            local.stop().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(max_connections: usize, max_connections_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            max_connections_per_ip,
            ..ConnectionLimits::default()
        }
    }

    fn total(b: &Budget) -> usize {
        b.api.max_connections + b.admin.max_connections + b.local_ivs
    }

    #[test]
    fn the_listeners_split_one_room_of_open_files() {
        // The old way gave each listener the whole room: 3 x 960 > 960.
        let b = split_room(configured(1024, 128), 960, true, true);
        assert_eq!(b.admin.max_connections, 64);
        assert_eq!(b.local_ivs, 240);
        assert_eq!(b.api.max_connections, 960 - 64 - 240);
        assert_eq!(total(&b), 960);
        assert_eq!(b.api.max_connections_per_ip, 128);
        assert_eq!(b.admin.max_connections_per_ip, 64);
        // A room large enough: the token API gets what is configured.
        let b = split_room(configured(1024, 128), 1_000_000, true, true);
        assert_eq!(b.api.max_connections, 1024);
        assert_eq!(b.admin.max_connections, ADMIN_CONNECTIONS);
        assert_eq!(b.local_ivs, LOCAL_IVS_CONNECTIONS);
        // No admin API, no local IVS: the token API may have it all.
        let b = split_room(configured(5000, 128), 960, false, false);
        assert_eq!(b.api.max_connections, 960);
        assert_eq!(b.local_ivs, 0);
        for room in [3, 8, 100, 1000, 65_472] {
            for (admin, local) in [(true, true), (true, false), (false, true)] {
                let b = split_room(configured(usize::MAX / 4, 128), room, admin, local);
                let used = b.api.max_connections
                    + if admin { b.admin.max_connections } else { 0 }
                    + b.local_ivs;
                assert!(used <= room, "room {room}: {b:?}");
                assert!(b.api.max_connections_per_ip <= b.api.max_connections);
            }
        }
    }
}
