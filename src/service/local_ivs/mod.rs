//! A local stand-in for the Amazon IVS control plane and playback check.
//!
//! - Control plane: IVS's REST-JSON operations (`POST /<Operation>`, and
//!   `/tags/{arn}`) for channels, stream keys, playback key pairs, viewer
//!   revocation, recording configurations, playback restriction policies
//!   and tags, validated against the embedded AWS service model,
//!   SigV4-authenticated, with IVS's errors and quotas.
//! - Playback: `GET` on a channel's `playbackUrl` checks the token the way the
//!   IVS edge does, with the signer's [`Verifier`](crate::Verifier) and the
//!   key pairs imported now, or a public channel's playback restriction
//!   policy, and explains refusals.
//! - Streams: a channel is live while a stream session runs on it; there is
//!   no ingest, so streams start with their channel
//!   ([`LocalIvsConfig::live_on_create`]) or by test control, and end with
//!   StopStream, after which the playback URL answers as for an offline
//!   channel.
//! - Timed metadata: PutMetadata puts a payload into the next segment of
//!   every rendition, as IVS's ID3 `PRIV` frame (`api::metadata`,
//!   `cue_queue`, `timed_metadata`).
//! - Test controls (off unless enabled): `POST /_local/reset`,
//!   `POST /_local/faults`, `GET /_local/calls` (the control-plane calls
//!   served per operation, and the faults still pending), so that a test can
//!   prove a client did, or did not, call, `POST /_local/streams/start`
//!   and `POST /_local/quota-clock`.
//! - Every listener has a header deadline and connection limits
//!   (`service::server`).
//!
//! [`LocalIvs::start`] binds a listener (port 0 in tests) and serves until
//! [`LocalIvs::stop`].

pub(crate) mod api;
mod controls;
mod cue_queue;
pub(crate) mod error;
mod faults;
pub(crate) mod live_media;
pub(crate) mod model;
pub(crate) mod playback;
mod request;
mod session_files;
pub(crate) mod sigv4;
pub(crate) mod state;
mod timed_metadata;
mod ts;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::error::ApiError;
use self::faults::{Fault, Faults};
use self::live_media::unix_ms;
pub(crate) use self::playback::token_from_query;
use self::playback::{Refusal, Sessions, Viewer};
pub(crate) use self::request::{control_input, operation_of, percent_decode};
use self::sigv4::{Authenticator, Credential};
use self::state::{State, StateFile};
use crate::service::server::ConnectionLimits;

/// Largest request body the control plane reads.
const MAX_BODY: usize = 1024 * 1024;

/// How to run a local IVS.
#[derive(Clone, Debug)]
pub struct LocalIvsConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Keep state in this file across restarts.
    pub state_file: Option<PathBuf>,
    /// The account of requests whose access key is not configured.
    pub account_id: String,
    /// Access keys whose signatures are verified: `(access key id, secret,
    /// account)`. Empty: any well-formed SigV4 signature is accepted.
    pub credentials: Vec<(String, String, Option<String>)>,
    /// Serve the test controls under `/_local/` (reset, faults, calls,
    /// streams/start, quota-clock).
    pub test_controls: bool,
    /// Base URL written into playback URLs (default: `http://` + the bound
    /// address).
    pub public_url: Option<String>,
    /// Open connections at most (128 at most from one client address).
    pub max_connections: usize,
    /// S3 buckets to treat as missing: a recording configuration naming one
    /// ends in `CREATE_FAILED`, as IVS's does when it cannot use its bucket.
    pub missing_buckets: Vec<String>,
    /// Start a channel's stream when the channel is created (and, at start-up,
    /// on channels that never had one), as if a broadcaster connected at
    /// once: playback works with no broadcaster. Off: channels are offline
    /// until `POST /_local/streams/start`, as IVS's are until someone
    /// streams. Default on.
    pub live_on_create: bool,
    /// The request header that carries the viewer's country (ISO 3166-1
    /// alpha-2), for playback restriction policies: IVS geolocates viewers,
    /// the local IVS trusts this header (set by a proxy in front, or a test).
    /// `None`: the country is unknown, and a policy that restricts countries
    /// refuses.
    pub trusted_country_header: Option<String>,
}

impl Default for LocalIvsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_file: None,
            account_id: "123456789012".to_owned(),
            credentials: Vec::new(),
            test_controls: false,
            public_url: None,
            max_connections: ConnectionLimits::default().max_connections,
            missing_buckets: Vec::new(),
            live_on_create: true,
            trusted_country_header: None,
        }
    }
}

/// Why a local IVS could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalIvsError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is unreadable or corrupt (and was left untouched).
    #[error("{0}")]
    StateFile(String),
    /// The configuration is invalid.
    #[error("{0}")]
    Config(String),
}

/// A running local IVS.
#[derive(Debug)]
pub struct LocalIvs {
    addr: SocketAddr,
    base_url: String,
    /// The playback path alone, for a listener of the embedding service.
    playback: Router,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl LocalIvs {
    /// Binds the listener, loads the state file if any, and starts serving.
    pub async fn start(config: LocalIvsConfig) -> Result<Self, LocalIvsError> {
        let account_ok = |a: &str| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit());
        if !account_ok(&config.account_id) {
            return Err(LocalIvsError::Config(format!(
                "account id `{}` must be digits",
                config.account_id
            )));
        }
        let mut credentials = HashMap::new();
        for (key, secret, account) in &config.credentials {
            let account = account.clone().unwrap_or_else(|| config.account_id.clone());
            if key.is_empty() || secret.is_empty() || !account_ok(&account) {
                return Err(LocalIvsError::Config(format!(
                    "credential for `{key}` needs an access key id, a secret and a numeric account"
                )));
            }
            credentials.insert(
                key.clone(),
                Credential {
                    secret: secret.clone(),
                    account,
                },
            );
        }
        let country_header = match &config.trusted_country_header {
            None => None,
            Some(name) => Some(HeaderName::try_from(name.as_str()).map_err(|_| {
                LocalIvsError::Config(format!("`{name}` is not an HTTP header name"))
            })?),
        };
        let file = config.state_file.as_ref().map(StateFile::new);
        let mut state = match &file {
            Some(f) => f.load().map_err(LocalIvsError::StateFile)?,
            None => State::empty(),
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| LocalIvsError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| LocalIvsError::Bind {
                addr: config.listen,
                source,
            })?;
        let base_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_owned();
        if config.live_on_create {
            // Channels of a state file written before streams existed, or by
            // a local IVS with `live_on_create` off, that never streamed.
            controls::start_never_streamed(&mut state, &base_url);
        }
        let app = App {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                persist: tokio::sync::Mutex::new(()),
                file,
                auth: Authenticator {
                    credentials,
                    default_account: config.account_id.clone(),
                },
                faults: Faults::default(),
                calls: Mutex::default(),
                sessions: Mutex::new(Sessions::default()),
                metadata: api::metadata::TimedMetadata::default(),
                base_url: base_url.clone(),
                missing_buckets: config.missing_buckets.iter().cloned().collect(),
                live_on_create: config.live_on_create,
                country_header,
            }),
        };
        let playback = playback_router().with_state(app.clone());
        let router = router(app, config.test_controls);
        let (tx, rx) = oneshot::channel();
        // The same connection limits and header deadline as the service's
        // listeners: a stalled client cannot hold the local IVS either.
        let task = tokio::spawn(crate::service::server::serve(
            listener,
            router,
            ConnectionLimits::default().at_most(config.max_connections),
            None,
            async {
                let _ = rx.await;
            },
        ));
        Ok(Self {
            addr,
            base_url,
            playback,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL to give an IVS client (`http://127.0.0.1:PORT`), or
    /// the configured public URL.
    pub fn endpoint_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address as a URL (an unspecified address as loopback):
    /// where a client in this process or on this host reaches the control
    /// plane and the playback edge, whatever the public URL says.
    pub fn local_url(&self) -> String {
        format!("http://{}", crate::service::server::reachable(self.addr))
    }

    /// The playback edge alone (`/api/video/v1/`), for the embedding
    /// service to serve on its own listener: then the public URL can be the
    /// service's, and one published port serves tokens and playback.
    pub(crate) fn playback_router(&self) -> Router {
        self.playback.clone()
    }

    /// Stops serving and waits for open requests to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until the task ends (for the `local-ivs` command).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

#[derive(Clone)]
struct App {
    inner: Arc<Inner>,
}

struct Inner {
    /// A std mutex: held only for in-memory work, never across an await.
    state: Mutex<State>,
    /// Orders changes and their saving: held across the file write.
    persist: tokio::sync::Mutex<()>,
    file: Option<StateFile>,
    auth: Authenticator,
    faults: Faults,
    /// Authenticated control-plane calls per operation, for tests that
    /// prove a client does not call (`GET /_local/calls`).
    calls: Mutex<std::collections::BTreeMap<String, u64>>,
    sessions: Mutex<Sessions>,
    /// PutMetadata's quotas, and the cues waiting for their segments.
    metadata: api::metadata::TimedMetadata,
    base_url: String,
    missing_buckets: std::collections::BTreeSet<String>,
    live_on_create: bool,
    country_header: Option<HeaderName>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change is applied to a copy and swapped in whole, so a panic while
    // holding a lock cannot leave half a change behind: poison is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl App {
    /// Runs `f` on the state. A change is made on a copy, saved, and only
    /// then swapped in: a failed save changes nothing.
    async fn with_state<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut State) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if !mutating {
            let mut copy = lock(&self.inner.state).clone();
            return f(&mut copy);
        }
        let _order = self.inner.persist.lock().await;
        let mut next = lock(&self.inner.state).clone();
        let out = f(&mut next)?;
        if let Some(file) = &self.inner.file {
            let file = file.clone();
            let snapshot = next.clone();
            tokio::task::spawn_blocking(move || file.save(&snapshot))
                .await
                .map_err(|e| ApiError::internal(format!("saving state: {e}")))?
                .map_err(|e| ApiError::internal(format!("saving state: {e}")))?;
        }
        *lock(&self.inner.state) = next;
        Ok(out)
    }
}

/// One route for the whole playback path, parsed by hand: every answer
/// there, even to a malformed request, is the edge's JSON, never an
/// extractor's text/plain rejection.
fn playback_router() -> Router<App> {
    Router::new().route("/api/video/v1/{*rest}", any(playback))
}

fn router(app: App, test_controls: bool) -> Router {
    let mut router = playback_router();
    if test_controls {
        router = router
            .route("/_local/reset", post(controls::reset))
            .route("/_local/faults", post(controls::add_fault))
            .route("/_local/calls", get(controls::calls))
            .route("/_local/streams/start", post(controls::start_stream))
            .route("/_local/quota-clock", post(controls::quota_clock));
    }
    router.fallback(any(control)).with_state(app)
}

async fn control(
    AxumState(app): AxumState<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match control_inner(&app, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(path = %uri.path(), code = e.code, status = e.status.as_u16(), "local IVS refused");
            e.into_response()
        }
    }
}

async fn control_inner(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (operation, resource_arn) = operation_of(method, uri.path())?;
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::too_large(format!("the request body is larger than {MAX_BODY} bytes"))
    })?;
    let scope = app
        .inner
        .auth
        .authenticate(method, uri, headers, &body, SystemTime::now())?;
    *lock(&app.inner.calls).entry(operation.clone()).or_default() += 1;
    match app.inner.faults.take(&operation) {
        Some(Fault::Error(e)) => return Err(e),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Drop) => return Ok(dropped_connection()),
        None => {}
    }
    let (input, op) = control_input(&operation, resource_arn, uri, &body)?;
    let base_url = app.inner.base_url.clone();
    let output = app
        .with_state(api::is_mutating(&operation), |state| {
            api::execute(
                &operation,
                &input,
                state,
                &api::Context {
                    scope: &scope,
                    base_url: &base_url,
                    missing_buckets: &app.inner.missing_buckets,
                    now_ms: unix_ms(SystemTime::now()),
                    live_on_create: app.inner.live_on_create,
                    metadata: &app.inner.metadata,
                },
            )
        })
        .await?;
    let status = StatusCode::from_u16(op.response_code).unwrap_or(StatusCode::OK);
    tracing::info!(%operation, status = status.as_u16(), "local IVS");
    if status == StatusCode::NO_CONTENT {
        return Ok(status.into_response());
    }
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        output.to_string(),
    )
        .into_response())
}

/// A response whose body fails at once: hyper closes the connection without
/// sending an answer, as a dropped connection would.
fn dropped_connection() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection dropped by /_local/faults",
        ))
    });
    Response::new(Body::from_stream(stream))
}

fn playback_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn refusal_response(refusal: &Refusal, url: &str) -> Response {
    // The path only: the query holds the token, which may still be live.
    let path = url.split(['?', '#']).next().unwrap_or_default();
    tracing::info!(%path, reason = %refusal.reason, "local IVS playback refused");
    playback_response(
        StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN),
        "application/json",
        refusal.body(url),
    )
}

impl App {
    /// The viewer's country from the trusted header: two ASCII letters, in
    /// upper case; anything else is no country.
    fn country_of(&self, headers: &HeaderMap) -> Option<String> {
        let name = self.inner.country_header.as_ref()?;
        let value = headers.get(name)?.to_str().ok()?.trim();
        (value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic()))
            .then(|| value.to_ascii_uppercase())
    }
}

fn origin_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// Everything under `/api/video/v1/`: a channel's playback URL, or a file of
/// a started session.
async fn playback(
    AxumState(app): AxumState<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let url = format!("{}{}", app.inner.base_url, uri);
    if method != Method::GET && method != Method::HEAD {
        let mut response = refusal_response(
            &Refusal {
                status: 405,
                error_code: "method_not_allowed",
                reason: format!("{method} is not served here; playback is GET"),
            },
            &url,
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let rest = uri
        .path()
        .strip_prefix("/api/video/v1/")
        .unwrap_or_default();
    let Some(rest) = percent_decode(rest) else {
        return refusal_response(
            &Refusal::not_found("the path is not valid percent-encoding"),
            &url,
        );
    };
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [file] => playback_start(&app, file, &uri, &headers, &url).await,
        ["session", session, rendition, file] => {
            session_files::playback_session(&app, session, rendition, file, &headers, &url)
        }
        _ => refusal_response(
            &Refusal::not_found(
                "not a playback URL: expected /api/video/v1/REGION.ACCOUNT.channel.ID.m3u8",
            ),
            &url,
        ),
    }
}

async fn playback_start(
    app: &App,
    file: &str,
    uri: &Uri,
    headers: &HeaderMap,
    url: &str,
) -> Response {
    if let Some(fault) = app.inner.faults.take("Playback") {
        match fault {
            Fault::Error(e) => return refusal_response(&Refusal::from_fault(&e), url),
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Drop => return dropped_connection(),
        }
    }
    let Some((scope, channel_id)) = playback::parse_playback_file(file) else {
        return refusal_response(
            &Refusal::not_found("not a playback URL: expected REGION.ACCOUNT.channel.ID.m3u8"),
            url,
        );
    };
    let token = match playback::token_from_query(uri.query()) {
        Ok(token) => token,
        Err(refusal) => return refusal_response(&refusal, url),
    };
    let now = SystemTime::now();
    let origin = origin_of(headers).map(str::to_owned);
    let country = app.country_of(headers);
    let check = |state: &mut State| {
        let region = state.region_mut(&scope);
        Ok(playback::authorize(
            region,
            &scope,
            &channel_id,
            Viewer {
                token: token.as_deref(),
                origin: origin.as_deref(),
                country: country.as_deref(),
            },
            now,
        ))
    };
    // Checked on a copy first; only a start that consumes a single-use token
    // changes state, and it is checked again on the saving path, where
    // changes are serialised, so a token cannot be used twice by a race.
    let mut result = app.with_state(false, check).await;
    if matches!(&result, Ok(Ok(s)) if s.consumed_single_use) {
        result = app.with_state(true, check).await;
    }
    let session = match result {
        Ok(Ok(session)) => session,
        Ok(Err(refusal)) => return refusal_response(&refusal, url),
        Err(e) => return refusal_response(&Refusal::from_fault(&e), url),
    };
    let id = state::new_id(24);
    let playlist = playback::multivariant_playlist(&app.inner.base_url, &id, &session);
    lock(&app.inner.sessions).insert(id, session, now);
    playback_response(StatusCode::OK, "application/vnd.apple.mpegurl", playlist)
}
