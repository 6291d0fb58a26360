//! The real binary's `serve`, on loopback ports, with its embedded local IVS.

use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub struct TestService {
    pub child: Child,
    pub api: String,
    pub ivs: String,
    pub admin: String,
    pub http: reqwest::Client,
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
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "serve did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Keep draining stdout and stderr so the child never blocks on a
        // full pipe (every mint writes an audit line); the log is kept.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
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
        Self {
            child,
            api: api.unwrap(),
            ivs: ivs.unwrap_or_default(),
            admin: admin.unwrap_or_default(),
            http: reqwest::Client::new(),
            dir,
            logs,
        }
    }

    /// POST /v1/token with an optional API key: (status, JSON body).
    pub async fn token(
        &self,
        api_key: Option<&str>,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.post("/v1/token", api_key, body.to_string(), "application/json")
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        api_key: Option<&str>,
        body: String,
        content_type: &str,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.api))
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = api_key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, json)
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
