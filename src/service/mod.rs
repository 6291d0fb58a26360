//! Everything that needs the `service` feature: the token service, the IVS
//! client, and the local IVS.
//!
//! [`Application::build`] reads nothing but its [`Config`]: it starts the
//! embedded local IVS in local mode, loads (or generates) the signing key,
//! makes sure IVS holds its public half, warms the channel cache and binds
//! the listener; [`Application::run`] serves until the shutdown future ends.

pub mod admin;
pub mod channels;
pub mod config;
pub mod error;
pub mod http;
pub mod ivs;
pub mod local_ivs;
pub mod openapi;
pub mod policy;
pub mod revocation;
pub mod rotation;
pub mod store;
pub mod tokens;
pub mod viewer;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;

use self::channels::ChannelCache;
use self::config::{Config, IvsMode};
use self::ivs::{ChannelInfo, Ivs};
use self::local_ivs::{LocalIvs, LocalIvsConfig};
use self::policy::Policy;
use self::rotation::{FirstKey, RotationConfig, RotationError, Rotator, RotatorOptions};
use self::tokens::Minter;
use crate::{TokenSigner, ViewerIdHasher};

/// The file name of the active key in the key directory.
pub const KEY_FILE: &str = "playback-key.pem";
/// The region the embedded local IVS serves by default.
const LOCAL_REGION: &str = "us-west-2";

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The signing key could not be loaded or made.
    #[error("key: {0}")]
    Key(String),
    /// IVS refused or could not be reached.
    #[error(transparent)]
    Ivs(#[from] ivs::IvsError),
    /// The keys could not be reconciled with IVS.
    #[error("keys: {0}")]
    Rotation(#[from] RotationError),
    /// The embedded local IVS could not start.
    #[error("local IVS: {0}")]
    LocalIvs(#[from] local_ivs::LocalIvsError),
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
pub struct StartupInfo {
    /// Where the token API listens.
    pub api_url: String,
    /// Where the admin API listens, when enabled.
    pub admin_url: Option<String>,
    /// The embedded local IVS, in local mode.
    pub local_ivs_url: Option<String>,
    /// The demo channel, in local mode.
    pub demo_channel: Option<ChannelInfo>,
    /// The viewer page, when it was built.
    pub viewer_url: Option<String>,
    /// The active key's fingerprint.
    pub fingerprint: String,
    /// The active key's file.
    pub key_file: PathBuf,
    /// Whether the key was generated now.
    pub key_generated: bool,
}

/// A built service, ready to run.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    admin: Option<(TcpListener, axum::Router)>,
    state: http::AppState,
    local_ivs: Option<LocalIvs>,
    channels: ChannelCache,
    viewer_auth: Option<std::sync::Arc<viewer::ViewerAuth>>,
    rotator: Rotator,
    rotation: RotationConfig,
    refresh_every: Duration,
    grace: Duration,
    info: StartupInfo,
}

/// The IVS client and key store the key commands (`keys rotate`, `keys
/// import`) work on. They need a real (or separately running local) IVS:
/// the embedded one lives only inside `serve`.
pub async fn key_control(
    config: &Config,
) -> Result<(Ivs, store::DirStore, RotatorOptions), ServiceError> {
    if config.ivs.mode == IvsMode::Local {
        return Err(ServiceError::Config(config::ConfigError(
            "ivs.mode: the embedded local IVS lives inside `serve`; rotate it with POST /admin/v1/keys/rotate, or set ivs.mode = \"aws\" (with ivs.endpoint_url for a separately started `local-ivs`)".into(),
        )));
    }
    let ivs = Ivs::from_env(
        config.ivs.region.as_deref(),
        config.ivs.endpoint_url.as_deref(),
        &ivs::IvsOptions::default(),
    )
    .await;
    let store =
        store::DirStore::open(&config.keys.dir).map_err(|e| ServiceError::Key(e.to_string()))?;
    let canary = match &config.rotation.canary_channel {
        Some(name) => Some(canary_channel(&ivs, name).await?),
        None => None,
    };
    Ok((
        ivs,
        store,
        RotatorOptions {
            longest_ttl: config.longest_ttl(),
            skew: Duration::from_secs(config.rotation.skew_seconds),
            reconcile_every: Duration::from_secs(config.rotation.reconcile_seconds),
            canary,
            first_key: None,
        },
    ))
}

async fn canary_channel(
    ivs: &Ivs,
    name: &str,
) -> Result<(crate::ChannelArn, String), ServiceError> {
    let found = if name.starts_with("arn:") {
        ivs.channel(name).await?
    } else {
        ivs.channel_by_name(name).await?
    };
    let c = found.ok_or_else(|| {
        ServiceError::Config(config::ConfigError(format!(
            "rotation.canary_channel: IVS has no channel `{name}`"
        )))
    })?;
    Ok((c.arn, c.playback_url))
}

impl Application {
    /// Starts everything the service needs and binds its listener.
    pub async fn build(config: Config) -> Result<Self, ServiceError> {
        // Install the metrics recorder before the first IVS call is counted.
        let _ = http::metrics_handle();
        let (ivs, local_ivs) = match config.ivs.mode {
            IvsMode::Local => {
                let local = LocalIvs::start(LocalIvsConfig {
                    listen: config.ivs.local_listen,
                    ..LocalIvsConfig::default()
                })
                .await?;
                let region = config.ivs.region.as_deref().unwrap_or(LOCAL_REGION);
                (
                    Ivs::local(local.endpoint_url(), region, &ivs::IvsOptions::default()),
                    Some(local),
                )
            }
            IvsMode::Aws => (
                Ivs::from_env(
                    config.ivs.region.as_deref(),
                    config.ivs.endpoint_url.as_deref(),
                    &ivs::IvsOptions::default(),
                )
                .await,
                None,
            ),
        };

        let mut anonymous_extra = Vec::new();
        let demo_channel = if local_ivs.is_some() && config.ivs.demo_channel {
            let demo = ivs.ensure_private_channel("demo").await?;
            anonymous_extra.push(demo.arn.as_str().to_owned());
            Some(demo)
        } else {
            None
        };

        // The keys: the store's record reconciled with IVS; a fresh store
        // adopts keys/playback-key.pem (generated in local mode).
        let store = store::DirStore::open(&config.keys.dir)
            .map_err(|e| ServiceError::Key(e.to_string()))?;
        let canary = match (&config.rotation.canary_channel, &demo_channel) {
            (Some(name), _) => Some(canary_channel(&ivs, name).await?),
            (None, Some(demo)) => Some((demo.arn.clone(), demo.playback_url.clone())),
            (None, None) => None,
        };
        let started = Rotator::start(
            ivs.clone(),
            store,
            RotatorOptions {
                longest_ttl: config.longest_ttl(),
                skew: Duration::from_secs(config.rotation.skew_seconds),
                reconcile_every: Duration::from_secs(config.rotation.reconcile_seconds),
                canary,
                first_key: Some(FirstKey {
                    path: config.keys.dir.join(KEY_FILE),
                    generate: config.generate_keys(),
                }),
            },
        )
        .await?;
        let rotator = started.rotator.clone();
        let signer = TokenSigner::from_shared(rotator.keys().clone());

        let ivs_for_admin = ivs.clone();
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
        let viewer_auth = match &config.viewer_jwt {
            Some(section) => Some(std::sync::Arc::new(
                viewer::ViewerAuth::new(section.clone())
                    .await
                    .map_err(|e| ServiceError::Config(config::ConfigError(e)))?,
            )),
            None => None,
        };
        let policy = Policy::new(&config, &anonymous_extra, viewer_ids.clone());
        let revocations = Arc::new(revocation::Revocations::new(viewer_ids));
        let minter = Arc::new(Minter::new(
            signer,
            Duration::from_secs(config.tokens.share_bucket_seconds),
            Arc::clone(rotator.ledger()),
        ));
        let state = http::AppState::new(http::AppParts {
            channels: channels.clone(),
            viewers: viewer_auth.clone(),
            policy,
            minter: Arc::clone(&minter),
            max_body: config.server.max_body_bytes,
            timeout: config.request_timeout(),
            allow_public: config.channels.allow_public,
            revocations: Arc::clone(&revocations),
            rotator: rotator.clone(),
        });
        let router = http::router(
            state.clone(),
            &config.server.cors_origins,
            &config.server.viewer_dir,
        );
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| ServiceError::Listen {
                addr: config.server.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServiceError::Listen {
                addr: config.server.listen,
                source,
            })?;
        let admin = match &config.admin {
            Some(section) => {
                let hash = section
                    .validate()
                    .map_err(|e| ServiceError::Config(config::ConfigError(e)))?;
                let listener = TcpListener::bind(section.listen).await.map_err(|source| {
                    ServiceError::Listen {
                        addr: section.listen,
                        source,
                    }
                })?;
                Some((
                    listener,
                    admin::router(admin::AdminParts {
                        token_hash: hash,
                        channels: channels.clone(),
                        rotator: rotator.clone(),
                        minter: Arc::clone(&minter),
                        revocations: Arc::clone(&revocations),
                        ivs: ivs_for_admin.clone(),
                    }),
                ))
            }
            None => None,
        };
        let admin_url = match &admin {
            Some((l, _)) => Some(format!(
                "http://{}",
                l.local_addr().map_err(|source| ServiceError::Listen {
                    addr: config.server.listen,
                    source
                })?
            )),
            None => None,
        };
        let info = StartupInfo {
            api_url: format!("http://{addr}"),
            admin_url,
            local_ivs_url: local_ivs.as_ref().map(|l| l.endpoint_url().to_owned()),
            viewer_url: config
                .server
                .viewer_dir
                .is_dir()
                .then(|| format!("http://{addr}/viewer/")),
            demo_channel,
            fingerprint: started.fingerprint,
            key_file: started.key_file,
            key_generated: started.generated,
        };
        Ok(Self {
            listener,
            router,
            admin,
            state,
            local_ivs,
            channels,
            viewer_auth,
            rotator,
            rotation: config.rotation.clone(),
            refresh_every: Duration::from_secs(config.channels.refresh_seconds.max(1)),
            grace: Duration::from_secs(config.server.shutdown_grace_seconds),
            info,
        })
    }

    /// What was started.
    pub fn info(&self) -> &StartupInfo {
        &self.info
    }

    /// The bound address of the token API.
    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish
    /// (up to the grace period) and stops the local IVS.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let addr = self
            .listener
            .local_addr()
            .map_err(|source| ServiceError::Listen {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
        let channels = self.channels.clone();
        let every = self.refresh_every;
        let refresher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = channels.refresh().await {
                    tracing::warn!(error = %e, "channel cache refresh failed; serving what is cached");
                }
            }
        });
        // The Prometheus recorder buffers histogram samples until upkeep
        // drains them into buckets; without it memory grows with traffic.
        let state = self.state.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Some(handle) = http::metrics_handle() {
                    handle.run_upkeep();
                }
                state.housekeeping();
            }
        });
        // Retired keys are deleted once their tokens have expired; the
        // schedule rotates.
        let rotator = self.rotator.clone();
        let sweep_every = Duration::from_secs(self.rotation.sweep_seconds.max(1));
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = rotator.sweep().await {
                    tracing::warn!(error = %e, "key sweep failed; retrying at the next one");
                }
            }
        });
        let scheduler = (self.rotation.interval_seconds > 0).then(|| {
            let rotator = self.rotator.clone();
            let every = Duration::from_secs(self.rotation.interval_seconds);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match rotator.rotate().await {
                        Ok(r) => tracing::info!(active = %r.active, took_ms = r.took_ms, "scheduled rotation done"),
                        Err(e) => tracing::error!(error = %e, "scheduled rotation failed; the current key keeps signing"),
                    }
                }
            })
        });
        let jwks_refresher = self.viewer_auth.clone().map(|auth| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(auth.refresh_every());
                tick.tick().await;
                loop {
                    tick.tick().await;
                    auth.refresh().await;
                }
            })
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut stop_rx2 = stop_rx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut graceful = stop_rx;
        let server = axum::serve(self.listener, service).with_graceful_shutdown(async move {
            let _ = graceful.wait_for(|s| *s).await;
        });
        let admin_task = self.admin.map(|(listener, router)| {
            let mut stop = stop_rx2.clone();
            tokio::spawn(async move {
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                let served = axum::serve(listener, service).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                });
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            })
        });
        let grace = self.grace;
        let result = tokio::select! {
            r = server => r.map_err(|source| ServiceError::Listen { addr, source }),
            () = async move {
                let _ = stop_rx2.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("in-flight requests did not finish within the grace period");
                Ok(())
            }
        };
        refresher.abort();
        upkeep.abort();
        sweeper.abort();
        if let Some(task) = scheduler {
            task.abort();
        }
        if let Some(task) = admin_task {
            let _ = tokio::time::timeout(grace, task).await;
        }
        if let Some(task) = jwks_refresher {
            task.abort();
        }
        if let Some(local) = self.local_ivs {
            local.stop().await;
        }
        result
    }
}
