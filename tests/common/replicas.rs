//! Many replicas of the real binary (`serve` in aws mode, keys in Secrets
//! Manager, coordination in DynamoDB) against one local IVS and one real
//! moto_server, and what a test needs to look at them: the coordination
//! table, the key pairs IVS holds, each replica's active key.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

use super::local_ivs::{TestIvs, aws_env};
use super::moto::{Moto, moto};
use super::service::{TestService, sha256_hex};

pub const ADMIN: &str = "replicas-admin-token-0123456789";
pub const API_KEY: &str = "replicas-backend-key-0123456789";
pub const TABLE: &str = "ivs-playback-auth-test";
/// The poll interval the replicas run with (`coordination.poll_seconds`).
pub const POLL: Duration = Duration::from_secs(1);
/// The rotation lease (`coordination.lease_seconds`).
pub const LEASE: Duration = Duration::from_secs(3);
/// `coordination.stale_after_seconds`.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

pub struct Cluster {
    pub moto: Moto,
    pub ivs: TestIvs,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// The host names of the replicas started so far (`replica-N`); a
    /// replica's id in the table starts with it.
    pub hosts: Vec<String>,
}

impl Cluster {
    /// A local IVS with a private channel `stage`, a moto_server, the
    /// replicas' configuration, and the coordination table made by
    /// `coordination create-table`; `None` without moto_server.
    pub async fn new() -> Option<Self> {
        let moto = moto().await?;
        let ivs = TestIvs::start().await;
        ivs.client("us-west-2")
            .create_channel()
            .name("stage")
            .authorized(true)
            .send()
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:0"
[ivs]
mode = "aws"
region = "us-west-2"
endpoint_url = "{ivs}"
[keys]
store = "secrets-manager"
dir = "{keys}"
secret_prefix = "ivs-playback-auth/test/"
secrets_endpoint_url = "{moto}"
[coordination]
table = "{TABLE}"
endpoint_url = "{moto}"
poll_seconds = {poll}
lease_seconds = {lease}
heartbeat_seconds = 1
stale_after_seconds = {stale}
[tokens]
default_ttl_seconds = 3
share_bucket_seconds = 1
[anonymous]
channels = ["stage"]
ttl_seconds = 3
rate_per_ip_per_second = 100000
[[api_keys]]
name = "backend"
sha256 = "{api}"
channels = ["*"]
max_ttl_seconds = 3
rate_per_second = 100000
[viewer_ids]
secret = "replicas-test-viewer-secret-0123456789"
[admin]
listen = "127.0.0.1:0"
token_sha256 = "{admin}"
[rotation]
skew_seconds = 1
sweep_seconds = 1
canary_channel = "stage"
"#,
                ivs = ivs.url(),
                moto = moto.url,
                keys = dir.path().join("keys").display(),
                poll = POLL.as_secs(),
                lease = LEASE.as_secs(),
                stale = STALE_AFTER.as_secs(),
                api = sha256_hex(API_KEY),
                admin = sha256_hex(ADMIN),
            ),
        )
        .unwrap();
        let made = tokio::process::Command::new(env!("CARGO_BIN_EXE_ivs-playback-auth"))
            .args(["coordination", "create-table", "--config"])
            .arg(&config)
            .envs(aws_env())
            .output()
            .await
            .unwrap();
        assert!(
            made.status.success(),
            "create-table: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let report: Value = serde_json::from_slice(&made.stdout).unwrap();
        assert_eq!(
            report,
            json!({"table": TABLE, "created": true, "ttl_attribute": "purge_at"})
        );
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-west-2"))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new(
                        "testing", "testing", None, None, "test",
                    ),
                ),
            )
            .endpoint_url(&moto.url)
            .build();
        Some(Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            moto,
            ivs,
            dir,
            config,
            hosts: Vec::new(),
        })
    }

    /// Starts one more replica (host name `replica-N`), with extra
    /// environment variables (a test hook).
    pub async fn replica(&mut self, extra: &[(&str, &str)]) -> TestService {
        let host = format!("replica-{}", self.hosts.len());
        self.hosts.push(host.clone());
        let mut env: Vec<(&str, &str)> = aws_env();
        env.push(("HOSTNAME", &host));
        env.extend_from_slice(extra);
        TestService::start_with_env(tempfile::tempdir().unwrap(), &self.config, &env)
            .await
            .with_admin_token(ADMIN)
    }

    /// `n` replicas, started one after the other.
    pub async fn replicas(&mut self, n: usize) -> Vec<TestService> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.replica(&[]).await);
        }
        out
    }

    /// An item of the coordination table, if it is there.
    pub async fn item(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.dynamodb
            .get_item()
            .table_name(TABLE)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item()
            .cloned()
    }

    /// The rotation state the replicas share.
    pub async fn state(&self) -> Value {
        let item = self.item("rotation", "state").await.unwrap();
        serde_json::from_str(item["state_json"].as_s().unwrap()).unwrap()
    }

    /// Who holds the rotation lease (whether or not it expired).
    pub async fn lease_holder(&self) -> Option<String> {
        let item = self.item("rotation", "lease").await?;
        Some(item["holder"].as_s().unwrap().clone())
    }

    /// Fingerprints of the key pairs IVS holds.
    pub async fn ivs_fingerprints(&self) -> Vec<String> {
        self.ivs.fingerprints().await
    }

    /// The secrets under the replicas' prefix.
    pub async fn secret_names(&self) -> Vec<String> {
        let list = self.secrets.list_secrets().send().await.unwrap();
        list.secret_list()
            .iter()
            .filter_map(|s| s.name().map(str::to_owned))
            .filter(|n| n.starts_with("ivs-playback-auth/test/"))
            .collect()
    }
}

/// A replica's active key, as its `/readyz` says (`None` when it does not
/// answer).
pub async fn active_key(replica: &TestService) -> Option<String> {
    let answer = replica
        .api_call(reqwest::Method::GET, "/readyz")
        .try_send()
        .await
        .ok()?;
    answer.json()["active_key"].as_str().map(str::to_owned)
}

/// Mints a viewer token on `replica` and plays it at the local IVS:
/// `Err` describes the first failure.
pub async fn mint_and_play(replica: &TestService, viewer: &str) -> Result<String, String> {
    let (status, answer) = replica
        .token(
            Some(API_KEY),
            json!({"channel": "stage", "viewer_id": viewer}),
        )
        .await;
    if status != 200 {
        return Err(format!("mint {status}: {answer}"));
    }
    let (played, body) = replica
        .try_play(answer["playback_url"].as_str().unwrap(), None)
        .await
        .map_err(|e| format!("play: {e}"))?;
    if played != 200 {
        return Err(format!("play {played}: {body}"));
    }
    Ok(answer["token"].as_str().unwrap().to_owned())
}
