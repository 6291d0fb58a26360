//! The service under a hostile client: stalled connections, early refusals
//! that must not break keep-alive clients, stalled and oversized bodies,
//! guessed admin tokens, and answers that are always the JSON error format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::service::{TestService, sha256_hex};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

const ADMIN_TOKEN: &str = "hardening-admin-token-0123";
const API_KEY: &str = "ivsk_hardening_0123456789";

fn config(extra_server: &str) -> String {
    format!(
        r#"header_read_timeout_ms = 1000
body_read_timeout_ms = 1000
{extra_server}

[[api_keys]]
name = "backend"
sha256 = "{}"
channels = ["demo"]

[admin]
listen = "127.0.0.1:0"
token_sha256 = "{}"
"#,
        // Upper-case hex: hashes are accepted in either case.
        sha256_hex(API_KEY).to_ascii_uppercase(),
        sha256_hex(ADMIN_TOKEN)
    )
}

async fn service(extra_server: &str) -> TestService {
    TestService::start(&config(extra_server))
        .await
        .with_admin_token(ADMIN_TOKEN)
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x),
/// so that a test can be several clients.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// Reads what the server sends until it closes (or `within` passes).
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

/// Hundreds of connections that trickle half a request: past the per-address
/// limit they are refused at once, the ones taken are cut at the header
/// deadline, and `/healthz` and the token API answer other clients all along,
/// even with the process's open-files limit lowered to 256.
#[tokio::test]
async fn stalled_connections_cannot_take_the_api_down() {
    // The held connections must outlive the 300 connects: a 1 s deadline
    // would free slots mid-loop on a loaded machine and let later
    // connections in.
    const DEADLINE: Duration = Duration::from_secs(6);
    let s = TestService::start(&config("max_connections_per_ip = 100").replace(
        "header_read_timeout_ms = 1000",
        "header_read_timeout_ms = 6000",
    ))
    .await
    .with_admin_token(ADMIN_TOKEN);
    let api = addr_of(&s.api);
    let pid = s.child.id().unwrap();
    let prlimit = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=256:256"])
        .status()
        .expect("prlimit (util-linux) is needed");
    assert!(prlimit.success());

    let mut stalled = Vec::new();
    let started_connecting = Instant::now();
    for _ in 0..300 {
        let mut c = connect_from([127, 0, 0, 2], api).await.unwrap();
        // A refused connection may already be closed: a failed write is fine.
        let _ = c.write_all(b"POST /v1/token HTTP/1.1\r\nHost: x\r\n").await;
        stalled.push(c);
    }
    assert!(
        started_connecting.elapsed() < DEADLINE,
        "the 300 connects took {:?}, longer than the header deadline: the count below would not hold",
        started_connecting.elapsed()
    );
    // Other clients are served at once, while the 300 hang on.
    let started = Instant::now();
    let health = s.api_call(Method::GET, "/healthz").send().await;
    assert_eq!(health.status, 200, "{}", health.text);
    let (status, body) = s.token(None, json!({"channel": "demo"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Past the per-address limit: a JSON refusal at once, then close.
    let mut refused = 0;
    let mut cut = 0;
    for c in &mut stalled {
        let answer = read_to_close(c, DEADLINE + Duration::from_secs(10))
            .await
            .expect("every stalled connection ends within the header deadline");
        if answer.starts_with("HTTP/1.1 429") {
            assert!(answer.contains("too_many_connections"), "{answer}");
            assert!(answer.to_ascii_lowercase().contains("connection: close"));
            refused += 1;
        } else {
            cut += 1;
        }
    }
    assert_eq!(cut, 100, "the per-address limit held 100 connections");
    assert_eq!(refused, 200);
    let health = s.api_call(Method::GET, "/healthz").send().await;
    assert_eq!(health.status, 200);
}

/// A connection that sends nothing after its request is closed after the
/// header deadline, and one that trickles header bytes is too.
#[tokio::test]
async fn idle_and_trickling_connections_are_closed_at_the_header_deadline() {
    let s = service("").await;
    let api = addr_of(&s.api);
    let mut idle = TcpStream::connect(api).await.unwrap();
    let mut trickle = TcpStream::connect(api).await.unwrap();
    let started = Instant::now();
    let trickling = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
            .take(40)
        {
            if trickle.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        trickle.read_to_end(&mut Vec::new()).await.ok()
    };
    let (idle_closed, _) =
        tokio::join!(read_to_close(&mut idle, Duration::from_secs(10)), trickling);
    assert!(idle_closed.is_some());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut at the 1 s deadline, not after the 4 s trickle"
    );
}

/// Early refusals (401, 403, 415, 429) say `Connection: close` when they
/// leave a body unread, so that a pooling client opens a new connection;
/// a keep-alive client that reads them sees no connection error.
#[tokio::test]
async fn early_refusals_close_the_connection_cleanly() {
    let s = service("").await;
    let body = json!({"channel": "demo"}).to_string();
    for (key, content_type, want) in [
        (Some("wrong-key"), "application/json", 401),
        (Some(API_KEY), "text/plain", 415),
    ] {
        let mut call = s.token_call().content_type(content_type).body(body.clone());
        if let Some(key) = key {
            call = call.api_key(key);
        }
        let answer = call.send().await;
        assert_eq!(answer.status, want, "{}", answer.text);
        assert_eq!(answer.header("connection"), Some("close"), "{want}");
        assert!(answer.json()["error"]["code"].is_string());
    }
    // A pooled client: 200 refusals in a row, then a good request, and not
    // one connection error.
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let r = client
            .post(format!("{}/v1/token", s.api))
            .header("x-api-key", "wrong-key")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("no connection error after an early refusal");
        assert_eq!(r.status(), 401);
    }
    let ok = client
        .post(format!("{}/v1/token", s.api))
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// A body that stalls is 408 `request_timeout` (the client's fault: no
/// ERROR line); a declared Content-Length over the limit is 413 before any
/// of it is read.
#[tokio::test]
async fn stalled_and_oversized_bodies_are_the_clients_fault() {
    let s = service("").await;
    let api = addr_of(&s.api);
    let mut c = TcpStream::connect(api).await.unwrap();
    c.write_all(
        format!(
            "POST /v1/token HTTP/1.1\r\nHost: x\r\nX-Api-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"chan"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    let mut c = TcpStream::connect(api).await.unwrap();
    c.write_all(
        format!(
            "POST /v1/token HTTP/1.1\r\nHost: x\r\nX-Api-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "before the body deadline"
    );

    let logs = s.settled_logs().await.join("\n");
    assert!(!logs.contains("\"ERROR\""), "{logs}");
}

/// Every answer of both listeners is the JSON error format: 404, 405, and
/// the admin API's 413; schemes are matched without regard to case; CORS
/// lets a browser send a viewer JWT.
#[tokio::test]
async fn every_answer_is_json_and_schemes_are_case_insensitive() {
    let s = service(r#"cors_origins = ["https://app.example.com"]"#).await;
    for (call, want, code) in [
        (
            s.api_call(Method::GET, "/v1/token"),
            405,
            "method_not_allowed",
        ),
        (
            s.api_call(Method::DELETE, "/healthz"),
            405,
            "method_not_allowed",
        ),
        (s.api_call(Method::GET, "/nope"), 404, "not_found"),
        (
            s.admin_call(Method::GET, "/admin/v1/keys/rotate"),
            405,
            "method_not_allowed",
        ),
        (
            s.admin_call(Method::GET, "/admin/v1/nope"),
            404,
            "not_found",
        ),
        (
            s.admin_call(Method::POST, "/admin/v1/viewers/revoke")
                .content_type("application/json")
                .body("x".repeat(300 * 1024)),
            413,
            "payload_too_large",
        ),
    ] {
        let answer = call.send().await;
        assert_eq!(answer.status, want, "{}", answer.text);
        let body: Value = serde_json::from_str(&answer.text)
            .unwrap_or_else(|_| panic!("not JSON ({want}): {}", answer.text));
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let lower = s
        .admin_call(Method::GET, "/admin/v1/keys")
        .authorization(Some(&format!("bearer {ADMIN_TOKEN}")))
        .send()
        .await;
    assert_eq!(lower.status, 200, "{}", lower.text);
    let preflight = s
        .api_call(Method::OPTIONS, "/v1/token")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await;
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
}

/// Guessing the admin token is slow and quiet: past a few failures an
/// address is answered 429 without a check (the right token included) and
/// without a log line each; other addresses still get in.
#[tokio::test]
async fn failed_admin_authentication_is_throttled_per_address() {
    let s = service("").await;
    let mut statuses = Vec::new();
    for i in 0..60 {
        let r = s
            .admin_call(Method::GET, "/admin/v1/keys")
            .authorization(Some(&format!("Bearer guess-{i}")))
            .send()
            .await;
        statuses.push(r.status.as_u16());
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!((10..=12).contains(&unauthorized), "{statuses:?}");
    assert_eq!(unauthorized + throttled, 60, "{statuses:?}");
    let warned_lines = |logs: &[String]| {
        logs.iter()
            .filter(|l| l.contains("bad or missing admin token"))
            .count()
    };
    s.logs_when("audit line per checked failure", |logs| {
        warned_lines(logs) >= unauthorized
    })
    .await;
    let warned = warned_lines(&s.settled_logs().await);
    assert_eq!(warned, unauthorized, "one audit line per checked failure");
    // While throttled, even the right token is refused without a check: a
    // 200 would tell the guesser that this guess was right.
    let right = s.admin_call(Method::GET, "/admin/v1/keys").send().await;
    assert_eq!(right.status, 429, "{}", right.text);
    // Another address is not throttled.
    let admin = addr_of(&s.admin);
    let mut c = connect_from([127, 0, 0, 3], admin).await.unwrap();
    c.write_all(b"GET /admin/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

/// `serve` with `config` (in a fresh directory whose keys live in `keys/`):
/// it must refuse to start, exit 2, and say `want` on one line of stderr.
async fn refuses(config: &str, want: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{config}\n[keys]\ndir = \"{}\"\n",
            dir.path().join("keys").display()
        ),
    )
    .unwrap();
    let out = TestService::serve_until_exit(&file, &[]).await;
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{config}: {err}");
    for w in want {
        assert!(err.contains(w), "{config}: wanted {w:?} in {err}");
    }
}

/// Numbers out of their bounds, keys that would act as each other, an
/// empty admin token, a directory as the config file: refused at start-up,
/// naming the file, the key, the rule and the fix.
#[tokio::test]
async fn configurations_that_should_not_start_do_not() {
    refuses(
        "[anonymous]\nttl_seconds = 9999999999",
        &[
            "c.toml",
            "anonymous.ttl_seconds",
            "1 to 86400",
            "9999999999",
        ],
    )
    .await;
    refuses(
        "[channels]\nrefresh_seconds = 0",
        &["channels.refresh_seconds"],
    )
    .await;
    refuses(
        "[rotation]\nskew_seconds = 100000",
        &["rotation.skew_seconds", "0 to 3600"],
    )
    .await;
    let twice = format!(
        "[[api_keys]]\nname = \"a\"\nsha256 = \"{h}\"\nchannels = [\"*\"]\n[[api_keys]]\nname = \"b\"\nsha256 = \"{h}\"\nchannels = [\"*\"]",
        h = sha256_hex("same-key")
    );
    refuses(&twice, &["api_keys[1].sha256", "api_keys[0].sha256", "`a`"]).await;
    refuses(
        &format!("[admin]\ntoken_sha256 = \"{}\"", sha256_hex("")),
        &["admin.token_sha256", "empty string", "openssl rand"],
    )
    .await;
    refuses(
        &format!(
            "[[api_keys]]\nname = \"backend\"\nsha256 = \"{h}\"\nchannels = [\"*\"]\n[admin]\ntoken_sha256 = \"{h}\"",
            h = sha256_hex("shared-secret")
        ),
        &["admin.token_sha256", "api_keys[0].sha256", "`backend`"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = TestService::serve_until_exit(dir.path(), &[]).await;
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("is a directory"), "{err}");
}

/// An environment override that is invalid is blamed on its variable, not
/// on the config file (which may not mention the key at all).
#[tokio::test]
async fn a_bad_environment_override_names_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[keys]\ndir = \"{}\"\n",
            dir.path().join("keys").display()
        ),
    )
    .unwrap();
    for (var, value, rule) in [
        ("IVS_AUTH__SERVER__MAX_CONNECTIONS", "0", "1 to 1000000"),
        ("IVS_AUTH__SERVER__WRITE_TIMEOUT_MS", "5", "100 to 600000"),
        ("IVS_AUTH__SERVER__LISTEN", "nonsense", "server.listen"),
    ] {
        let out = TestService::serve_until_exit(&file, &[(var, value)]).await;
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(err.contains(var), "{var}: {err}");
        assert!(err.contains(rule), "{var}: {err}");
        assert!(
            !err.contains("c.toml"),
            "{var} is not the file's fault: {err}"
        );
    }
}

/// A key file or key directory others could read or change, or a link to
/// one, is refused with the `chmod` that fixes it; the key is not adopted.
#[cfg(unix)]
#[tokio::test]
async fn exposed_keys_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let key = ivs_playback_auth::PrivateKey::generate().unwrap();
    for (case, prepare) in [
        ("a 0644 key file", 0o644_u32),
        ("a 0777 key directory", 0o777),
        ("a link to the key file", 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = keys.join("playback-key.pem");
        match prepare {
            0 => {
                let real = dir.path().join("real.pem");
                key.write_pem_file(&real).unwrap();
                std::os::unix::fs::symlink(&real, &target).unwrap();
            }
            0o777 => {
                key.write_pem_file(&target).unwrap();
                std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o777)).unwrap();
            }
            mode => {
                key.write_pem_file(&target).unwrap();
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[keys]\ndir = \"{}\"\n",
                keys.display()
            ),
        )
        .unwrap();
        let out = TestService::serve_until_exit(&file, &[]).await;
        let err = String::from_utf8(out.stderr).unwrap();
        assert_ne!(out.status.code(), Some(0), "{case}: {err}");
        let want = if prepare == 0 {
            "symbolic link"
        } else {
            "chmod"
        };
        assert!(err.contains(want), "{case}: {err}");
    }
}

/// What a crash leaves in the key directory is cleaned up at the next
/// start: temporaries of interrupted writes are removed, a key file that no
/// record names (its state save failed) is moved to `orphaned/`, not lost.
#[tokio::test]
async fn leftovers_of_interrupted_writes_are_cleaned_up_at_start() {
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("keys");
    let file = root.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[keys]\ndir = \"{}\"\n",
            keys.display()
        ),
    )
    .unwrap();
    let s = TestService::start_with_file(tempfile::tempdir().unwrap(), &file).await;
    s.kill().await;
    let temporary = keys.join(".rotation-state.json.0123456789abcdef0123456789abcdef.tmp");
    std::fs::write(&temporary, b"{}").unwrap();
    let fresh = keys.join(".rotation-state.json.fedcba9876543210fedcba9876543210.tmp");
    std::fs::write(&fresh, b"{}").unwrap();
    let aged = std::process::Command::new("touch")
        .args(["-d", "2 minutes ago"])
        .arg(&temporary)
        .status()
        .unwrap();
    assert!(aged.success());
    let orphan = ivs_playback_auth::PrivateKey::generate().unwrap();
    let name = format!("{}.pem", orphan.fingerprint().to_string().replace(':', ""));
    orphan.write_pem_file(keys.join(&name)).unwrap();

    let again = TestService::start_with_file(tempfile::tempdir().unwrap(), &file).await;
    assert!(!temporary.exists(), "a stale temporary is removed");
    assert!(fresh.exists(), "a fresh one may be another process's write");
    assert!(!keys.join(&name).exists());
    assert!(
        keys.join("orphaned").join(&name).exists(),
        "moved aside, not lost"
    );
    let (status, body) = again.token(None, json!({"channel": "demo"})).await;
    assert_eq!(status, 200, "{body}");
}

/// Every path at `RUST_LOG=trace`: no token, API key, admin token, private
/// key or secret appears in any log line (a fingerprint at most).
#[tokio::test]
async fn no_secret_in_any_log_line_even_at_trace() {
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("keys");
    let secret = "trace-test-viewer-id-secret-0123456789abcdef";
    let file = root.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[viewer_ids]\nsecret = \"{secret}\"\n[keys]\ndir = \"{}\"\n",
            config("").replace("channels = [\"demo\"]", "channels = [\"demo\"]\nallow_single_use = true"),
            keys.display()
        ),
    )
    .unwrap();
    let s = TestService::start_with_env(
        tempfile::tempdir().unwrap(),
        &file,
        &[("RUST_LOG", "trace")],
    )
    .await
    .with_admin_token(ADMIN_TOKEN);
    let mut tokens = Vec::new();
    for body in [
        json!({"channel": "demo"}),
        json!({"channel": "demo", "viewer_id": "alice"}),
        json!({"channel": "demo", "single_use": true}),
    ] {
        let (status, answer) = s.token(Some(API_KEY), body).await;
        assert_eq!(status, 200, "{answer}");
        let url = answer["playback_url"].as_str().unwrap().to_owned();
        assert_eq!(s.play(&url, None).await.0, 200);
        // Refused at the edge: a token of the right shape with a broken
        // signature, which a log line might echo.
        let broken = format!("{}x", &url[..url.len() - 4]);
        assert_eq!(s.play(&broken, None).await.0, 403);
        tokens.push(answer["token"].as_str().unwrap().to_owned());
    }
    let (_, batch) = s
        .tokens(
            Some(API_KEY),
            json!({"requests": [{"channel": "demo", "viewer_id": "bob"}]}),
        )
        .await;
    tokens.push(batch["results"][0]["token"].as_str().unwrap().to_owned());
    let (status, _) = s
        .token(
            Some("wrong-api-key-secret-value"),
            json!({"channel": "demo"}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(s.keys().await.0, 200);
    let (status, rotated) = s.rotate().await;
    assert_eq!(status, 200, "{rotated}");
    let (status, _) = s
        .revoke_viewers(json!({"sessions": [{"channel": "demo", "viewer_id": "alice"}]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.refresh_channels().await.status, 200);
    let (status, answer) = s
        .token(
            Some(API_KEY),
            json!({"channel": "demo", "viewer_id": "carol"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    tokens.push(answer["token"].as_str().unwrap().to_owned());

    let mut secrets: Vec<(String, String)> = vec![
        ("API key".into(), API_KEY.into()),
        ("wrong API key".into(), "wrong-api-key-secret-value".into()),
        ("admin token".into(), ADMIN_TOKEN.into()),
        ("viewer id secret".into(), secret.into()),
    ];
    for t in &tokens {
        secrets.push(("token".into(), t.clone()));
        // The signature alone, and the payload alone, identify a token too.
        for (i, part) in t.split('.').enumerate().skip(1) {
            secrets.push((
                format!("token part {i}"),
                part[..40.min(part.len())].to_owned(),
            ));
        }
    }
    for entry in std::fs::read_dir(&keys).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if text.contains("PRIVATE KEY") {
            for line in text
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 20)
            {
                secrets.push(("private key".into(), line.to_owned()));
            }
        }
    }
    let logs = s.settled_logs().await;
    assert!(
        logs.len() > 100,
        "trace logging is on: {} lines",
        logs.len()
    );
    let mut hits = Vec::new();
    for line in &logs {
        for (what, secret) in &secrets {
            if line.contains(secret.as_str()) {
                hits.push(format!("{what}: {line}"));
            }
        }
    }
    assert!(hits.is_empty(), "{} hits:\n{}", hits.len(), hits.join("\n"));
}

/// A CA (`NAME-ca.pem`) and a certificate it issued for 127.0.0.1
/// (`NAME-cert.pem`, key `NAME-key.pem`), made by openssl in `dir`.
fn make_certificate(dir: &std::path::Path, name: &str) {
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is needed");
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca-key.pem"));
    let (cert, key, csr) = (
        format!("{name}-cert.pem"),
        format!("{name}-key.pem"),
        format!("{name}.csr"),
    );
    let ca_subject = format!("/CN={name} test CA");
    let mut args = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        &ca_subject,
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ];
    args.extend(ec);
    openssl(&args);
    let mut args = vec![
        "req",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &key,
        "-out",
        &csr,
    ];
    args.extend(ec);
    openssl(&args);
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for key in [&key, &ca_key] {
            std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
    }
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-extfile",
        &ext,
    ]);
}

fn client_trusting(pem_file: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(pem_file).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap()
}

/// With a certificate configured, both listeners speak TLS only; a renewed
/// certificate written over the files is served without a restart.
#[tokio::test]
async fn tls_on_both_listeners_with_the_certificate_reloaded_on_change() {
    let root = tempfile::tempdir().unwrap();
    make_certificate(root.path(), "first");
    make_certificate(root.path(), "second");
    std::fs::copy(
        root.path().join("first-cert.pem"),
        root.path().join("cert.pem"),
    )
    .unwrap();
    std::fs::copy(
        root.path().join("first-key.pem"),
        root.path().join("key.pem"),
    )
    .unwrap();
    let file = root.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_reload_seconds = 1\n{}\n[keys]\ndir = \"{}\"\n",
            root.path().join("cert.pem").display(),
            root.path().join("key.pem").display(),
            config("").replace("header_read_timeout_ms", "# header_read_timeout_ms").replace("body_read_timeout_ms", "# body_read_timeout_ms"),
            root.path().join("keys").display()
        ),
    )
    .unwrap();
    let s = TestService::start_with_file(tempfile::tempdir().unwrap(), &file).await;
    assert!(s.api.starts_with("https://127.0.0.1:"), "{}", s.api);
    assert!(s.admin.starts_with("https://127.0.0.1:"), "{}", s.admin);
    let first = client_trusting(&root.path().join("first-ca.pem"));
    let health = first
        .get(format!("{}/healthz", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let token = first
        .post(format!("{}/v1/token", s.api))
        .header("x-api-key", API_KEY)
        .json(&json!({"channel": "demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let admin = first
        .get(format!("{}/admin/v1/keys", s.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    // Plain HTTP is told what to do instead, in plain HTTP, and closed.
    for listener in [&s.api, &s.admin] {
        let mut c = TcpStream::connect(
            listener
                .trim_start_matches("https://")
                .parse::<SocketAddr>()
                .unwrap(),
        )
        .await
        .unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut c, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["error"]["code"], "tls_required", "{answer}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("https://")
        );
    }

    // Renewed: the new pair is written over the files (key first).
    std::fs::copy(
        root.path().join("second-key.pem"),
        root.path().join("key.pem"),
    )
    .unwrap();
    std::fs::copy(
        root.path().join("second-cert.pem"),
        root.path().join("cert.pem"),
    )
    .unwrap();
    let second = client_trusting(&root.path().join("second-ca.pem"));
    let api = s.api.clone();
    common::poll_until(
        Duration::from_secs(15),
        "the renewed certificate to be served",
        async || {
            // A new connection each time: the renewed certificate applies to
            // new handshakes.
            second
                .get(format!("{api}/healthz"))
                .header("connection", "close")
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    // A new client that trusts only the first certificate no longer gets in.
    let only_first = client_trusting(&root.path().join("first-ca.pem"));
    let refused = only_first.get(format!("{}/healthz", s.api)).send().await;
    assert!(
        refused.is_err(),
        "the first certificate is no longer served"
    );
}

/// A TLS private key that group or others may read is refused at start-up,
/// as the signing keys are, with the `chmod` that fixes it.
#[cfg(unix)]
#[tokio::test]
async fn a_tls_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().unwrap();
    make_certificate(root.path(), "exposed");
    let key = root.path().join("exposed-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    refuses(
        &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            root.path().join("exposed-cert.pem").display(),
            key.display()
        ),
        &["server.tls_key_file", "group or others", "chmod 600"],
    )
    .await;
}

/// The metric `name`'s value in a Prometheus text page (0 when absent).
fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Clients that pipeline requests and never read the answers: each is cut
/// once its answers have stopped moving for the write deadline, and
/// `/healthz` answers all along.
#[tokio::test]
async fn clients_that_never_read_their_answers_are_cut_at_the_write_deadline() {
    const CLIENTS: u64 = 20;
    const DEADLINE: Duration = Duration::from_secs(2);
    // The header deadline is far away: only the write deadline can cut.
    let s = TestService::start(
        &config("write_timeout_ms = 2000\nmax_connections_per_ip = 20").replace(
            "header_read_timeout_ms = 1000",
            "header_read_timeout_ms = 120000",
        ),
    )
    .await
    .with_admin_token(ADMIN_TOKEN);
    let api = addr_of(&s.api);
    // About 23 MB of answers each (11 KB apiece): more than any socket
    // buffers hold, however the machine tunes them.
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    let started = Instant::now();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..CLIENTS {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
        // A small window, so that the answers back up at once.
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(api).await.unwrap();
        let (read, mut write) = stream.into_split();
        readers.push(read);
        let request = request.clone();
        // Written beside, as the server stops reading once the answers
        // back up; an error (the server cut the connection) ends it.
        writers.push(tokio::spawn(async move {
            let _ = write.write_all(&request).await;
            write
        }));
    }
    let health = s.api_call(Method::GET, "/healthz").send().await;
    assert_eq!(health.status, 200, "{}", health.text);
    let cut = || async {
        let page = s.api_call(Method::GET, "/metrics").send().await.text;
        metric(&page, "connections_write_timeout_total")
    };
    common::poll_until(
        Duration::from_secs(60),
        "every client that never reads to be cut",
        async || cut().await >= CLIENTS,
    )
    .await;
    assert_eq!(cut().await, CLIENTS);
    assert!(
        started.elapsed() >= DEADLINE,
        "cut after the deadline, not before: {:?}",
        started.elapsed()
    );
    let health = s.api_call(Method::GET, "/healthz").send().await;
    assert_eq!(health.status, 200, "{}", health.text);
    // The address held all its 20 slots; they were given back with the
    // connections, so it gets in again (polled: a slot is freed just after
    // its connection's count).
    common::poll_until(
        Duration::from_secs(20),
        "the cut connections' slots to be free",
        async || {
            let Ok(mut again) = connect_from([127, 0, 0, 2], api).await else {
                return false;
            };
            let _ = again
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            read_to_close(&mut again, Duration::from_secs(10))
                .await
                .is_some_and(|a| a.starts_with("HTTP/1.1 200"))
        },
    )
    .await;
    drop(readers);
    for w in writers {
        let _ = w.await;
    }
}

/// Four addresses take every connection they can: the last eighth of the
/// overall limit stays free for addresses that hold few, so `/healthz` and
/// a new client's token request are served while the four hang on.
#[tokio::test]
async fn health_checks_get_in_while_a_few_addresses_hold_every_connection() {
    // 40 connections, 10 per address; the last 5 are the reserve. The
    // header deadline outlives the test: the held connections stay held.
    let s = TestService::start(
        &config("max_connections = 40\nmax_connections_per_ip = 10").replace(
            "header_read_timeout_ms = 1000",
            "header_read_timeout_ms = 120000",
        ),
    )
    .await
    .with_admin_token(ADMIN_TOKEN);
    let api = addr_of(&s.api);
    let mut attempts = Vec::new();
    for attacker in 2..=5u8 {
        for _ in 0..12 {
            let mut c = connect_from([127, 0, 0, attacker], api).await.unwrap();
            let _ = c.write_all(b"POST /v1/token HTTP/1.1\r\nHost: x\r\n").await;
            attempts.push((attacker, c));
        }
    }
    // Refusals come at once; held connections say nothing (and are kept
    // open, in the tasks' results, until the end of the test).
    let readers: Vec<_> = attempts
        .into_iter()
        .map(|(attacker, mut c)| {
            tokio::spawn(async move {
                // Far beyond a refusal's delay even on a loaded machine.
                let answer = read_to_close(&mut c, Duration::from_secs(10)).await;
                (attacker, c, answer)
            })
        })
        .collect();
    let mut kept = Vec::new();
    let mut held = [0usize; 6];
    let mut per_ip = 0;
    let mut reserve = 0;
    for reader in readers {
        let (attacker, c, answer) = reader.await.unwrap();
        kept.push(c);
        match answer {
            None => held[usize::from(attacker)] += 1,
            Some(a) if a.starts_with("HTTP/1.1 429") => per_ip += 1,
            Some(a) if a.starts_with("HTTP/1.1 503") => {
                assert!(a.contains("too_many_connections"), "{a}");
                reserve += 1;
            }
            Some(a) => panic!("unexpected answer: {a}"),
        }
    }
    assert_eq!(
        held,
        [0, 0, 10, 10, 10, 5],
        "35 held: the reserve of 5 is left"
    );
    assert_eq!((per_ip, reserve), (6, 7));
    let health = s.api_call(Method::GET, "/healthz").send().await;
    assert_eq!(health.status, 200, "{}", health.text);
    let (status, body) = s.token(Some(API_KEY), json!({"channel": "demo"})).await;
    assert_eq!(status, 200, "{body}");
    // A new client from yet another address gets in too.
    let mut fresh = connect_from([127, 0, 0, 9], api).await.unwrap();
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut fresh, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Every answer sent before its request's body was read to the end says
/// `Connection: close` (admin 401 and 429, 404s, 405s, a GET with a body,
/// 413 on the declared length), and a pooling client's next request never
/// fails; an answer to a request without a body keeps the connection.
#[tokio::test]
async fn answers_that_leave_a_body_unread_say_close_and_pools_never_fail() {
    let s = service("").await;
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let body = json!({"channel": "demo"}).to_string();
    let big = "x".repeat(100 * 1024);
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let cases: Vec<(Method, String, Option<&str>, String, u16)> = vec![
        (
            Method::POST,
            format!("{}/admin/v1/keys/rotate", s.admin),
            Some("Bearer wrong"),
            body.clone(),
            401,
        ),
        (
            Method::POST,
            format!("{}/admin/v1/nope", s.admin),
            Some(&admin),
            body.clone(),
            404,
        ),
        (
            Method::PUT,
            format!("{}/admin/v1/keys/rotate", s.admin),
            Some(&admin),
            body.clone(),
            405,
        ),
        (
            Method::POST,
            format!("{}/nope", s.api),
            None,
            body.clone(),
            404,
        ),
        (
            Method::PUT,
            format!("{}/v1/token", s.api),
            None,
            body.clone(),
            405,
        ),
        (
            Method::GET,
            format!("{}/healthz", s.api),
            None,
            body.clone(),
            200,
        ),
        (Method::POST, format!("{}/v1/token", s.api), None, big, 413),
    ];
    for round in 0..5 {
        for (method, url, authorization, body, want) in &cases {
            let mut request = client
                .request(method.clone(), url)
                .header("content-type", "application/json")
                .header("x-api-key", API_KEY)
                .body(body.clone());
            if let Some(a) = authorization {
                request = request.header("authorization", *a);
            }
            let r = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("round {round}: {method} {url}: {e}"));
            // Five failed admin authentications: short of the throttle.
            let status = r.status().as_u16();
            assert_eq!(status, *want, "{method} {url}");
            assert_eq!(
                r.headers().get("connection").and_then(|v| v.to_str().ok()),
                Some("close"),
                "{method} {url} ({status}) left its body unread"
            );
            let text = r.text().await.unwrap();
            if status != 200 {
                let json: Value = serde_json::from_str(&text).unwrap();
                assert!(json["error"]["code"].is_string(), "{text}");
            }
            // The next request on the same pool.
            let next = client
                .get(format!("{}/healthz", s.api))
                .send()
                .await
                .unwrap_or_else(|e| panic!("after {method} {url}: {e}"));
            assert_eq!(next.status(), 200);
        }
    }
    // Without a body nothing is left unread: the connection is kept.
    for url in [
        format!("{}/nope", s.api),
        format!("{}/admin/v1/nope", s.admin),
    ] {
        let r = client
            .get(&url)
            .header("authorization", &admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers().get("connection"), None, "{url}");
    }
}

/// What hyper answers by itself, before any route sees the request, is the
/// JSON error format too: a malformed request (400) and a head larger than
/// the 64 KiB buffer (431, at once, without waiting for the rest).
#[tokio::test]
async fn hypers_own_answers_are_json_and_heads_are_capped_at_64_kib() {
    let s = service("").await;
    let api = addr_of(&s.api);
    let mut c = TcpStream::connect(api).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nNot a header\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{answer}");

    // Exactly the buffer's worth, never ended: all of it is read, so the
    // close is clean (no reset erases the answer).
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.resize(64 * 1024, b'a');
    let mut c = TcpStream::connect(api).await.unwrap();
    c.write_all(&head).await.unwrap();
    let answer = read_to_close(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large", "{answer}");
    // Under the cap, a large head is fine.
    let mut c = TcpStream::connect(api).await.unwrap();
    let header = "a".repeat(32 * 1024);
    c.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {header}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut c, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
