//! The reference `benches/load.sh` measures the token API against: the same
//! HTTP work with none of the service's own: a tokio multi-thread runtime as
//! `serve` builds it, hyper's HTTP/1.1 connection with the settings of the
//! service's listener, an axum router with one `POST /v1/token` route that
//! reads the request body and answers a fixed JSON body of the given size.
//! What a token costs above this is the service's own work (signing
//! included).
//!
//! `cargo run --release --example bare_http -- BODY_BYTES`
//! prints `listening on PORT`, then serves 127.0.0.1:PORT until killed.

// A measuring tool: a failure should stop it loudly.
#![allow(clippy::expect_used, clippy::print_stdout)]

use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

fn main() {
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(800);
    // A JSON object of exactly `size` bytes (at least the 12 of its frame).
    let answer = format!(r#"{{"token":"{}"}}"#, "a".repeat(size.saturating_sub(12)));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(serve(answer));
}

async fn serve(answer: String) {
    let answer: &'static str = answer.leak();
    let router = Router::new().route(
        "/v1/token",
        post(move |body: Body| async move {
            match to_bytes(body, 16 * 1024).await {
                Ok(_) => (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    answer,
                )
                    .into_response(),
                Err(_) => StatusCode::BAD_REQUEST.into_response(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "listening on {}",
        listener.local_addr().expect("addr").port()
    );
    // The token API listener's hyper settings (src/service/server).
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .writev(false)
        .pipeline_flush(false);
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _: Result<(), hyper::Error> = connection.await;
        });
    }
}
