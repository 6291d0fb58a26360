//! A local IVS on a loopback port, and clients for it.

use std::time::SystemTime;

use aws_sdk_ivs::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use ivs_playback_auth::service::local_ivs::{LocalIvs, LocalIvsConfig};

pub const ACCESS_KEY: &str = "AKIDLOCALTEST";
pub const SECRET: &str = "local-test-secret";

/// The environment of a `serve` in aws mode against this IVS: its
/// credentials and region, and nothing from the machine's AWS configuration.
pub fn aws_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_REGION", "us-west-2"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

pub struct TestIvs {
    pub ivs: LocalIvs,
    pub http: reqwest::Client,
}

impl TestIvs {
    /// A local IVS with test controls on and signatures accepted as long as
    /// they are well formed.
    pub async fn start() -> Self {
        Self::with_config(LocalIvsConfig {
            test_controls: true,
            ..LocalIvsConfig::default()
        })
        .await
    }

    pub async fn with_config(config: LocalIvsConfig) -> Self {
        let ivs = LocalIvs::start(config).await.unwrap();
        Self {
            ivs,
            // Pooled connections are dropped before the server's idle limit
            // can close them under a request (a keep-alive race).
            http: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self) -> &str {
        self.ivs.endpoint_url()
    }

    /// An SDK client for a region, without retries (so injected faults show).
    pub fn client(&self, region: &str) -> aws_sdk_ivs::Client {
        self.client_with(region, ACCESS_KEY, SECRET)
    }

    pub fn client_with(&self, region: &str, key: &str, secret: &str) -> aws_sdk_ivs::Client {
        let config = aws_sdk_ivs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(self.url())
            .credentials_provider(Credentials::new(key, secret, None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .build();
        aws_sdk_ivs::Client::from_conf(config)
    }

    /// A raw control-plane request with a well-formed (unverified) SigV4
    /// header, for inputs the SDK would never send.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let amz_date = amz_date(now);
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{}/us-west-2/ivs/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            &amz_date[..8],
            "0".repeat(64)
        );
        self.http
            .request(method, format!("{}{path}", self.url()))
            .header("authorization", auth)
            .header("x-amz-date", amz_date)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn fault(&self, json: &str) {
        self.control("/_local/faults", json).await;
    }

    /// A test-control POST that must succeed.
    async fn control(&self, path: &str, json: &str) {
        let r = self
            .http
            .post(format!("{}{path}", self.url()))
            .body(json.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// `POST /_local/quota-clock`: pauses (`{"pause": true}`), or moves on
    /// (`{"advanceMs": N}`), the clock that PutMetadata's rate quotas read,
    /// so that "within one second" is the test's to say.
    pub async fn quota_clock(&self, json: &str) {
        self.control("/_local/quota-clock", json).await;
    }

    /// `GET /_local/calls`: `{"calls": {operation: n}, "pending_faults": n}`.
    pub async fn calls(&self) -> serde_json::Value {
        let r = self
            .http
            .get(format!("{}/_local/calls", self.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Fingerprints of the key pairs held in us-west-2 (one deleted between
    /// the listing and its read is not held).
    pub async fn fingerprints(&self) -> Vec<String> {
        use aws_sdk_ivs::error::ProvideErrorMetadata as _;
        let client = self.client("us-west-2");
        let list = client.list_playback_key_pairs().send().await.unwrap();
        let mut out = Vec::new();
        for k in list.key_pairs() {
            match client
                .get_playback_key_pair()
                .arn(k.arn().unwrap())
                .send()
                .await
            {
                Ok(got) => out.push(got.key_pair().unwrap().fingerprint().unwrap().to_owned()),
                Err(e) if e.code() == Some("ResourceNotFoundException") => {}
                Err(e) => panic!("GetPlaybackKeyPair: {e:?}"),
            }
        }
        out
    }

    /// How many injected faults no call has met yet.
    pub async fn pending_faults(&self) -> u64 {
        self.calls().await["pending_faults"].as_u64().unwrap()
    }

    /// How many calls of `operation` were served (or faulted).
    pub async fn calls_of(&self, operation: &str) -> u64 {
        self.calls().await["calls"][operation].as_u64().unwrap_or(0)
    }

    /// GET a playback URL with an optional Origin header: (status, body).
    pub async fn play(&self, url: &str, origin: Option<&str>) -> (u16, String) {
        let mut request = self.http.get(url);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

/// `YYYYMMDDTHHMMSSZ` for Unix seconds.
fn amz_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
