//! A web backend that mints IVS playback tokens itself, behind its own login.
//!
//! ```sh
//! ivs-playback-auth keys generate --out keys        # or your key imported into IVS
//! PLAYBACK_KEY=keys/playback-key.pem \
//! CHANNEL_ARN=arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234 \
//! PLAYBACK_URL=https://abc.us-west-2.playback.live-video.net/api/video/v1/us-west-2.123456789012.channel.abcdEFGH1234.m3u8 \
//! VIEWER_ID_SECRET="$(openssl rand -hex 32)" \
//! USERS=alice:correct-horse cargo run --release
//!
//! curl -s -X POST localhost:3000/login -H 'content-type: application/json' \
//!      -d '{"user":"alice","password":"correct-horse"}'        # {"session":"..."}
//! curl -s localhost:3000/watch -H "authorization: Bearer $SESSION"  # {"playback_url":"...?token=..."}
//! ```
//!
//! The key is read once at start-up; every request signs with it in-process
//! (about a tenth of a millisecond, no I/O). Replace the toy login with yours:
//! what matters is that only a logged-in viewer reaches `watch`, and that the
//! token names the viewer (`aws:viewer-id`, a keyed hash of the user id) so
//! that IVS can revoke them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ivs_playback_auth::{
    ChannelArn, PlaybackClaims, PrivateKey, SigningKey, TokenSigner, ViewerIdHasher,
};
use serde::Deserialize;
use serde_json::json;

/// How long a token lets a player start playback. IVS checks `exp` only when
/// playback starts, so a short lifetime costs a viewer nothing once playing.
const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

struct App {
    signer: TokenSigner,
    channel: ChannelArn,
    playback_url: String,
    /// IVS forbids personal data in `aws:viewer-id`: user ids go through a
    /// keyed hash, stable per user, so that a viewer can still be revoked.
    viewer_ids: ViewerIdHasher,
    /// user → password. A stand-in for your user store.
    users: HashMap<String, String>,
    /// session id → user. A stand-in for your sessions.
    sessions: Mutex<HashMap<String, String>>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key_path = env("PLAYBACK_KEY")?;
    // Read once: parsing a key is slow next to signing with it.
    let key = PrivateKey::read_file(&key_path).map_err(|e| format!("PLAYBACK_KEY: {e}"))?;
    let signer = TokenSigner::new(SigningKey::new(&key)?);
    let channel =
        ChannelArn::parse(&env("CHANNEL_ARN")?).map_err(|e| format!("CHANNEL_ARN: {e}"))?;
    let playback_url = env("PLAYBACK_URL")?;
    let viewer_ids = ViewerIdHasher::new(env("VIEWER_ID_SECRET")?.as_bytes())
        .map_err(|e| format!("VIEWER_ID_SECRET: {e}"))?;
    let users = env("USERS")?
        .split(',')
        .map(|pair| {
            pair.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
                .ok_or_else(|| format!("USERS: {pair:?} is not user:password"))
        })
        .collect::<Result<HashMap<_, _>, _>>()?;
    let listen: SocketAddr = std::env::var("LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|e| format!("LISTEN: {e}"))?;

    let app = Arc::new(App {
        signer,
        channel,
        playback_url,
        viewer_ids,
        users,
        sessions: Mutex::new(HashMap::new()),
    });
    let router = Router::new()
        .route("/login", post(login))
        .route("/watch", get(watch))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "listening on http://{} (key {})",
        listener.local_addr()?,
        key.fingerprint()
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (see the top of src/main.rs)"))
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

async fn login(State(app): State<Arc<App>>, Json(login): Json<Login>) -> Response {
    // A toy check; use your password hashing and constant-time compare.
    if app.users.get(&login.user) != Some(&login.password) {
        return error(StatusCode::UNAUTHORIZED, "wrong user or password");
    }
    let session = uuid::Uuid::new_v4().to_string();
    match app.sessions.lock() {
        Ok(mut sessions) => {
            sessions.insert(session.clone(), login.user);
        }
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "session store poisoned"),
    }
    Json(json!({ "session": session })).into_response()
}

/// The one call into the signer: claims for this viewer, then a signature.
async fn watch(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(user) = session_user(&app, &headers) else {
        return error(StatusCode::UNAUTHORIZED, "log in first: POST /login");
    };
    let claims = PlaybackClaims::builder(app.channel.clone())
        .expires_in(TOKEN_LIFETIME)
        .viewer_id(app.viewer_ids.viewer_id(&user))
        .build();
    let token = match claims.and_then(|claims| app.signer.sign(&claims)) {
        Ok(token) => token,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let expires_at = token.expires_at().unix_seconds();
    Json(json!({
        "playback_url": format!("{}?token={}", app.playback_url, token.as_str()),
        "expires_at": expires_at,
    }))
    .into_response()
}

fn session_user(app: &App, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, session) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    app.sessions.lock().ok()?.get(session.trim()).cloned()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": { "message": message } }))).into_response()
}
