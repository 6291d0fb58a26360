//! A connection's bytes as hyper sees them, with two guards hyper lacks: a
//! deadline on writes that make no progress (a client that sends requests
//! but never reads the answers would otherwise hold its connection, and its
//! slot, for ever: hyper's header deadline does not run while an answer
//! waits to be written), and the JSON error format for the few answers
//! hyper writes by itself (a request it cannot parse is answered 400, 414
//! or 431 with an empty body before any service sees it).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The most a request's head may take (request line and headers), and the
/// most hyper buffers per connection, read or write: hyper's default (about
/// 400 KB) let every connection hold that much, and let a client that
/// pipelines without reading pile up as many answers.
pub(crate) const MAX_BUFFER_BYTES: usize = 64 * 1024;

/// A stream (TCP, or TLS over TCP) under a write deadline, whose hyper
/// parse-error answers are rewritten as JSON.
pub(crate) struct Guarded<S> {
    inner: S,
    write_timeout: Duration,
    /// The write deadline's timer, made once and reset at each stall.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether a write is held back and the timer runs for it.
    stalled: bool,
    /// Our answer in place of one of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
    /// Whether the deadline has passed (counted once; every later write
    /// fails at once).
    timed_out: bool,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, write_timeout: Duration) -> Self {
        Self {
            inner,
            write_timeout,
            timer: None,
            stalled: false,
            replacement: None,
            timed_out: false,
        }
    }

    fn progressed(&mut self) {
        self.stalled = false;
    }

    /// The inner stream held a write back: start the deadline (if this is
    /// the first held-back write since the last progress), and end the
    /// connection when it has passed.
    fn held_back<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.stalled {
            self.stalled = true;
            let deadline = Instant::now() + self.write_timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let expired = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if !expired {
            return Poll::Pending;
        }
        if !self.timed_out {
            self.timed_out = true;
            metrics::counter!("connections_write_timeout_total").increment(1);
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took none of its answer within the write deadline (server.write_timeout_ms)",
        )))
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// Writes what is left of a replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some((bytes, written)) = &mut self.replacement else {
                return Poll::Ready(Ok(()));
            };
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *written += n;
                    if *written >= bytes.len() {
                        self.replacement = None;
                    }
                    self.progressed();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.held_back(cx),
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(Err(e)) = this.poll_replacement(cx) {
            return Poll::Ready(Err(e));
        }
        if this.replacement.is_some() {
            // Still writing the replacement: hyper closes after its error
            // answer, so whatever follows waits (and the deadline runs).
            return Poll::Pending;
        }
        if let Some(answer) = json_for_hyper_answer(buf) {
            this.replacement = Some((answer, 0));
            // hyper's bytes are taken (they are replaced); ours are written
            // now and by the flush hyper does next.
            return match this.poll_replacement(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(buf.len())),
            };
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.held_back(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => this.held_back(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.held_back(cx),
        }
    }

    /// No vectored writes: hyper then flattens each flush into one buffer,
    /// which is what lets [`json_for_hyper_answer`] see an answer's head
    /// whole, and its write buffer is capped by `max_buf_size` alone.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Our answer in place of hyper's own answer to a request it could not
/// parse, when `written` is one: exactly a head, status 400, 414 or 431,
/// `content-length: 0` and no content type (every answer of ours has one).
///
/// What this cannot reach: an error answer hyper flushes together with
/// earlier pipelined answers (the head is then not at the start of the
/// write) keeps hyper's empty body; the status is right either way.
fn json_for_hyper_answer(written: &[u8]) -> Option<Vec<u8>> {
    // Every write of every answer passes here: look at the status first.
    if !matches!(
        written.get(..12)?,
        b"HTTP/1.1 400" | b"HTTP/1.1 414" | b"HTTP/1.1 431"
    ) {
        return None;
    }
    let head = std::str::from_utf8(written).ok()?;
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let (code, message) = match status {
        "400" => (
            "bad_request",
            "the request is not valid HTTP/1.1: its request line or a header is malformed",
        ),
        "414" => ("uri_too_long", "the request target is too long"),
        "431" => (
            "headers_too_large",
            "the request's headers are too large: at most 64 KiB and 100 headers",
        ),
        _ => return None,
    };
    let end = head.find("\r\n\r\n")?;
    if end + 4 != head.len() {
        return None;
    }
    let lower = head.to_ascii_lowercase();
    if !lower.contains("\r\ncontent-length: 0\r\n") || lower.contains("\r\ncontent-type:") {
        return None;
    }
    let status_line = head.split("\r\n").next()?;
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    Some(
        format!(
            "{status_line}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_takes_ends_at_the_deadline() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut guarded = Guarded::new(server, Duration::from_secs(5));
        let started = Instant::now();
        let e = guarded.write_all(&[b'x'; 64 * 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
            "{waited:?}"
        );
        // The bytes the buffer took were written: the deadline is on the
        // lack of progress, not on the answer as a whole.
        let mut taken = vec![0u8; 1024];
        client.read_exact(&mut taken).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_not_cut() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut guarded = Guarded::new(server, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 1024];
            let mut total = 0;
            while total < 16 * 1024 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                total += client.read(&mut chunk).await.unwrap();
            }
            total
        });
        guarded.write_all(&[b'x'; 16 * 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 16 * 1024);
    }

    #[test]
    fn hypers_own_error_answers_become_json() {
        for (status, code) in [
            ("400 Bad Request", "bad_request"),
            ("414 URI Too Long", "uri_too_long"),
            ("431 Request Header Fields Too Large", "headers_too_large"),
        ] {
            let hyper = format!(
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 09:00:00 GMT\r\n\r\n"
            );
            let ours = json_for_hyper_answer(hyper.as_bytes()).unwrap();
            let text = String::from_utf8(ours).unwrap();
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{text}"
            );
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains("connection: close"));
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"]["code"], code);
        }
    }

    #[test]
    fn answers_of_ours_are_left_alone() {
        for written in [
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
        ] {
            assert!(
                json_for_hyper_answer(written.as_bytes()).is_none(),
                "{written}"
            );
        }
    }
}
