//! The real binary, run as a user would.

// Helpers outside #[test] functions unwrap too: a set-up failure should stop
// the test loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use ivs_playback_auth::{PrivateKey, PublicKey, Verifier};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ivs-playback-auth"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A failure is one line naming the argument, a non-zero exit, no panic.
fn assert_one_line_error(o: &Output, names: &str) {
    assert!(!o.status.success(), "should fail: {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(names), "`{err}` should name {names}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

fn generate(dir: &Path) -> (String, String) {
    let out = run(&["keys", "generate", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let private = dir.join("playback-key.pem");
    let public = dir.join("playback-key.pub.pem");
    (
        private.to_str().unwrap().into(),
        public.to_str().unwrap().into(),
    )
}

#[test]
fn keys_generate_writes_a_0600_private_key_and_prints_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = generate(dir.path());
    let key = PrivateKey::read_file(&private).unwrap();
    assert_eq!(PublicKey::read_file(&public).unwrap(), *key.public_key());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let again = run(&["keys", "generate", "--out", dir.path().to_str().unwrap()]);
    assert_one_line_error(&again, "--out");
    assert!(stderr(&again).contains("refusing to overwrite"));
    assert_eq!(
        PrivateKey::read_file(&private).unwrap().fingerprint(),
        key.fingerprint()
    );

    let kept = run(&[
        "keys",
        "generate",
        "--out",
        dir.path().to_str().unwrap(),
        "--if-missing",
    ]);
    assert!(kept.status.success(), "{}", stderr(&kept));
    assert!(stdout(&kept).contains(&key.fingerprint().to_string()));
    assert_eq!(
        PrivateKey::read_file(&private).unwrap().fingerprint(),
        key.fingerprint()
    );

    let fp = run(&["keys", "fingerprint", &public]);
    assert_eq!(stdout(&fp).trim(), key.fingerprint().to_string());
    let fp = run(&["keys", "fingerprint", &private]);
    assert_eq!(stdout(&fp).trim(), key.fingerprint().to_string());
}

#[test]
fn token_verifies_with_the_cli_and_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = generate(dir.path());
    for backend in ["aws-lc-rs", "rust-crypto"] {
        let out = run(&[
            "token",
            "--key",
            &private,
            "--channel-arn",
            common::CHANNEL,
            "--ttl",
            "120",
            "--viewer-id",
            "v-1",
            "--viewer-session-version",
            "3",
            "--origin",
            "https://Example.com/",
            "--origin",
            "https://*.example.org",
            "--strict-origin",
            "--max-resolution",
            "HD",
            "--single-use",
            "--backend",
            backend,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let token = stdout(&out).trim().to_owned();
        let verified = Verifier::new([&PublicKey::read_file(&public).unwrap()])
            .verify(&token)
            .unwrap();
        let claims = verified.claims();
        assert_eq!(
            claims.allowed_origins().unwrap().to_string(),
            "https://example.com,https://*.example.org"
        );
        assert!(claims.strict_origin_enforcement());
        assert!(claims.single_use_uuid().is_some());
        assert_eq!(claims.viewer_session_version().unwrap().get(), 3);

        let ok = run(&[
            "verify",
            "--public-key",
            &public,
            "--channel-arn",
            common::CHANNEL,
            &token,
        ]);
        assert!(ok.status.success(), "{}", stderr(&ok));
        assert!(stdout(&ok).starts_with("valid: signed by"));
        let url = format!("https://x.live-video.net/api/video/v1/c.m3u8?token={token}");
        assert!(
            run(&["verify", "--public-key", &public, &url])
                .status
                .success()
        );
    }
}

#[test]
fn token_json_gives_token_expiry_and_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = generate(dir.path());
    let out = run(&[
        "token",
        "--key",
        &private,
        "--channel-arn",
        common::CHANNEL,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["token"].as_str().unwrap().split('.').count(), 3);
    assert_eq!(json["expires_at"], json["claims"]["exp"]);
    assert_eq!(
        json["fingerprint"].as_str().unwrap(),
        PrivateKey::read_file(&private)
            .unwrap()
            .fingerprint()
            .to_string()
    );
}

#[test]
fn verify_explains_a_failure_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = generate(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_public) = generate(other.path());
    let token = stdout(&run(&[
        "token",
        "--key",
        &private,
        "--channel-arn",
        common::CHANNEL,
    ]));
    let out = run(&["verify", "--public-key", &other_public, token.trim()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not verify with"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "verify",
        "--json",
        "--public-key",
        &other_public,
        token.trim(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["code"], "unknown_key");
    let out = run(&["verify", "--public-key", &other_public, "not-a-token"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("3 segments"));
}

#[test]
fn every_bad_argument_gets_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = generate(dir.path());
    let long_id = "x".repeat(41);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                "arn:aws:ivs:us-west-2:1:stream-key/x",
            ],
            "--channel-arn",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--ttl",
                "abc",
            ],
            "--ttl",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--ttl",
                "0",
            ],
            "--ttl",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--viewer-id",
                "v",
                "--ttl",
                "900",
            ],
            "--ttl",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--viewer-id",
                &long_id,
            ],
            "--viewer-id",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--viewer-session-version",
                "2147483648",
            ],
            "--viewer-session-version",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--viewer-session-version",
                "1",
            ],
            "--viewer-session-version",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--max-resolution",
                "4K",
            ],
            "--max-resolution",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--origin",
                "https://a.com/path",
            ],
            "--origin",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--origin",
                "*",
                "--origin",
                "https://a.com",
            ],
            "--origin",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--strict-origin",
            ],
            "--strict-origin",
        ),
        (
            vec![
                "token",
                "--key",
                &private,
                "--channel-arn",
                common::CHANNEL,
                "--backend",
                "openssl",
            ],
            "--backend",
        ),
        (
            vec![
                "token",
                "--key",
                "/nonexistent/key.pem",
                "--channel-arn",
                common::CHANNEL,
            ],
            "--key",
        ),
        (
            vec!["token", "--key", &public, "--channel-arn", common::CHANNEL],
            "--key",
        ),
        (vec!["token", "--channel-arn", common::CHANNEL], "--key"),
        (
            vec!["verify", "--public-key", "/nonexistent.pem", "a.b.c"],
            "--public-key",
        ),
        (
            vec![
                "keys",
                "generate",
                "--out",
                dir.path().to_str().unwrap(),
                "--name",
                "../escape",
            ],
            "--name",
        ),
        (vec!["keys", "fingerprint", "/nonexistent.pem"], "FILE"),
        (vec!["token", "--bogus"], "--bogus"),
    ];
    for (args, names) in cases {
        let out = run(&args);
        assert_one_line_error(&out, names);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn key_files_of_other_kinds_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = dir.path().join("rsa.pem");
    std::fs::write(
        &rsa,
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = run(&[
        "token",
        "--key",
        rsa.to_str().unwrap(),
        "--channel-arn",
        common::CHANNEL,
    ]);
    assert_one_line_error(&out, "--key");
    assert!(stderr(&out).contains("P-384"));
}

/// The key corpus (tests/data/keys, made by `openssl`): (file, public?,
/// fingerprint or the words of the refusal).
fn key_corpus() -> Vec<(std::path::PathBuf, bool, Result<String, String>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keys");
    std::fs::read_to_string(dir.join("MANIFEST"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let expect = match c[3].strip_prefix("refused:") {
                Some(words) => Err(words.to_owned()),
                None => Ok(c[3].to_owned()),
            };
            (dir.join(c[0]), c[1] == "public", expect)
        })
        .collect()
}

#[test]
fn every_command_that_takes_a_key_reads_every_layout_openssl_reads() {
    let corpus = key_corpus();
    let (private, _, sec1) = corpus
        .iter()
        .find(|(p, _, _)| p.ends_with("sec1.pem"))
        .unwrap();
    let mut checked = 0;
    for (path, public, expect) in &corpus {
        let file = path.to_str().unwrap();
        match expect {
            Ok(fingerprint) => {
                let out = run(&["keys", "fingerprint", file]);
                assert!(out.status.success(), "{file}: {}", stderr(&out));
                assert_eq!(stdout(&out).trim(), fingerprint, "{file}");
                // The token signed with sec1.pem verifies with every layout of
                // its public half (one file of the corpus is another key).
                if expect != sec1 {
                    continue;
                }
                let token = run(&[
                    "token",
                    "--key",
                    private.to_str().unwrap(),
                    "--channel-arn",
                    common::CHANNEL,
                ]);
                let out = run(&["verify", "--public-key", file, stdout(&token).trim()]);
                assert!(out.status.success(), "{file}: {}", stderr(&out));
                checked += 1;
            }
            Err(words) => {
                let out = run(&["keys", "fingerprint", file]);
                assert_one_line_error(&out, words);
                let out = run(&["verify", "--public-key", file, "a.b.c"]);
                assert_one_line_error(&out, "--public-key");
                assert!(
                    stderr(&out).contains(words.as_str()),
                    "{file}: {}",
                    stderr(&out)
                );
                if !public {
                    let out = run(&["token", "--key", file, "--channel-arn", common::CHANNEL]);
                    assert_one_line_error(&out, "--key");
                    assert!(
                        stderr(&out).contains(words.as_str()),
                        "{file}: {}",
                        stderr(&out)
                    );
                }
            }
        }
    }
    assert!(checked >= 25, "{checked}");
}

#[test]
fn token_signs_with_a_private_key_in_every_layout_openssl_reads() {
    let mut checked = 0;
    for (path, public, expect) in key_corpus() {
        let (Ok(fingerprint), false) = (expect, public) else {
            continue;
        };
        let file = path.to_str().unwrap();
        let out = run(&[
            "token",
            "--key",
            file,
            "--channel-arn",
            common::CHANNEL,
            "--json",
        ]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["fingerprint"], fingerprint.as_str(), "{file}");
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn the_issue_s_one_line_key_signs_a_token() {
    // Issue 12's report, step by step: a key made by `openssl ecparam`,
    // re-wrapped onto one base64 line.
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k.pem");
    let made = Command::new("openssl")
        .args(["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out"])
        .arg(&k)
        .status();
    let Ok(status) = made else {
        eprintln!("openssl is not installed: the corpus tests cover this layout");
        return;
    };
    assert!(status.success());
    let text = std::fs::read_to_string(&k).unwrap();
    let lines: Vec<&str> = text.trim().lines().collect();
    let one = dir.path().join("one.pem");
    std::fs::write(
        &one,
        format!(
            "{}\n{}\n{}\n",
            lines[0],
            lines[1..lines.len() - 1].concat(),
            lines[lines.len() - 1]
        ),
    )
    .unwrap();
    let out = run(&[
        "token",
        "--key",
        one.to_str().unwrap(),
        "--channel-arn",
        common::CHANNEL,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = PrivateKey::read_file(&k).unwrap();
    Verifier::new([key.public_key()])
        .verify(stdout(&out).trim())
        .unwrap();
}

#[test]
fn verify_reads_urls_as_browsers_show_them_and_notes_what_ivs_does_not_promise() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = generate(dir.path());
    let token = run(&["token", "--key", &private, "--channel-arn", common::CHANNEL]);
    let token = stdout(&token).trim().to_owned();
    // Issue 12: the fragment was read into the token.
    let url = format!("https://x.live-video.net/api/video/v1/a.m3u8?token={token}#t=10");
    let out = run(&["verify", "--public-key", &public, &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("note:"), "{}", stdout(&out));
    let twice = format!("https://x/a.m3u8?token={token}&token={token}");
    assert_one_line_error(
        &run(&["verify", "--public-key", &public, &twice]),
        "2 `token`",
    );
    // PyJWT-style: fractional exp and a kid.
    let key = PrivateKey::read_file(&private).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some("arn:aws:ivs:us-west-2:123456789012:playback-key/abc".into());
    let exp = common::unix_seconds_now() as f64 + 300.5;
    let foreign = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"aws:channel-arn": common::CHANNEL, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_ec_pem(key.to_pkcs8_pem().unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    let out = run(&["verify", "--public-key", &public, &foreign]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("note: `exp` is") && said.contains("`kid`"),
        "{said}"
    );
    let out = run(&["verify", "--json", "--public-key", &public, &foreign]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["notes"].as_array().unwrap().len(), 2, "{json}");
}
