//! The AWS clients of the shared stores (Secrets Manager, DynamoDB): the
//! default credential chain and region (or `ivs.region`), an optional
//! endpoint override each, and a short patience: these calls run in the
//! background (polls, heartbeats) or under the rotation lease, and a store
//! that does not answer must fail fast so that readiness can say so, and a
//! request lost on the way is tried again after 2 s rather than waited for.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The shared configuration of the stores' clients.
pub(crate) async fn sdk_config(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_secs(1)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(6))
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    loader.load().await
}

/// A Secrets Manager client.
pub(crate) fn secrets_manager(
    sdk: &SdkConfig,
    endpoint_url: Option<&str>,
) -> aws_sdk_secretsmanager::Client {
    let mut builder = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(url) = endpoint_url {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_secretsmanager::Client::from_conf(builder.build())
}

/// A DynamoDB client.
pub(crate) fn dynamodb(sdk: &SdkConfig, endpoint_url: Option<&str>) -> aws_sdk_dynamodb::Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(url) = endpoint_url {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

/// A real moto_server for the stores' tests: `.ci/run` sets `MOTO_SERVER`
/// to `tests/moto/moto_server.py` (moto's own, one request at a time, so that
/// a conditional write is atomic as in DynamoDB); without it a test says so
/// and passes only when `CI_REQUIRE_MOTO` is unset (as tests/moto_channels.rs
/// does).
#[cfg(test)]
pub(crate) mod moto {
    use std::process::Stdio;
    use std::time::Duration;

    use aws_config::SdkConfig;
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use tokio::io::{AsyncBufReadExt as _, BufReader};

    /// A running moto_server, stopped when dropped.
    pub(crate) struct Moto {
        _child: tokio::process::Child,
        pub(crate) url: String,
    }

    impl Moto {
        /// The stores' SDK configuration, with test credentials.
        pub(crate) async fn sdk(&self) -> SdkConfig {
            let sdk = super::sdk_config(Some("us-west-2")).await;
            sdk.into_builder()
                .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                    "testing", "testing", None, None, "test",
                )))
                .build()
        }
    }

    pub(crate) async fn start() -> Option<Moto> {
        let Ok(bin) = std::env::var("MOTO_SERVER") else {
            assert!(
                std::env::var_os("CI_REQUIRE_MOTO").is_none(),
                "CI_REQUIRE_MOTO is set but MOTO_SERVER is not"
            );
            eprintln!("MOTO_SERVER is not set: skipping the moto_server run (.ci/run sets it)");
            return None;
        };
        let mut child = tokio::process::Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(at) = line.find("http://127.0.0.1:") {
                    return line[at..].trim().to_owned();
                }
            }
            panic!("moto_server exited before listening");
        })
        .await
        .expect("moto_server did not start within 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Moto { _child: child, url })
    }
}
