//! The token service: the real binary on loopback, with its embedded local
//! IVS; every minted token is played against the local IVS.

// Helpers outside #[test] functions unwrap too: a set-up failure should stop
// the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::SystemTime;

use common::local_ivs::TestIvs;
use common::service::{TestService, claims_of, sha256_hex};
use ivs_playback_auth::Verifier;
use serde_json::{Value, json};

const BACKEND_KEY: &str = "ivsk_backend_0123456789abcdef";
const LIMITED_KEY: &str = "ivsk_limited_0123456789abcdef";
/// An API key entitled to every channel by ARN (`arn:aws:ivs:*`).
const ARN_KEY: &str = "ivsk_arns_0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn config() -> String {
    format!(
        r#"
cors_origins = ["https://app.example.com"]

[[api_keys]]
name = "backend"
sha256 = "{}"
channels = ["demo", "team-*"]
max_ttl_seconds = 900
default_origins = ["https://app.example.com"]
allowed_origins = ["https://admin.example.com"]
allow_single_use = true
rate_per_second = 1000

[[api_keys]]
name = "arns"
sha256 = "{}"
channels = ["arn:aws:ivs:*"]
rate_per_second = 5000

[[api_keys]]
name = "limited"
sha256 = "{}"
channels = ["demo"]
max_ttl_seconds = 120
allowed_resolutions = ["SD"]
rate_per_second = 5

[anonymous]
rate_per_ip_per_second = 1000

[viewer_ids]
secret = "0123456789abcdef0123456789abcdef-test-secret"
"#,
        sha256_hex(BACKEND_KEY),
        sha256_hex(ARN_KEY),
        sha256_hex(LIMITED_KEY)
    )
}

/// The admin section tests add when they create channels after the start:
/// the token path finds names only in the last channel listing, so they
/// refresh it through the admin API.
fn admin_section() -> String {
    format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_sha256 = \"{}\"\n",
        sha256_hex(ADMIN_TOKEN)
    )
}

async fn service() -> TestService {
    TestService::start(&format!("{}{}", config(), admin_section()))
        .await
        .with_admin_token(ADMIN_TOKEN)
}

/// Reloads the service's channel listing (after channels were made in IVS).
async fn refresh(s: &TestService) {
    let r = s.refresh_channels().await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn an_api_key_mints_a_token_that_plays_and_verifies_independently() {
    let s = service().await;
    let (status, body) = s.token(Some(BACKEND_KEY), json!({"channel": "demo"})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let playback_url = body["playback_url"].as_str().unwrap();
    assert!(playback_url.starts_with(&s.ivs) && playback_url.ends_with(token));
    let claims = claims_of(token);
    assert_eq!(claims["aws:channel-arn"], body["channel_arn"]);
    assert_eq!(
        claims["aws:access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(claims["exp"], body["expires_at"]);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = body["expires_at"].as_u64().unwrap();
    assert!(
        exp > now && exp <= now + 300,
        "exp {exp} is seconds, within the default TTL"
    );
    assert!(body["refresh_after"].as_u64().unwrap() < exp);

    // The jsonwebtoken crate agrees, and so does our verifier.
    let key = s.public_key();
    let decoding = jsonwebtoken::DecodingKey::from_ec_pem(key.to_pem().as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES384);
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Value>(token, &decoding, &validation).unwrap();
    Verifier::new([&key]).verify(token).unwrap();

    let (status, playlist) = s.play(playback_url, Some("https://app.example.com")).await;
    assert_eq!(status, 200, "{playlist}");
    assert!(playlist.starts_with("#EXTM3U"));
    let (status, _) = s.play(playback_url, Some("https://evil.example")).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn viewer_and_single_use_tokens_are_per_viewer_and_play_once() {
    let s = service().await;
    let (status, body) = s
        .token(Some(BACKEND_KEY), json!({"channel": "demo", "viewer_id": "alice@example.com", "origins": ["https://admin.example.com"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["token"].as_str().unwrap());
    let viewer = claims["aws:viewer-id"].as_str().unwrap();
    assert_eq!(viewer.len(), 40);
    assert!(!viewer.contains("alice"));
    assert_eq!(
        claims["aws:access-control-allow-origin"],
        "https://admin.example.com"
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(claims["exp"].as_u64().unwrap() <= now + 595);
    // The same user gets the same pseudonym, and a fresh token each time.
    let (_, again) = s
        .token(
            Some(BACKEND_KEY),
            json!({"channel": "demo", "viewer_id": "alice@example.com"}),
        )
        .await;
    assert_eq!(
        claims_of(again["token"].as_str().unwrap())["aws:viewer-id"],
        viewer
    );
    assert_ne!(again["token"], body["token"]);
    assert_eq!(s.play_minted(&body, None).await.0, 200);

    let (status, single) = s
        .token(
            Some(BACKEND_KEY),
            json!({"channel": "demo", "single_use": true}),
        )
        .await;
    assert_eq!(status, 200, "{single}");
    let url = single["playback_url"].as_str().unwrap();
    assert_eq!(s.play(url, None).await.0, 200);
    let (status, refusal) = s.play(url, None).await;
    assert_eq!(status, 403);
    assert!(refusal.contains("already used"));
}

#[tokio::test]
async fn shareable_tokens_are_signed_once_per_bucket() {
    let s = service().await;
    let (status, a) = s.token(None, json!({"channel": "demo"})).await;
    assert_eq!(status, 200, "{a}");
    let (status, b) = s.token(None, json!({"channel": "demo"})).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(
        a["token"], b["token"],
        "anonymous tokens with the same claims are shared"
    );
    // Every field of the second answer is the first one's (the bytes are
    // kept with the shared token; that they are written once is the unit
    // test a_shared_answer_is_written_once_per_playback_url).
    assert_eq!(a, b, "the shared answer differs");
    assert!(
        a["playback_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("?token={}", a["token"].as_str().unwrap())),
        "{a}"
    );
    assert_eq!(s.play_minted(&a, None).await.0, 200);
    // Other claims are another token, not the shared one.
    let (status, c) = s
        .token(None, json!({"channel": "demo", "maximum_resolution": "SD"}))
        .await;
    assert_eq!(status, 200, "{c}");
    let (shared, capped) = (
        claims_of(a["token"].as_str().unwrap()),
        claims_of(c["token"].as_str().unwrap()),
    );
    assert_eq!(shared.get("aws:maximum-resolution"), None, "{shared}");
    assert_eq!(capped["aws:maximum-resolution"], "SD", "{capped}");
    assert_ne!(a["token"], c["token"]);
    let metrics = s.metrics().await.text;
    assert!(
        metrics.contains("token_cache_total{result=\"hit\"}"),
        "{metrics}"
    );
    // The per-token counters and histogram (registered once, on the first
    // request) count, and no log line was lost.
    for counted in [
        "tokens_total{outcome=\"minted\"} ",
        "channel_cache_total{result=\"anonymous\"} ",
        "token_request_seconds_count ",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(counted))
            .unwrap_or_else(|| panic!("no {counted}in {metrics}"));
        let n: f64 = line[counted.len()..].parse().unwrap();
        assert!(n >= 3.0, "{line}");
    }
    assert!(
        metrics.lines().any(|l| l == "log_lines_dropped_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn entitlements_can_be_narrowed_never_widened() {
    let s = service().await;
    let client = s.ivs_client();
    client
        .create_channel()
        .name("team-a")
        .authorized(true)
        .send()
        .await
        .unwrap();
    client
        .create_channel()
        .name("other")
        .authorized(true)
        .send()
        .await
        .unwrap();
    client
        .create_channel()
        .name("team-public")
        .send()
        .await
        .unwrap();
    refresh(&s).await;

    let (status, body) = s
        .token(
            Some(BACKEND_KEY),
            json!({"channel": "team-a", "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.play_minted(&body, None).await.0, 200);

    let cases = [
        (
            BACKEND_KEY,
            json!({"channel": "other"}),
            403,
            "not_entitled",
            Some("channel"),
        ),
        (
            BACKEND_KEY,
            json!({"channel": "demo", "ttl_seconds": 901}),
            403,
            "not_entitled",
            Some("ttl_seconds"),
        ),
        (
            BACKEND_KEY,
            json!({"channel": "demo", "origins": ["https://evil.example"]}),
            403,
            "not_entitled",
            Some("origins[0]"),
        ),
        (
            BACKEND_KEY,
            json!({"channel": "demo", "origins": ["*"]}),
            403,
            "not_entitled",
            Some("origins"),
        ),
        (
            BACKEND_KEY,
            json!({"channel": "demo", "viewer_id": "v", "ttl_seconds": 700}),
            400,
            "invalid_field",
            Some("ttl_seconds"),
        ),
        (
            LIMITED_KEY,
            json!({"channel": "demo", "maximum_resolution": "HD"}),
            403,
            "not_entitled",
            Some("maximum_resolution"),
        ),
        (
            LIMITED_KEY,
            json!({"channel": "demo", "single_use": true}),
            403,
            "not_entitled",
            Some("single_use"),
        ),
        (
            LIMITED_KEY,
            json!({"channel": "team-a"}),
            403,
            "not_entitled",
            Some("channel"),
        ),
        (
            BACKEND_KEY,
            json!({"channel": "team-public"}),
            409,
            "channel_not_private",
            None,
        ),
        (
            BACKEND_KEY,
            json!({"channel": "no-such-channel"}),
            404,
            "channel_not_found",
            None,
        ),
    ];
    for (key, request, status_want, code, field) in cases {
        let (status, body) = s.token(Some(key), request.clone()).await;
        assert_error(status, &body, status_want, code);
        assert_eq!(body["error"]["field"].as_str(), field, "{request}: {body}");
    }
    // The limited key gets its resolution cap without asking.
    let (status, body) = s.token(Some(LIMITED_KEY), json!({"channel": "demo"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims_of(body["token"].as_str().unwrap())["aws:maximum-resolution"],
        "SD"
    );
}

#[tokio::test]
async fn callers_must_authenticate_for_non_anonymous_channels() {
    let s = service().await;
    s.ivs_client()
        .create_channel()
        .name("team-b")
        .authorized(true)
        .send()
        .await
        .unwrap();
    refresh(&s).await;
    let (status, body) = s
        .token(Some("ivsk_forged"), json!({"channel": "demo"}))
        .await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = s.token(None, json!({"channel": "team-b"})).await;
    assert_error(status, &body, 401, "unauthenticated");
    let r = s
        .token_call()
        .bearer("not.a.jwt")
        .json(&json!({"channel": "demo"}))
        .send()
        .await;
    assert_eq!(r.status, 401);
    let (status, body) = s
        .token(None, json!({"channel": "demo", "viewer_id": "x"}))
        .await;
    assert_error(status, &body, 403, "not_entitled");
}

/// A batch takes one request per item from the caller's bucket at once, so a
/// batch larger than the rate is refused however fast or slow the host is.
/// (When a single request is refused and for how long: the limiter's unit
/// tests, on a clock they drive.)
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let s = service().await;
    let six: Vec<Value> = (0..6).map(|_| json!({"channel": "demo"})).collect();
    let r = s
        .api_call(reqwest::Method::POST, "/v1/tokens")
        .api_key(LIMITED_KEY)
        .json(&json!({ "requests": six }))
        .send()
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("1"), "{:?}", r.headers);
    assert_error(429, &r.json(), 429, "rate_limited");
    // The refusal took nothing from the bucket: its whole rate is still there.
    let five: Vec<Value> = (0..5).map(|_| json!({"channel": "demo"})).collect();
    let (status, body) = s
        .tokens(Some(LIMITED_KEY), json!({ "requests": five }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["token"].is_string()),
        "{body}"
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_for_configured_origins() {
    let s = service().await;
    let ok = s.token_preflight("https://app.example.com").await;
    assert!(ok.status.is_success());
    assert_eq!(
        ok.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = s.token_preflight("https://evil.example").await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn batches_answer_per_item() {
    let s = service().await;
    let (status, body) = s
        .tokens(
            Some(BACKEND_KEY),
            json!({"requests": [{"channel": "demo"}, {"channel": "missing"}, {"channel": 5}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert!(results[0]["token"].is_string());
    assert_eq!(results[1]["error"]["code"], "channel_not_found");
    assert_eq!(results[1]["status"], 404);
    assert_eq!(results[2]["error"]["field"], "requests[2].channel");
    let too_many: Vec<Value> = (0..51).map(|_| json!({"channel": "demo"})).collect();
    let (status, body) = s
        .tokens(Some(BACKEND_KEY), json!({"requests": too_many}))
        .await;
    assert_error(status, &body, 400, "invalid_field");
}

/// One bad request to `POST /v1/token` and the answer the README documents
/// for it.
struct BadRequest {
    api_key: Option<String>,
    body: String,
    content_type: &'static str,
    status: u16,
    code: &'static str,
}

fn bad(
    api_key: Option<&str>,
    body: impl Into<String>,
    status: u16,
    code: &'static str,
) -> BadRequest {
    BadRequest {
        api_key: api_key.map(str::to_owned),
        body: body.into(),
        content_type: "application/json",
        status,
        code,
    }
}

#[tokio::test]
async fn bad_requests_get_the_documented_status_and_code_and_never_a_5xx() {
    let s = service().await;
    let key = Some(BACKEND_KEY);
    let mut cases: Vec<BadRequest> = Vec::new();
    // Not JSON, or JSON that is not an object.
    for body in [
        "",
        "{",
        "}",
        "[]",
        "null",
        "1",
        "\"demo\"",
        "{\"channel\":}",
        "{channel:\"demo\"}",
        "{\"channel\":\"demo\",}",
        "\u{0}",
        "{\"channel\":\"demo\"",
        "[{\"channel\":\"demo\"}]",
        "{\"channel\":\"\\ud800\"}",
        "tru",
        &"[".repeat(10_000),
    ] {
        cases.push(bad(key, body, 400, "invalid_json"));
    }
    // A field of the wrong type or value, or one the API does not know.
    for body in [
        json!({"channel": 1}),
        json!({"channel": ["demo"]}),
        json!({"channel": {"a": 1}}),
        json!({"channel": true}),
        json!({"channel": ""}),
        json!({"channel": "x".repeat(300)}),
        json!({"channel": "demo", "ttl_seconds": "60"}),
        json!({"channel": "demo", "ttl_seconds": -1}),
        json!({"channel": "demo", "ttl_seconds": 1.5}),
        json!({"channel": "demo", "ttl_seconds": 0}),
        json!({"channel": "demo", "single_use": "yes"}),
        json!({"channel": "demo", "single_use": 1}),
        json!({"channel": "demo", "strict_origin": "true"}),
        json!({"channel": "demo", "origins": "https://a.com"}),
        json!({"channel": "demo", "origins": [1]}),
        json!({"channel": "demo", "origins": [null]}),
        json!({"channel": "demo", "origins": []}),
        json!({"channel": "demo", "maximum_resolution": "4K"}),
        json!({"channel": "demo", "maximum_resolution": 1}),
        json!({"channel": "demo", "maximum_resolution": "sd"}),
        json!({"channel": "demo", "viewer_id": 5}),
        json!({"channel": "demo", "viewer_id": ""}),
        json!({"channel": "demo", "viewer_id": "x".repeat(300)}),
        json!({"channel": "demo", "unknown": 1}),
        json!({"channel": "demo", "exp": 1}),
        json!({"channel": "demo", "strict_origin": []}),
        json!({"channel": "demo", "origins": ["*", "https://a.com"]}),
        json!({"channel": "demo", "ttl_seconds": 1e30}),
        json!({"channel": "demo", "ttl_seconds": null, "x": 1}),
        json!({"channel": "demo", "origins": [["https://a.com"]]}),
        json!({"channel": "demo", "origins": {"a": 1}}),
        json!({"channel": "demo", "origins": vec!["https://a.com"; 21]}),
        json!({"channel": "demo", "viewer_id": ["v"]}),
        json!({"channel": "demo", "single_use": null, "strict_origin": 0}),
        json!({"Channel": "demo"}),
        json!({"channel": "demo", "maximum_resolution": ""}),
        json!({"channel": "demo", "maximum_resolution": "FULL-HD"}),
    ] {
        cases.push(bad(key, body.to_string(), 400, "invalid_field"));
    }
    for body in [json!({}), json!({"channel": null})] {
        cases.push(bad(key, body.to_string(), 400, "missing_field"));
    }
    // Origins that are not `scheme://host[:port]`.
    for origin in [
        "example.com",
        "https://app.example.com/path",
        "https://app.example.com?x",
        "ftp//x",
        "https://",
        "https://a.*.com",
        "https://*",
        "https://exa mple.com",
        "https://app.example.com:99999",
        "javascript:alert(1)",
        "https://user@app.example.com",
        "https://app.example.com#f",
        "",
        " ",
        "https://ex\u{e4}mple.com",
    ] {
        let body = json!({"channel": "demo", "origins": [origin]});
        cases.push(bad(key, body.to_string(), 400, "invalid_field"));
    }
    // Channel references that are neither a channel ARN nor a name.
    for channel in [
        "arn:aws:ivs:us-west-2:123456789012:channel/",
        "arn:aws:ivs:us-west-2:123456789012:stream-key/abc",
        "arn:aws:s3:::bucket",
        "arn:aws:ivs:US:1:channel/a",
        "arn:aws:ivs:us-west-2:123456789012:playback-key/abc",
        "../../etc/passwd",
        "demo\n",
    ] {
        let body = json!({"channel": channel});
        cases.push(bad(key, body.to_string(), 400, "invalid_field"));
    }
    // More than this key may have (`demo`, `team-*`, at most 900 s): the
    // policy decides before any lookup.
    for body in [
        json!({"channel": "arn:aws:ivs:us-west-2:123456789012:channel/doesNotExist"}),
        json!({"channel": "demo", "ttl_seconds": 901}),
        json!({"channel": "demo", "ttl_seconds": 18_446_744_073_709_551_615u64}),
    ] {
        cases.push(bad(key, body.to_string(), 403, "not_entitled"));
    }
    // Names missing from the last channel listing (names are matched as
    // IVS stores them: `DEMO` is not `demo`).
    for channel in ["DEMO", "nope"] {
        let body = json!({"channel": channel});
        cases.push(bad(key, body.to_string(), 404, "channel_not_found"));
    }
    // API keys that are not ours.
    let long_key = "k".repeat(5000);
    for wrong in [
        "",
        "x",
        "ivsk_backend_0123456789abcdeF",
        "ivsk_backend_0123456789abcde",
        long_key.as_str(),
    ] {
        let body = json!({"channel": "demo", "viewer_id": "v"});
        cases.push(bad(Some(wrong), body.to_string(), 401, "unauthenticated"));
    }
    // Not JSON by its content type (none at all, the last one).
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/xml",
        "",
    ] {
        cases.push(BadRequest {
            content_type,
            ..bad(
                key,
                json!({"channel": "demo"}).to_string(),
                415,
                "unsupported_media_type",
            )
        });
    }
    let huge = format!(
        "{{\"channel\":\"demo\",\"pad\":\"{}\"}}",
        "x".repeat(100_000)
    );
    cases.push(bad(key, huge, 413, "payload_too_large"));
    // No credentials: a name the listing lacks and an ARN that is not an
    // anonymous channel's get the same 401, before any lookup (an anonymous
    // caller learns nothing of channels it may not watch).
    for i in 0..5 {
        let body = json!({"channel": format!("private-{i}")});
        cases.push(bad(None, body.to_string(), 401, "unauthenticated"));
        let body =
            json!({"channel": format!("arn:aws:ivs:us-west-2:123456789012:channel/private{i}")});
        cases.push(bad(None, body.to_string(), 401, "unauthenticated"));
    }

    let mut wrong = Vec::new();
    for case in &cases {
        let mut request = s.token_call().body(case.body.clone());
        if !case.content_type.is_empty() {
            request = request.content_type(case.content_type);
        }
        if let Some(key) = &case.api_key {
            request = request.api_key(key);
        }
        let response = request.send().await;
        let got_code = serde_json::from_str::<Value>(&response.text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        let got_message = serde_json::from_str::<Value>(&response.text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if (response.status.as_u16(), got_code.as_deref()) != (case.status, Some(case.code))
            || got_message.is_empty()
        {
            wrong.push(format!(
                "want {} {}, got {} {}: {:?} {} {}",
                case.status,
                case.code,
                response.status.as_u16(),
                got_code.as_deref().unwrap_or("(no code)"),
                case.api_key.as_deref().map(|k| &k[..k.len().min(30)]),
                case.content_type,
                &case.body[..case.body.len().min(80)],
            ));
        }
    }
    // Forged or foreign credentials: the Authorization header is refused.
    for auth in [
        "Bearer x.y.z",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer eyJhbGciOiJub25lIn0.e30.",
        "garbage",
    ] {
        let r = s
            .token_call()
            .authorization(Some(auth))
            .json(&json!({"channel": "demo"}))
            .send()
            .await;
        let (status, body) = r.status_json();
        if (status, body["error"]["code"].as_str()) != (401, Some("unauthenticated")) {
            wrong.push(format!(
                "want 401 unauthenticated, got {status}: {auth} {body}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} bad requests were answered otherwise than documented:\n{}",
        wrong.len(),
        cases.len() + 5,
        wrong.join("\n")
    );
    // Still healthy after all that.
    let r = s.healthz().await;
    assert_eq!(r.status, 200);
    let metrics = s.metrics().await.text;
    assert!(!metrics.contains("outcome=\"internal\""), "{metrics}");
}

#[tokio::test]
async fn health_readiness_and_unknown_routes() {
    let s = service().await;
    let r = s.readyz().await;
    assert_eq!(r.status, 200);
    let body: Value = r.json();
    assert_eq!(body["ready"], true);
    assert_eq!(body["active_key"], s.public_key().fingerprint().to_string());
    let r = s.api_call(reqwest::Method::GET, "/nope").send().await;
    assert_eq!(r.status, 404);
    let body: Value = r.json();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn sigterm_stops_the_service_cleanly() {
    let s = service().await;
    let (status, _) = s.token(None, json!({"channel": "demo"})).await;
    assert_eq!(status, 200);
    let exit = s.terminate().await;
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn a_bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[tokens]\nshare_bucket_seconds = 0\n").unwrap();
    let out = TestService::serve_until_exit(&file, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("tokens.share_bucket_seconds"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// An identity provider on loopback: a JWKS with one P-384 key, and JWTs
/// signed by it.
struct TestIdp {
    key: ivs_playback_auth::PrivateKey,
    jwks_url: String,
}

impl TestIdp {
    async fn start() -> Self {
        use base64::Engine as _;
        let key = ivs_playback_auth::PrivateKey::generate().unwrap();
        let point = key.public_key().to_sec1_bytes();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-384", "kid": "idp-1", "alg": "ES384", "use": "sig",
            "x": b64.encode(&point[1..49]), "y": b64.encode(&point[49..97]),
        }]});
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            key,
            jwks_url: format!("http://{addr}/jwks.json"),
        }
    }

    fn jwt(&self, claims: Value, kid: &str) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some(kid.to_owned());
        let key =
            jsonwebtoken::EncodingKey::from_ec_pem(self.key.to_pkcs8_pem().unwrap().as_bytes())
                .unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

#[tokio::test]
async fn viewer_jwts_from_the_identity_provider_are_verified_against_its_jwks() {
    let idp = TestIdp::start().await;
    let s = TestService::start(&format!(
        "{}\n[viewer_jwt]\nissuer = \"https://idp.test/\"\naudience = \"ivs-playback\"\njwks_url = \"{}\"\nleeway_seconds = 5\n{}",
        config(),
        idp.jwks_url,
        admin_section()
    ))
    .await
    .with_admin_token(ADMIN_TOKEN);
    s.ivs_client()
        .create_channel()
        .name("premium")
        .authorized(true)
        .send()
        .await
        .unwrap();
    refresh(&s).await;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = json!({"iss": "https://idp.test/", "aud": "ivs-playback", "sub": "user-1234",
        "exp": now + 600, "ivs_channels": ["premium"]});
    let (status, body) = s
        .token_as_viewer(
            &idp.jwt(good.clone(), "idp-1"),
            json!({"channel": "premium"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["token"].as_str().unwrap());
    let viewer = claims["aws:viewer-id"].as_str().unwrap();
    assert_eq!(viewer.len(), 40);
    assert!(!viewer.contains("user-1234"));
    assert_eq!(s.play_minted(&body, None).await.0, 200);

    let (status, body) = s
        .token_as_viewer(&idp.jwt(good.clone(), "idp-1"), json!({"channel": "demo"}))
        .await;
    assert_error(status, &body, 403, "not_entitled");
    let (status, body) = s
        .token_as_viewer(
            &idp.jwt(good.clone(), "idp-1"),
            json!({"channel": "premium", "viewer_id": "x"}),
        )
        .await;
    assert_error(status, &body, 403, "not_entitled");

    let mut expired = good.clone();
    expired["exp"] = json!(now - 60);
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.test/");
    let mut no_sub = good.clone();
    no_sub.as_object_mut().unwrap().remove("sub");
    let tampered = {
        let jwt = idp.jwt(good.clone(), "idp-1");
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].replacen('e', "f", 1);
        parts.join(".")
    };
    let other_idp = TestIdp::start().await;
    for (what, jwt) in [
        ("expired", idp.jwt(expired, "idp-1")),
        ("wrong audience", idp.jwt(wrong_aud, "idp-1")),
        ("wrong issuer", idp.jwt(wrong_iss, "idp-1")),
        ("no sub", idp.jwt(no_sub, "idp-1")),
        ("unknown kid", idp.jwt(good.clone(), "idp-9")),
        ("another key", other_idp.jwt(good.clone(), "idp-1")),
        ("tampered", tampered),
        (
            "alg none",
            "eyJhbGciOiJub25lIiwia2lkIjoiaWRwLTEifQ.eyJzdWIiOiJ4In0.".to_owned(),
        ),
        ("garbage", "not-a-jwt".to_owned()),
    ] {
        let (status, body) = s.token_as_viewer(&jwt, json!({"channel": "premium"})).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthenticated", "{what}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_what_the_service_answers() {
    let s = service().await;
    let doc: Value = s.openapi().await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let post = &doc["paths"]["/v1/token"]["post"];
    for status in [
        "200", "400", "401", "403", "404", "409", "413", "415", "429", "503",
    ] {
        assert!(
            post["responses"][status].is_object(),
            "{status} is documented"
        );
    }
    assert!(doc["paths"]["/v1/tokens"]["post"].is_object());
    let schemas = &doc["components"]["schemas"];
    let props = |name: &str| -> Vec<String> {
        let mut keys: Vec<String> = schemas[name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    // A real answer has exactly the documented fields.
    let (_, body) = s.token(Some(BACKEND_KEY), json!({"channel": "demo"})).await;
    let mut got: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    got.sort();
    assert_eq!(got, props("TokenResponse"));
    let (_, error) = s
        .token(
            Some(BACKEND_KEY),
            json!({"channel": "demo", "ttl_seconds": "x"}),
        )
        .await;
    let mut got: Vec<String> = error["error"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    got.sort();
    assert_eq!(got, props("ErrorDetail"));
    // Every field the service accepts is documented.
    assert_eq!(
        props("TokenRequest"),
        [
            "channel",
            "maximum_resolution",
            "origins",
            "single_use",
            "strict_origin",
            "ttl_seconds",
            "viewer_id"
        ]
    );
}

#[tokio::test]
async fn network_and_country_rules_refuse_before_anything_else() {
    let denied = TestService::start(&format!(
        "{}\n[policy]\ndeny_cidrs = [\"127.0.0.0/8\"]\n",
        config()
    ))
    .await;
    let (status, body) = denied
        .token(Some(BACKEND_KEY), json!({"channel": "demo"}))
        .await;
    assert_error(status, &body, 403, "policy_denied");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policy.deny_cidrs")
    );

    let geo = TestService::start(&format!(
        "{}\n[policy]\ncountry_header = \"CloudFront-Viewer-Country\"\nallow_countries = [\"DE\", \"FR\"]\ndeny_countries = [\"FR\"]\n",
        config()
    ))
    .await;
    let ask = async |country: Option<&str>| {
        let mut r = geo
            .token_call()
            .api_key(BACKEND_KEY)
            .json(&json!({"channel": "demo"}));
        if let Some(c) = country {
            r = r.header("cloudfront-viewer-country", c);
        }
        r.send().await.status_json()
    };
    assert_eq!(ask(Some("DE")).await.0, 200);
    let (status, body) = ask(Some("FR")).await;
    assert_error(status, &body, 403, "policy_denied");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deny_countries")
    );
    let (status, body) = ask(Some("US")).await;
    assert_error(status, &body, 403, "policy_denied");
    let (status, _) = ask(None).await;
    assert_eq!(status, 403, "no country header: not in the allow list");
}

#[tokio::test]
async fn aws_mode_talks_to_ivs_through_the_sdk_and_starts_no_local_ivs() {
    use ivs_playback_auth::service::local_ivs::{LocalIvs, LocalIvsConfig};
    // Standing in for Amazon IVS: a local IVS that checks SigV4 signatures,
    // so the service's credential chain is exercised for real.
    let ivs = LocalIvs::start(LocalIvsConfig {
        credentials: vec![(
            "AKIDSERVICE".into(),
            "service-secret".into(),
            Some("444455556666".into()),
        )],
        ..LocalIvsConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aws.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[ivs]\nmode = \"aws\"\nregion = \"eu-west-1\"\nendpoint_url = \"{}\"\n[keys]\ndir = \"{}\"\ngenerate_if_missing = true\n",
            config(),
            ivs.endpoint_url(),
            dir.path().join("keys").display()
        ),
    )
    .unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDSERVICE"),
        ("AWS_SECRET_ACCESS_KEY", "service-secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ];
    // A private channel in IVS before the service starts: the warm-up finds it.
    let client = {
        use aws_sdk_ivs::config::{BehaviorVersion, Credentials, Region};
        aws_sdk_ivs::Client::from_conf(
            aws_sdk_ivs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("eu-west-1"))
                .endpoint_url(ivs.endpoint_url())
                .credentials_provider(Credentials::new(
                    "AKIDSERVICE",
                    "service-secret",
                    None,
                    None,
                    "t",
                ))
                .build(),
        )
    };
    client
        .create_channel()
        .name("team-prod")
        .authorized(true)
        .send()
        .await
        .unwrap();
    let s = TestService::start_with_env(dir, &file, &env).await;
    assert!(s.ivs.is_empty(), "no local IVS in aws mode");
    // The service imported its key into "IVS".
    let pairs = client.list_playback_key_pairs().send().await.unwrap();
    assert_eq!(pairs.key_pairs().len(), 1);
    let (status, body) = s
        .token(Some(BACKEND_KEY), json!({"channel": "team-prod"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["channel_arn"]
            .as_str()
            .unwrap()
            .contains(":eu-west-1:444455556666:channel/")
    );
    let (status, playlist) = s.play_minted(&body, Some("https://app.example.com")).await;
    assert_eq!(status, 200, "{playlist}");
    // No demo channel outside local mode: anonymous callers get the answer
    // they get for any channel they may not watch.
    let (status, body) = s.token(None, json!({"channel": "demo"})).await;
    assert_error(status, &body, 401, "unauthenticated");
    // IVS gone: cached channels still mint; a name the listing lacks is not
    // found without asking IVS; an entitled caller's ARN miss asks IVS and
    // gets a 503, not a 500.
    ivs.stop().await;
    let (status, _) = s
        .token(Some(BACKEND_KEY), json!({"channel": "team-prod"}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = s
        .token(Some(BACKEND_KEY), json!({"channel": "team-new"}))
        .await;
    assert_error(status, &body, 404, "channel_not_found");
    let (status, body) = s
        .token(
            Some(ARN_KEY),
            json!({"channel": "arn:aws:ivs:eu-west-1:444455556666:channel/NotCachedYet1"}),
        )
        .await;
    assert_error(status, &body, 503, "ivs_unavailable");
}

/// 1,000 made-up channel names and ARNs from anonymous callers and API
/// keys: IVS (a local IVS that counts its calls) is asked only for ARNs the
/// caller is entitled to, and no more often than the misses' budget allows.
#[tokio::test]
async fn made_up_channels_cost_no_ivs_calls_beyond_the_budget() {
    use ivs_playback_auth::service::mint::channels::{MISS_BUDGET_BURST, MISS_BUDGET_PER_SECOND};
    let ivs = TestIvs::start().await;
    let s = aws_service(&ivs, "").await;
    let calls = || async {
        let v: Value = ivs
            .http
            .get(format!("{}/_local/calls", ivs.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["calls"].clone()
    };
    let count = |calls: &Value, op: &str| calls[op].as_u64().unwrap_or(0);
    let before = calls().await;

    let started = std::time::Instant::now();
    let mut answers = std::collections::BTreeMap::<(u16, String), u32>::new();
    for i in 0..1_000u32 {
        let arn = format!("arn:aws:ivs:us-west-2:123456789012:channel/MadeUp{i:06}");
        let name = format!("made-up-{i}");
        let (caller, channel, want) = match i % 4 {
            // Anonymous callers may watch nothing here: refused before IVS,
            // alike for ARNs and names, so that they learn nothing.
            0 => (None, arn, (401, "unauthenticated")),
            1 => (None, name, (401, "unauthenticated")),
            // `backend` is entitled to `demo` and `team-*` (names): an ARN
            // is outside its entitlements, a name outside the listing.
            2 => (Some(BACKEND_KEY), arn, (403, "not_entitled")),
            _ => (Some(ARN_KEY), arn, (0, "")),
        };
        let (status, body) = s.token(caller, json!({ "channel": channel })).await;
        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
        if want.0 != 0 {
            assert_eq!((status, code.as_str()), want, "{channel}: {body}");
        } else {
            // Entitled ARN misses: IVS says not found, or the budget is spent.
            assert!(
                (status, code.as_str()) == (404, "channel_not_found")
                    || (status, code.as_str()) == (429, "rate_limited"),
                "{channel}: {status} {body}"
            );
        }
        *answers.entry((status, code)).or_default() += 1;
    }
    let elapsed = started.elapsed().as_secs();
    let after = calls().await;
    let get_channel = count(&after, "GetChannel") - count(&before, "GetChannel");
    let list_channels = count(&after, "ListChannels") - count(&before, "ListChannels");
    let budget = u64::from(MISS_BUDGET_BURST) + u64::from(MISS_BUDGET_PER_SECOND) * (elapsed + 1);
    assert!(
        get_channel >= 1 && get_channel <= budget,
        "{get_channel} GetChannel calls in {elapsed} s, budget {budget}; answers {answers:?}"
    );
    assert_eq!(
        list_channels, 0,
        "names are never looked up on the token path"
    );
    assert_eq!(
        after
            .as_object()
            .unwrap()
            .keys()
            .filter(|op| ![
                "GetChannel",
                "ListChannels",
                "BatchGetChannel",
                "ListPlaybackKeyPairs",
                "GetPlaybackKeyPair",
                "ImportPlaybackKeyPair"
            ]
            .contains(&op.as_str()))
            .count(),
        0,
        "{after}"
    );
    eprintln!("answers: {answers:?}; IVS calls: {get_channel} GetChannel in {elapsed} s");
    ivs.ivs.stop().await;
}

/// `serve` in aws mode against a local IVS with test controls, with the
/// admin API on and `extra` TOML.
async fn aws_service(ivs: &TestIvs, extra: &str) -> TestService {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aws.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}{}\n[ivs]\nmode = \"aws\"\nregion = \"us-west-2\"\nendpoint_url = \"{}\"\n[keys]\ndir = \"{}\"\ngenerate_if_missing = true\n{extra}",
            config(),
            admin_section(),
            ivs.url(),
            dir.path().join("keys").display()
        ),
    )
    .unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDSERVICE"),
        ("AWS_SECRET_ACCESS_KEY", "service-secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ];
    TestService::start_with_env(dir, &file, &env)
        .await
        .with_admin_token(ADMIN_TOKEN)
}

/// A reload of the channel listing keeps answering from what is cached
/// while IVS is slow; a service whose first listing failed says "try
/// again" (503), never "no such channel", and is not ready.
#[tokio::test]
async fn a_slow_reload_keeps_answering_and_a_cold_cache_says_try_again() {
    let ivs = TestIvs::start().await;
    ivs.client("us-west-2")
        .create_channel()
        .name("team-x")
        .authorized(true)
        .send()
        .await
        .unwrap();
    let s = aws_service(&ivs, "").await;
    let mint = || s.token(Some(BACKEND_KEY), json!({"channel": "team-x"}));
    assert_eq!(mint().await.0, 200);
    ivs.fault(r#"{"operation": "ListChannels", "delayMs": 2000}"#)
        .await;
    let list_calls = || async {
        let v: Value = ivs
            .http
            .get(format!("{}/_local/calls", ivs.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["calls"]["ListChannels"].as_u64().unwrap_or(0)
    };
    let before = list_calls().await;
    let reload = s.refresh_channels();
    let during = async {
        // Once the reload's ListChannels has reached IVS (and is held there
        // by the delay), ask by name.
        common::poll_until(
            std::time::Duration::from_secs(10),
            "the reload to reach IVS",
            async || list_calls().await > before,
        )
        .await;
        let answer = mint().await;
        let ready = s.readyz().await;
        (answer, ready)
    };
    let (reloaded, ((status, body), ready)) = tokio::join!(reload, during);
    assert_eq!(
        status, 200,
        "a name in the cache answers during a reload: {body}"
    );
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(reloaded.status, 200, "{}", reloaded.text);
    drop(s);

    let cold = TestIvs::start().await;
    cold.fault(
        r#"{"operation": "ListChannels", "count": 100, "error": "InternalServerException"}"#,
    )
    .await;
    let s = aws_service(&cold, "").await;
    let (status, body) = s
        .token(Some(BACKEND_KEY), json!({"channel": "team-x"}))
        .await;
    assert_error(status, &body, 503, "ivs_unavailable");
    assert_eq!(s.readyz().await.status, 503);
}

#[tokio::test]
async fn environment_variables_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[keys]\ndir = \"{}\"\n",
            config(),
            dir.path().join("keys").display()
        ),
    )
    .unwrap();
    let s = TestService::start_with_env(
        dir,
        &file,
        &[("IVS_AUTH__TOKENS__DEFAULT_TTL_SECONDS", "120")],
    )
    .await;
    let (_, body) = s
        .token(
            Some(BACKEND_KEY),
            json!({"channel": "demo", "viewer_id": "v"}),
        )
        .await;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(body["expires_at"].as_u64().unwrap() <= now + 121, "{body}");
}

#[tokio::test]
async fn the_admin_api_refreshes_the_channel_cache_and_lets_no_one_else_in() {
    let admin_token = "admin-token-0123456789";
    let s = TestService::start(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_sha256 = \"{}\"\n",
        config(),
        sha256_hex(admin_token)
    ))
    .await
    .with_admin_token(admin_token);
    assert!(s.admin.starts_with("http://127.0.0.1:"), "{}", s.admin);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic YWRtaW46YWRtaW4="),
        Some(""),
        Some("Bearer "),
    ] {
        let r = s
            .admin_call(reqwest::Method::POST, "/admin/v1/channels/refresh")
            .authorization(auth)
            .send()
            .await;
        assert_eq!(r.status, 401, "{auth:?}");
    }
    // Unknown admin paths are refused before routing too.
    let r = s
        .admin_call(reqwest::Method::GET, "/admin/v1/keys")
        .authorization(None)
        .send()
        .await;
    assert_eq!(r.status, 401);
    // The token API does not serve admin routes.
    let r = s
        .api_call(reqwest::Method::POST, "/admin/v1/channels/refresh")
        .bearer(admin_token)
        .send()
        .await;
    assert_eq!(r.status, 404);

    // A channel asked for before it exists is remembered as unknown...
    let (status, _) = s
        .token(Some(BACKEND_KEY), json!({"channel": "team-late"}))
        .await;
    assert_eq!(status, 404);
    s.ivs_client()
        .create_channel()
        .name("team-late")
        .authorized(true)
        .send()
        .await
        .unwrap();
    let (status, _) = s
        .token(Some(BACKEND_KEY), json!({"channel": "team-late"}))
        .await;
    assert_eq!(status, 404, "negative cache");
    // ...until an admin refreshes the cache.
    let r = s.refresh_channels().await;
    assert_eq!(r.status, 200);
    let (status, body) = s
        .token(Some(BACKEND_KEY), json!({"channel": "team-late"}))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_viewer_page_is_served_with_the_right_content_types_or_says_how_to_build_it() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("index.html"),
        "<!doctype html><title>v</title>",
    )
    .unwrap();
    std::fs::write(site.path().join("viewer.js"), "console.log(1)").unwrap();
    std::fs::write(
        site.path().join("amazon-ivs-wasmworker.min.wasm"),
        b"\0asm\x01\0\0\0",
    )
    .unwrap();
    let s = TestService::start(&format!("viewer_dir = \"{}\"", site.path().display())).await;
    for (path, content_type) in [
        ("/viewer/", "text/html"),
        ("/viewer/viewer.js", "text/javascript"),
        ("/viewer/amazon-ivs-wasmworker.min.wasm", "application/wasm"),
    ] {
        let r = s.page(path).await;
        assert_eq!(r.status, 200, "{path}");
        let got = r.headers["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(content_type), "{path}: {got}");
    }
    let home = s.page("/").await;
    assert!(home.status.is_redirection());
    assert_eq!(home.headers["location"], "/viewer/");
    let missing = s.page("/viewer/nope.js").await;
    assert_eq!(missing.status, 404);

    // Not built: a JSON 404 that says how to build it.
    let s = TestService::start("viewer_dir = \"/nonexistent/viewer/dist\"").await;
    for path in ["/viewer/", "/viewer/index.html"] {
        let r = s.page(path).await;
        assert_eq!(r.status, 404, "{path}");
        let body: serde_json::Value = r.json();
        assert_eq!(body["error"]["code"], "viewer_not_built", "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("npm run build")
        );
    }
}

#[tokio::test]
async fn origins_star_gets_http_words_from_every_kind_of_caller() {
    // Issue 12: `"origins": ["*"]` answered with a Rust API name.
    let s = service().await;
    for (key, origins) in [
        (None, json!(["*"])),
        (None, json!(["*", "https://a.example.com"])),
        (Some(BACKEND_KEY), json!(["*", "https://a.example.com"])),
        (Some(BACKEND_KEY), json!(["https://a.example.com", "*"])),
        (Some(LIMITED_KEY), json!(["*"])),
    ] {
        let (status, body) = s
            .token(key, json!({"channel": "demo", "origins": origins}))
            .await;
        assert!(status == 400 || status == 403, "{origins}: {status} {body}");
        let error = &body["error"];
        let message = error["message"].as_str().unwrap();
        assert!(
            error["field"].as_str().unwrap().starts_with("origins"),
            "{body}"
        );
        assert!(message.contains('*'), "{body}");
        assert!(
            !message.contains("::") && !message.contains("AllowedOrigins"),
            "{origins}: {message}"
        );
    }
}

#[tokio::test]
async fn viewer_ids_on_the_token_path_are_counted_in_characters() {
    // Issue 12's unit, on the token path too: 256 `é` are 512 bytes and
    // 256 characters, within the limit; one more is over it, and the
    // message names the unit.
    let s = service().await;
    let (status, body) = s
        .token(
            Some(BACKEND_KEY),
            json!({"channel": "demo", "viewer_id": "é".repeat(256)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims_of(body["token"].as_str().unwrap())["aws:viewer-id"]
            .as_str()
            .map(str::len),
        Some(40),
        "{body}"
    );
    let (status, body) = s
        .token(
            Some(BACKEND_KEY),
            json!({"channel": "demo", "viewer_id": "é".repeat(257)}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_field");
    assert_eq!(body["error"]["field"], "viewer_id", "{body}");
    assert!(
        message(&body).contains("256 characters"),
        "{}",
        message(&body)
    );
}

/// A playback restriction policy in the service's IVS, and a private
/// channel named `name` that uses it; the listing is refreshed.
async fn restricted_channel(
    s: &TestService,
    ivs: &aws_sdk_ivs::Client,
    name: &str,
    countries: &[&str],
    origins: &[&str],
    strict: bool,
) -> String {
    let mut create = ivs
        .create_playback_restriction_policy()
        .name(format!("{name}-policy"))
        .enable_strict_origin_enforcement(strict);
    for c in countries {
        create = create.allowed_countries(*c);
    }
    for o in origins {
        create = create.allowed_origins(*o);
    }
    let policy = create.send().await.unwrap();
    let arn = policy
        .playback_restriction_policy()
        .unwrap()
        .arn()
        .to_owned();
    ivs.create_channel()
        .name(name)
        .authorized(true)
        .playback_restriction_policy_arn(&arn)
        .send()
        .await
        .unwrap();
    refresh(s).await;
    arn
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// IVS ignores a playback restriction policy on a private channel; the
/// service applies its countries at mint time, from the trusted country
/// header, and every token it mints plays.
#[tokio::test]
async fn a_restriction_policy_limits_a_private_channels_countries_at_mint_time() {
    let s = TestService::start(&format!(
        "{}{}\n[policy]\ncountry_header = \"CloudFront-Viewer-Country\"\n",
        config(),
        admin_section()
    ))
    .await
    .with_admin_token(ADMIN_TOKEN);
    restricted_channel(&s, &s.ivs_client(), "team-geo", &["DE", "FR"], &[], false).await;
    let ask = async |country: Option<&str>| {
        let mut r = s
            .token_call()
            .api_key(BACKEND_KEY)
            .json(&json!({"channel": "team-geo"}));
        if let Some(c) = country {
            r = r.header("cloudfront-viewer-country", c);
        }
        r.send().await.status_json()
    };
    let (status, body) = ask(Some("de")).await;
    assert_eq!(status, 200, "{body}");
    let (status, playlist) = s.play_minted(&body, Some("https://app.example.com")).await;
    assert_eq!(status, 200, "{playlist}");

    let (status, body) = ask(Some("US")).await;
    assert_error(status, &body, 403, "policy_denied");
    assert!(
        message(&body).contains("country US") && message(&body).contains("team-geo-policy"),
        "{body}"
    );
    let (status, body) = ask(None).await;
    assert_error(status, &body, 403, "policy_denied");
    assert!(
        message(&body).contains("CloudFront-Viewer-Country"),
        "{body}"
    );
    // Batches read the same header.
    let (status, body) = s
        .tokens(
            Some(BACKEND_KEY),
            json!({"requests": [{"channel": "team-geo"}, {"channel": "demo"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], 403, "{body}");
    assert_eq!(body["results"][0]["error"]["code"], "policy_denied");
    assert!(body["results"][1]["token"].is_string(), "{body}");

    // Without a trusted country header the policy cannot be checked: a 403
    // that says so, for this channel only.
    let blind = service().await;
    restricted_channel(&blind, &blind.ivs_client(), "team-geo", &["DE"], &[], false).await;
    let (status, body) = blind
        .token(Some(BACKEND_KEY), json!({"channel": "team-geo"}))
        .await;
    assert_error(status, &body, 403, "policy_unverifiable");
    assert!(message(&body).contains("policy.country_header"), "{body}");
    // The refresh warned the operator.
    blind
        .logs_when("policy_unverifiable warning", |logs| {
            logs.iter()
                .any(|l| l.contains("policy_unverifiable") && l.contains("WARN"))
        })
        .await;
    let (status, _) = blind
        .token(Some(BACKEND_KEY), json!({"channel": "demo"}))
        .await;
    assert_eq!(status, 200);
}

/// The policy's origins and the caller's meet by intersection, strictly
/// enforced when the policy says so; an empty intersection is refused
/// naming both.
#[tokio::test]
async fn a_restriction_policys_origins_meet_the_callers_by_intersection() {
    let s = service().await;
    restricted_channel(
        &s,
        &s.ivs_client(),
        "team-web",
        &[],
        &["https://app.example.com", "https://partner.example.net"],
        true,
    )
    .await;
    // The backend key's default origin is one the policy allows.
    let (status, body) = s
        .token(Some(BACKEND_KEY), json!({"channel": "team-web"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["token"].as_str().unwrap());
    assert_eq!(
        claims["aws:access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(claims["aws:strict-origin-enforcement"], true);
    let (status, playlist) = s.play_minted(&body, Some("https://app.example.com")).await;
    assert_eq!(status, 200, "{playlist}");
    let (status, _) = s
        .play_minted(&body, Some("https://partner.example.net"))
        .await;
    assert_eq!(status, 403, "the caller's policy did not allow the partner");

    // An origin the key may ask for but the policy does not allow.
    let (status, body) = s
        .token(
            Some(BACKEND_KEY),
            json!({"channel": "team-web", "origins": ["https://admin.example.com"]}),
        )
        .await;
    assert_error(status, &body, 403, "policy_denied");
    let m = message(&body);
    assert!(
        m.contains("API key backend (https://admin.example.com)")
            && m.contains("team-web-policy")
            && m.contains("https://partner.example.net"),
        "{body}"
    );

    // A key with no origin rule of its own gets the policy's origins.
    let arn = body_arn(&s, "team-web").await;
    let (status, body) = s.token(Some(ARN_KEY), json!({"channel": arn})).await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["token"].as_str().unwrap());
    assert_eq!(
        claims["aws:access-control-allow-origin"],
        "https://app.example.com,https://partner.example.net"
    );
    let (status, playlist) = s
        .play_minted(&body, Some("https://partner.example.net"))
        .await;
    assert_eq!(status, 200, "{playlist}");
    let (status, _) = s.play_minted(&body, Some("https://evil.example")).await;
    assert_eq!(status, 403);
}

/// The ARN of a channel, from a token the backend key mints for it.
async fn body_arn(s: &TestService, name: &str) -> String {
    let (status, body) = s.token(Some(BACKEND_KEY), json!({"channel": name})).await;
    assert_eq!(status, 200, "{body}");
    body["channel_arn"].as_str().unwrap().to_owned()
}

/// A policy changed in IVS applies once the cache is refreshed; the token
/// path itself never reads policies.
#[tokio::test]
async fn a_policy_changed_in_ivs_applies_after_the_cache_refresh() {
    let ivs = TestIvs::start().await;
    let s = aws_service(
        &ivs,
        "[policy]\ncountry_header = \"CloudFront-Viewer-Country\"\n",
    )
    .await;
    let client = ivs.client("us-west-2");
    let policy = restricted_channel(&s, &client, "team-moving", &["DE"], &[], false).await;
    let reads = ivs.calls_of("GetPlaybackRestrictionPolicy").await;
    assert!(reads >= 1, "the refresh read the policy");
    let ask = async |country: &str| {
        s.token_call()
            .api_key(BACKEND_KEY)
            .header("cloudfront-viewer-country", country)
            .json(&json!({"channel": "team-moving"}))
            .send()
            .await
            .status_json()
    };
    let (status, body) = ask("DE").await;
    assert_eq!(status, 200, "{body}");
    let channel = body["channel_arn"].as_str().unwrap().to_owned();
    assert_eq!(
        s.play_minted(&body, Some("https://app.example.com"))
            .await
            .0,
        200
    );
    assert_eq!(ask("US").await.0, 403);

    client
        .update_playback_restriction_policy()
        .arn(&policy)
        .allowed_countries("US")
        .send()
        .await
        .unwrap();
    // Until the refresh, the cached policy holds, and minting asks IVS
    // nothing about policies.
    assert_eq!(ask("DE").await.0, 200);
    assert_eq!(ask("US").await.0, 403);
    assert_eq!(ivs.calls_of("GetPlaybackRestrictionPolicy").await, reads);
    refresh(&s).await;
    let (status, body) = ask("US").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        s.play_minted(&body, Some("https://app.example.com"))
            .await
            .0,
        200
    );
    let (status, body) = ask("DE").await;
    assert_error(status, &body, 403, "policy_denied");

    // Detached in IVS: after the refresh, the channel is unrestricted.
    client
        .update_channel()
        .arn(&channel)
        .playback_restriction_policy_arn("")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    refresh(&s).await;
    assert_eq!(ask("DE").await.0, 200);
    // A channel made since the listing, asked for by ARN: the cache's fill
    // (GetChannel, within the misses' budget) reads its policy too.
    let late = client
        .create_channel()
        .name("late-geo")
        .authorized(true)
        .playback_restriction_policy_arn(&policy)
        .send()
        .await
        .unwrap();
    let late = late.channel().unwrap().arn().unwrap().to_owned();
    let by_arn = async |country: &str| {
        s.token_call()
            .api_key(ARN_KEY)
            .header("cloudfront-viewer-country", country)
            .json(&json!({"channel": late}))
            .send()
            .await
            .status_json()
    };
    let (status, body) = by_arn("DE").await;
    assert_error(status, &body, 403, "policy_denied");
    let (status, body) = by_arn("US").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.play_minted(&body, None).await.0, 200);
}

/// `channels.enforce_restriction_policies = false`: policies are not read,
/// and tokens are what the caller's rules alone make them.
#[tokio::test]
async fn restriction_policies_can_be_turned_off() {
    let ivs = TestIvs::start().await;
    let s = aws_service(
        &ivs,
        "[policy]\ncountry_header = \"CloudFront-Viewer-Country\"\n[channels]\nenforce_restriction_policies = false\n",
    )
    .await;
    restricted_channel(
        &s,
        &ivs.client("us-west-2"),
        "team-free",
        &["DE"],
        &["https://partner.example.net"],
        true,
    )
    .await;
    let (status, body) = s
        .token_call()
        .api_key(BACKEND_KEY)
        .header("cloudfront-viewer-country", "US")
        .json(&json!({"channel": "team-free"}))
        .send()
        .await
        .status_json();
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["token"].as_str().unwrap());
    assert_eq!(
        claims["aws:access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        claims.get("aws:strict-origin-enforcement").is_none(),
        "{claims}"
    );
    assert_eq!(
        s.play_minted(&body, Some("https://app.example.com"))
            .await
            .0,
        200
    );
    assert_eq!(ivs.calls_of("GetPlaybackRestrictionPolicy").await, 0);
}

/// A port nothing listens on now (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// No system CA certificates for the child: rustls-native-certs reads these
/// instead of /etc/ssl/certs, as in a slim image without ca-certificates.
const NO_CA_CERTIFICATES: [(&str, &str); 2] = [
    ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
    ("SSL_CERT_DIR", "/nonexistent/certs"),
];

#[tokio::test]
async fn one_port_serves_tokens_and_playback_at_the_public_url_without_ca_certificates() {
    // What the container image does: one published port, whose URL the host
    // knows (`localhost` here, where the listener says 127.0.0.1).
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://localhost:{port}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let keys = dir.path().join("keys");
    std::fs::write(&config, format!("[keys]\ndir = \"{}\"\n", keys.display())).unwrap();
    let mut env = vec![
        ("IVS_AUTH__SERVER__LISTEN", listen.as_str()),
        ("IVS_AUTH__SERVER__PUBLIC_URL", public.as_str()),
    ];
    env.extend(NO_CA_CERTIFICATES);
    let s = TestService::start_with_env(dir, &config, &env).await;
    assert_eq!(s.api, public, "the banner names the public URL");
    assert_ne!(
        s.ivs, public,
        "the local IVS's control plane stays on its own listener"
    );
    let (status, answer) = s.token(None, json!({"channel": "demo"})).await;
    assert_eq!(status, 200, "{answer}");
    let url = answer["playback_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{public}/api/video/v1/")), "{url}");
    let (status, playlist) = s.play(url, None).await;
    assert_eq!(status, 200, "{playlist}");
    // The session's variant playlists are on the public URL too, and play.
    let variant = playlist
        .lines()
        .find(|l| l.starts_with("http"))
        .unwrap_or_else(|| panic!("no variant in {playlist}"));
    assert!(variant.starts_with(&public), "{variant}");
    let (status, media) = s.play(variant, None).await;
    assert_eq!(status, 200, "{media}");
    assert!(media.contains("#EXTINF"), "{media}");
    let (status, _) = s.play(&format!("{public}/api/video/v1/nope"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn aws_mode_without_ca_certificates_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aws.toml");
    std::fs::write(
        &file,
        format!(
            "[ivs]\nmode = \"aws\"\nregion = \"us-west-2\"\n[keys]\ndir = \"{}\"\n",
            dir.path().join("keys").display()
        ),
    )
    .unwrap();
    let out = TestService::serve_until_exit(&file, &NO_CA_CERTIFICATES).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ivs.mode"), "{err}");
    assert!(last.contains("CA certificates"), "{err}");
    assert!(last.contains("apt-get install ca-certificates"), "{err}");
    assert!(!last.contains("check failed"), "{err}");
}

#[tokio::test]
async fn healthcheck_exits_0_when_ready_and_1_with_the_reason_otherwise() {
    let run = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ivs-playback-auth"))
            .arg("healthcheck")
            .args(args)
            .envs(NO_CA_CERTIFICATES)
            .output()
            .await
            .unwrap()
    };
    let s = service().await;
    let out = run(vec!["--url".into(), format!("{}/readyz", s.api)]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ready: "));
    // From the configuration, as the image's HEALTHCHECK runs it: nothing
    // listens there.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let port = free_port();
    std::fs::write(&file, format!("[server]\nlisten = \"0.0.0.0:{port}\"\n")).unwrap();
    let out = run(vec!["--config".into(), file.display().to_string()]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("not ready: GET http://127.0.0.1:{port}/readyz: ")),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
    // A bad configuration is unhealthy too (1), never the reserved 2.
    std::fs::write(&file, "[server]\nlisten = 5\n").unwrap();
    let out = run(vec!["--config".into(), file.display().to_string()]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
}

/// One playback restriction policy IVS will not let the service read takes
/// only the private channels that name it out of service (503, until a read
/// succeeds), never the whole listing: every other channel still mints, and
/// the service is ready.
#[tokio::test]
async fn an_unreadable_restriction_policy_refuses_only_its_channels() {
    let ivs = TestIvs::start().await;
    let client = ivs.client("us-west-2");
    let policy = client
        .create_playback_restriction_policy()
        .name("locked-policy")
        .allowed_countries("DE")
        .send()
        .await
        .unwrap();
    let policy_arn = policy
        .playback_restriction_policy()
        .unwrap()
        .arn()
        .to_owned();
    for (name, policy) in [("team-locked", Some(&policy_arn)), ("team-open", None)] {
        client
            .create_channel()
            .name(name)
            .authorized(true)
            .set_playback_restriction_policy_arn(policy.cloned())
            .send()
            .await
            .unwrap();
    }
    ivs.fault(
        r#"{"operation": "GetPlaybackRestrictionPolicy", "count": 1000, "error": "AccessDeniedException"}"#,
    )
    .await;
    let s = aws_service(
        &ivs,
        "[policy]\ncountry_header = \"CloudFront-Viewer-Country\"\n",
    )
    .await;
    assert_eq!(s.readyz().await.status, 200);
    let ask = async |channel: &str| {
        s.token_call()
            .api_key(BACKEND_KEY)
            .header("cloudfront-viewer-country", "DE")
            .json(&json!({"channel": channel}))
            .send()
            .await
            .status_json()
    };
    let (status, body) = ask("team-open").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.play_minted(&body, None).await.0, 200);
    let (status, body) = ask("team-locked").await;
    assert_error(status, &body, 503, "ivs_unavailable");
    assert!(message(&body).contains("restriction policy"), "{body}");
}

/// A proxy that appends the trusted country header instead of replacing it
/// would let a client choose its country: two of them are refused.
#[tokio::test]
async fn a_trusted_country_header_twice_is_refused() {
    let s = TestService::start(&format!(
        "{}\n[policy]\ncountry_header = \"CloudFront-Viewer-Country\"\nallow_countries = [\"DE\"]\n",
        config()
    ))
    .await;
    let (status, body) = s
        .token_call()
        .api_key(BACKEND_KEY)
        .header("cloudfront-viewer-country", "DE")
        .header("cloudfront-viewer-country", "US")
        .json(&json!({"channel": "demo"}))
        .send()
        .await
        .status_json();
    assert_error(status, &body, 400, "invalid_field");
    assert_eq!(
        body["error"]["field"], "CloudFront-Viewer-Country",
        "{body}"
    );
    let (status, body) = s
        .token_call()
        .api_key(BACKEND_KEY)
        .header("cloudfront-viewer-country", "DE")
        .json(&json!({"channel": "demo"}))
        .send()
        .await
        .status_json();
    assert_eq!(status, 200, "{body}");
}
