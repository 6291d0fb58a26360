//! The real binary's `serve`, on loopback ports, with its embedded local IVS
//! (or an IVS the test started), and one method per endpoint of its token
//! and admin APIs, so that every integration test that runs `serve` talks
//! to it the same way.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ivs_playback_auth::PublicKey;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub struct TestService {
    pub child: Child,
    pub api: String,
    pub ivs: String,
    pub admin: String,
    /// The admin API's bearer token, sent by the admin methods (see
    /// [`TestService::with_admin_token`]).
    pub admin_token: Option<String>,
    pub http: reqwest::Client,
    /// Like `http`, but a redirect is answered, not followed.
    pub http_no_redirects: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The service's stderr (JSON log lines) so far.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The claims (payload) of a compact JWS, as JSON; the signature is not
/// checked.
pub fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// One HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    /// The body as JSON; panics naming the status and the body if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.text))
    }

    /// (status, JSON body).
    pub fn status_json(&self) -> (u16, Value) {
        (self.status.as_u16(), self.json())
    }

    /// A header's value, if it is there and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request to the token or the admin API, built up and then sent.
#[must_use]
pub struct Call<'a> {
    http: &'a reqwest::Client,
    method: Method,
    url: String,
    authorization: Option<String>,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Call<'_> {
    /// `X-API-Key`.
    pub fn api_key(self, key: &str) -> Self {
        self.header("x-api-key", key)
    }

    /// `X-API-Key` if there is one.
    pub fn maybe_api_key(self, key: Option<&str>) -> Self {
        match key {
            Some(key) => self.api_key(key),
            None => self,
        }
    }

    /// `Authorization: Bearer <token>` (a viewer JWT, or the admin token).
    pub fn bearer(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// The raw `Authorization` header, or none at all (the admin calls
    /// otherwise send the admin token).
    pub fn authorization(mut self, value: Option<&str>) -> Self {
        self.authorization = value.map(str::to_owned);
        self
    }

    /// `Origin`.
    pub fn origin(self, origin: &str) -> Self {
        self.header("origin", origin)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn content_type(mut self, content_type: &str) -> Self {
        self.content_type = Some(content_type.to_owned());
        self
    }

    /// A JSON body, with its content type.
    pub fn json(self, body: &Value) -> Self {
        self.content_type("application/json").body(body.to_string())
    }

    /// A raw body; the content type is only what [`Call::content_type`] set.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sends it; a request that got no answer (a refused or dropped
    /// connection) is an `Err`. An answer whose body is then cut short
    /// panics: it was answered.
    pub async fn try_send(self) -> reqwest::Result<Answer> {
        let what = format!("{} {}", self.method, self.url);
        let mut request = self.http.request(self.method, self.url);
        if let Some(authorization) = self.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(content_type) = self.content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = self.body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: {status}, then the body failed: {e}"));
        Ok(Answer {
            status,
            headers,
            text,
        })
    }

    /// Sends it; a transport error panics, naming the request.
    pub async fn send(self) -> Answer {
        let what = format!("{} {}", self.method, self.url);
        self.try_send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

impl TestService {
    /// Starts `serve` with a config: loopback port 0, keys in a temporary
    /// directory, plus `extra` TOML.
    pub async fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let keys = dir.path().join("keys");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[keys]\ndir = \"{}\"\n",
                keys.display()
            ),
        )
        .unwrap();
        Self::start_with_file(dir, &config).await
    }

    pub async fn start_with_file(dir: tempfile::TempDir, config: &std::path::Path) -> Self {
        Self::start_with_env(dir, config, &[]).await
    }

    /// Starts `serve` with extra environment variables.
    pub async fn start_with_env(
        dir: tempfile::TempDir,
        config: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ivs-playback-auth"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Drain stderr from the start, so that a chatty start-up (trace
        // logging) never blocks on a full pipe; the log is kept.
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut logs = logs.lock().unwrap();
                    if logs.len() < 100_000 {
                        logs.push(line);
                    }
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut api, mut ivs, mut admin) = (None, None, None);
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("token API:") {
                    api = Some(url.trim().to_owned());
                }
                if let Some(url) = line.strip_prefix("admin API:") {
                    admin = Some(url.trim().to_owned());
                }
                if let Some(url) = line.strip_prefix("local IVS:") {
                    ivs = Some(url.trim().to_owned());
                }
                // The key line comes after the addresses, in every mode.
                if line.starts_with("signing key:") {
                    break;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .is_err()
            || api.is_none()
        {
            let _ = child.kill().await;
            let _ = child.wait().await;
            // Let the drain catch up with what the child wrote last.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let logs = logs.lock().unwrap();
            let tail = logs[logs.len().saturating_sub(40)..].join("\n");
            panic!("serve did not start: {tail}");
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            api: api.unwrap(),
            ivs: ivs.unwrap_or_default(),
            admin: admin.unwrap_or_default(),
            admin_token: None,
            // Pooled connections are dropped before the server's idle limit
            // can close them under a request (a keep-alive race).
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            http_no_redirects: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            dir,
            logs,
        }
    }

    /// The log lines so far, once `wanted` holds of them (within 10 s; it
    /// panics naming `what` otherwise). The service writes its log lines in
    /// batches (within 10 ms of each line), so a line may follow the answer
    /// of the request that made it.
    pub async fn logs_when(&self, what: &str, wanted: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs.lock().unwrap().clone();
            if wanted(&logs) {
                return logs;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} in the log within 10 s; its tail:\n{}",
                logs[logs.len().saturating_sub(20)..].join("\n")
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The log lines once every line of what was done so far is in: no new
    /// line for 200 ms (twenty batch intervals), within 10 s. For checks of
    /// what the log must not hold.
    pub async fn settled_logs(&self) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let (mut seen, mut since) = (self.logs.lock().unwrap().len(), tokio::time::Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = self.logs.lock().unwrap().len();
            if now != seen {
                (seen, since) = (now, tokio::time::Instant::now());
            } else if since.elapsed() >= Duration::from_millis(200) {
                return self.logs.lock().unwrap().clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the log never settled"
            );
        }
    }

    /// The admin API's bearer token (its SHA-256 is in the config), sent by
    /// the admin methods.
    pub fn with_admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_owned());
        self
    }

    /// Runs `serve` with a config it is expected to refuse: it must exit by
    /// itself (within 30 s); its output.
    pub async fn serve_until_exit(config: &Path, env: &[(&str, &str)]) -> std::process::Output {
        let run = Command::new(env!("CARGO_BIN_EXE_ivs-playback-auth"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("serve kept running with {}", config.display()))
            .unwrap()
    }

    // The token API.

    /// Any request to the token API.
    pub fn api_call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            http: &self.http,
            method,
            url: format!("{}{path}", self.api),
            authorization: None,
            content_type: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// POST /v1/token, to be given its credentials, headers and body.
    pub fn token_call(&self) -> Call<'_> {
        self.api_call(Method::POST, "/v1/token")
    }

    /// POST /v1/token with an optional API key: (status, JSON body).
    pub async fn token(&self, api_key: Option<&str>, body: Value) -> (u16, Value) {
        self.token_call()
            .maybe_api_key(api_key)
            .json(&body)
            .send()
            .await
            .status_json()
    }

    /// POST /v1/token as a viewer, with the identity provider's JWT as the
    /// bearer token: (status, JSON body).
    pub async fn token_as_viewer(&self, jwt: &str, body: Value) -> (u16, Value) {
        self.token_call()
            .bearer(jwt)
            .json(&body)
            .send()
            .await
            .status_json()
    }

    /// POST /v1/tokens (a batch) with an optional API key: (status, JSON
    /// body).
    pub async fn tokens(&self, api_key: Option<&str>, body: Value) -> (u16, Value) {
        self.api_call(Method::POST, "/v1/tokens")
            .maybe_api_key(api_key)
            .json(&body)
            .send()
            .await
            .status_json()
    }

    /// The CORS preflight a browser on `origin` sends before POST /v1/token.
    pub async fn token_preflight(&self, origin: &str) -> Answer {
        self.api_call(Method::OPTIONS, "/v1/token")
            .origin(origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-api-key")
            .send()
            .await
    }

    /// GET /healthz.
    pub async fn healthz(&self) -> Answer {
        self.api_call(Method::GET, "/healthz").send().await
    }

    /// GET /readyz.
    pub async fn readyz(&self) -> Answer {
        self.api_call(Method::GET, "/readyz").send().await
    }

    /// GET /metrics.
    pub async fn metrics(&self) -> Answer {
        self.api_call(Method::GET, "/metrics").send().await
    }

    /// GET /openapi.json.
    pub async fn openapi(&self) -> Answer {
        self.api_call(Method::GET, "/openapi.json").send().await
    }

    /// GET a page of the token API's site (the viewer page under /viewer/,
    /// or /), without following redirects.
    pub async fn page(&self, path: &str) -> Answer {
        Call {
            http: &self.http_no_redirects,
            ..self.api_call(Method::GET, path)
        }
        .send()
        .await
    }

    // The admin API.

    /// Any request to the admin API, with the admin token as the bearer
    /// token (if the test gave one).
    pub fn admin_call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            http: &self.http,
            method,
            url: format!("{}{path}", self.admin),
            authorization: self.admin_token.as_ref().map(|t| format!("Bearer {t}")),
            content_type: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// GET /admin/v1/keys: (status, JSON body).
    pub async fn keys(&self) -> (u16, Value) {
        self.admin_call(Method::GET, "/admin/v1/keys")
            .send()
            .await
            .status_json()
    }

    /// POST /admin/v1/keys/rotate: (status, JSON body).
    pub async fn rotate(&self) -> (u16, Value) {
        self.try_rotate().await.unwrap().status_json()
    }

    /// POST /admin/v1/keys/rotate with an `Idempotency-Key`.
    pub async fn rotate_with_idempotency_key(&self, key: &str) -> Answer {
        self.admin_call(Method::POST, "/admin/v1/keys/rotate")
            .header("idempotency-key", key)
            .send()
            .await
    }

    /// POST /admin/v1/keys/rotate, a dropped connection being an `Err`.
    pub async fn try_rotate(&self) -> reqwest::Result<Answer> {
        self.admin_call(Method::POST, "/admin/v1/keys/rotate")
            .try_send()
            .await
    }

    /// POST /admin/v1/keys/{fingerprint}/revoke: (status, JSON body).
    pub async fn revoke_key(&self, fingerprint: &str) -> (u16, Value) {
        self.try_revoke_key(fingerprint)
            .await
            .unwrap()
            .status_json()
    }

    /// POST /admin/v1/keys/{fingerprint}/revoke, a dropped connection being
    /// an `Err`.
    pub async fn try_revoke_key(&self, fingerprint: &str) -> reqwest::Result<Answer> {
        self.admin_call(
            Method::POST,
            &format!("/admin/v1/keys/{fingerprint}/revoke"),
        )
        .try_send()
        .await
    }

    /// POST /admin/v1/viewers/revoke: (status, JSON body).
    pub async fn revoke_viewers(&self, body: Value) -> (u16, Value) {
        self.admin_call(Method::POST, "/admin/v1/viewers/revoke")
            .json(&body)
            .send()
            .await
            .status_json()
    }

    /// POST /admin/v1/channels/refresh.
    pub async fn refresh_channels(&self) -> Answer {
        self.admin_call(Method::POST, "/admin/v1/channels/refresh")
            .send()
            .await
    }

    // Playback, at the local IVS (or whichever IVS the URL names).

    /// GET a playback URL with an optional `Origin`: (status, body), a
    /// transport error being an `Err`.
    pub async fn try_play(
        &self,
        url: &str,
        origin: Option<&str>,
    ) -> reqwest::Result<(u16, String)> {
        let mut request = self.http.get(url);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// GET a playback URL with an optional `Origin`: (status, body).
    pub async fn play(&self, url: &str, origin: Option<&str>) -> (u16, String) {
        self.try_play(url, origin)
            .await
            .unwrap_or_else(|e| panic!("playing {url}: {e}"))
    }

    /// Plays the `playback_url` of a token answer: (status, body).
    pub async fn play_minted(&self, answer: &Value, origin: Option<&str>) -> (u16, String) {
        let url = answer["playback_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no playback_url in {answer}"));
        self.play(url, origin).await
    }

    /// Mints a viewer token (with `api_key`) and a shared anonymous token for
    /// `channel`, and plays both; the first failure, described.
    pub async fn mint_and_play(
        &self,
        api_key: &str,
        channel: &str,
        viewer: &str,
    ) -> Result<(), String> {
        for (key, body) in [
            (
                Some(api_key),
                json!({"channel": channel, "viewer_id": viewer}),
            ),
            (None, json!({"channel": channel})),
        ] {
            let (status, answer) = self.token(key, body).await;
            if status != 200 {
                return Err(format!("mint {status}: {answer}"));
            }
            let played = self
                .http
                .get(answer["playback_url"].as_str().unwrap())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = played.status().as_u16();
            let text = played.text().await.unwrap_or_default();
            if status != 200 {
                return Err(format!("play {status}: {text}"));
            }
        }
        Ok(())
    }

    // The rest.

    /// The public key `serve` wrote to the temporary key directory of
    /// [`TestService::start`].
    pub fn public_key(&self) -> PublicKey {
        PublicKey::read_file(self.dir.path().join("keys/playback-key.pub.pem")).unwrap()
    }

    /// An aws-sdk-ivs client for the embedded local IVS.
    pub fn ivs_client(&self) -> aws_sdk_ivs::Client {
        use aws_sdk_ivs::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_ivs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-west-2"))
            .endpoint_url(&self.ivs)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        aws_sdk_ivs::Client::from_conf(config)
    }

    /// SIGKILL, and waits until the process is gone (so that a service
    /// started next on the same keys never overlaps with it).
    pub async fn kill(mut self) {
        // It may have exited already (a crash hook): then only the wait is
        // left.
        let _ = self.child.start_kill();
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .unwrap()
            .unwrap();
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }
}
