//! A real moto_server on a loopback port: `.ci/run` installs moto and sets
//! `MOTO_SERVER` to `tests/moto/moto_server.py` (its `moto_server`, one
//! request at a time); without it a test says so and passes only when
//! `CI_REQUIRE_MOTO` is unset.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};

pub struct Moto {
    pub child: tokio::process::Child,
    pub url: String,
}

/// Starts moto_server, or `None` (and why) when it is not installed.
pub async fn moto() -> Option<Moto> {
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Werkzeug prints "Running on http://127.0.0.1:PORT" on stderr.
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
    if let Some(stdout) = child.stdout.take() {
        let mut out = BufReader::new(stdout).lines();
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    }
    Some(Moto { child, url })
}

impl Moto {
    /// Stops the process where it is (SIGSTOP): its port still accepts
    /// connections, which then get no answer, as a store that hangs.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets it run again (SIGCONT), with everything it held.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
}
