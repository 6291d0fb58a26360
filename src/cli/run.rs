//! The commands that run the service's machinery on a tokio runtime:
//! `serve`, `local-ivs`, `keys rotate|import`, and `healthcheck`, with the
//! logging and signal handling they share.

use std::io::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::banner::print_banner;
use super::{HealthcheckArgs, LocalIvsArgs, ServeArgs};
use crate::PrivateKey;
use crate::service::log_writer::{self, LogGuard};

/// JSON logs on stderr (stdout carries what scripts read), written in
/// batches by a thread of their own (`service::log_writer`): keep the guard
/// until the command ends, it writes what is left. `RUST_LOG` filters; the
/// default keeps warnings and the audit trail.
fn init_logging() -> Result<LogGuard, String> {
    use tracing::Level;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let wanted = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,audit=info"));
    // Whatever RUST_LOG asks, these never log below debug: at trace the
    // SigV4 signer prints the canonical request and the SDK the headers it
    // sends, with the session token (X-Amz-Security-Token) in both. A cap,
    // and'ed with what was asked: added to the EnvFilter as directives they
    // would turn their debug lines on by default.
    let cap = Targets::new()
        .with_default(Level::TRACE)
        .with_target("aws_sigv4", Level::DEBUG)
        .with_target("aws_smithy_runtime", Level::DEBUG)
        .with_target("aws_smithy_runtime_api", Level::DEBUG)
        .with_target("aws_smithy_http_client", Level::DEBUG)
        .with_target("hyper_util", Level::DEBUG);
    let (stderr, guard) = log_writer::batched(io::stderr())
        .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
    let output = tracing_subscriber::fmt::layer()
        .json()
        .event_format(log_writer::JsonLines::new())
        .with_writer(stderr)
        .with_filter(wanted.and(cap));
    let _ = tracing_subscriber::registry().with(output).try_init();
    Ok(guard)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when
/// this is called, not when the future is first polled: a container's PID 1
/// ignores every signal it has no handler for, so a `docker stop` during
/// start-up would otherwise be lost and end in SIGKILL. Call it inside the
/// runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                // Not expected (it fails only outside a runtime or when the
                // signal driver cannot start): Ctrl-C still stops it.
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(super) fn local_ivs(args: LocalIvsArgs) -> Result<ExitCode, String> {
    use crate::service::local_ivs::{LocalIvs, LocalIvsConfig, LocalIvsError};
    let _logs = init_logging()?;
    let config = LocalIvsConfig {
        listen: args.listen,
        state_file: args.state_file,
        account_id: args.account_id,
        credentials: args.credentials,
        test_controls: args.test_controls,
        public_url: args.public_url,
        missing_buckets: args.missing_buckets,
        live_on_create: !args.offline_channels,
        trusted_country_header: args.trusted_country_header,
        ..LocalIvsConfig::default()
    };
    runtime()?.block_on(async {
        let ivs = LocalIvs::start(config).await.map_err(|e| match e {
            LocalIvsError::Bind { .. } => format!("--listen: {e}"),
            LocalIvsError::StateFile(_) => format!("--state-file: {e}"),
            other => other.to_string(),
        })?;
        println!("{}", ivs.endpoint_url());
        let _ = io::stdout().flush();
        shutdown_signal().await;
        ivs.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn keys_rotate(config: Option<&Path>) -> Result<ExitCode, String> {
    use crate::service::control::rotation::Rotator;
    use crate::service::{config::Config, key_control};
    let _logs = init_logging()?;
    let config = Config::load(config).map_err(|e| format!("--config: {e}"))?;
    runtime()?.block_on(async {
        let (ivs, store, options) = key_control(&config).await.map_err(|e| e.to_string())?;
        let started = Rotator::start(ivs, store, options, Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let rotated = started.rotator.rotate().await.map_err(|e| e.to_string())?;
        println!(
            "{}",
            serde_json::to_string(&rotated).map_err(|e| e.to_string())?
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn keys_import(private_key: &Path, config: Option<&Path>) -> Result<ExitCode, String> {
    use crate::service::control::rotation::import_key;
    use crate::service::{config::Config, key_control};
    let _logs = init_logging()?;
    let key = PrivateKey::read_file(private_key).map_err(|e| format!("--private-key: {e}"))?;
    let config = Config::load(config).map_err(|e| format!("--config: {e}"))?;
    runtime()?.block_on(async {
        let (ivs, store, _) = key_control(&config).await.map_err(|e| e.to_string())?;
        let imported = import_key(&ivs, &store, &key)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "{}",
            serde_json::to_string(&imported).map_err(|e| e.to_string())?
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn create_table(config: Option<&Path>) -> Result<ExitCode, String> {
    use crate::service::{config::Config, coordination_table};
    let _logs = init_logging()?;
    let config = Config::load(config).map_err(|e| format!("--config: {e}"))?;
    runtime()?.block_on(async {
        let table = coordination_table(&config)
            .await
            .map_err(|e| format!("--config: {e}"))?;
        let report = table.create_table().await.map_err(|e| e.to_string())?;
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    use crate::service::{Application, config::Config};
    let _logs = init_logging()?;
    let config = Config::load(args.config.as_deref()).map_err(|e| format!("--config: {e}"))?;
    runtime()?.block_on(async {
        let mut shutdown = Box::pin(shutdown_signal());
        let app = tokio::select! {
            app = Application::build(config) => app.map_err(|e| e.to_string())?,
            // Stopped while starting: nothing is served yet, nothing to drain.
            () = &mut shutdown => return Ok(ExitCode::SUCCESS),
        };
        print_banner(app.info());
        app.run(shutdown).await.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `healthcheck`: GET /readyz on this host's listener. Exit 1 on any
/// failure, configuration errors included: container engines read 1 as
/// unhealthy and reserve 2.
pub(super) fn healthcheck(args: HealthcheckArgs) -> ExitCode {
    match readiness(args) {
        Ok(url) => {
            println!("ready: {url}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("not ready: {message}");
            ExitCode::from(1)
        }
    }
}

fn readiness(args: HealthcheckArgs) -> Result<String, String> {
    use crate::service::{config::Config, outbound};
    let url = match args.url {
        Some(url) => url,
        None => {
            let config =
                Config::load(args.config.as_deref()).map_err(|e| format!("--config: {e}"))?;
            let scheme = if config.server.tls_cert_file.is_some() {
                "https"
            } else {
                "http"
            };
            let addr = crate::service::server::reachable(config.server.listen);
            format!("{scheme}://{addr}/readyz")
        }
    };
    // reqwest (the service's own client) rather than a request written by
    // hand: it speaks TLS when the listener does. No certificate is checked
    // (the service's names its public host, not loopback), so the probe
    // loads no CA roots; it sends nothing secret and reads only a status.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(4))
        .no_proxy()
        .tls_certs_only([])
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let answer = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", outbound::error_chain(&e)))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(url);
        }
        let body = answer.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        Err(format!("GET {url}: {status} {}", body.trim()))
    })
}
