//! How log lines are made and where they go: JSON lines on stderr,
//! written in batches by a thread of their own.
//!
//! Writing each line to stderr as it was made cost a `write` syscall per
//! token (the audit line), about a tenth of a shareable token's CPU. Here a
//! line is copied into a shared buffer under a lock, and a flusher thread
//! writes what gathered in one `write` at most every [`FLUSH_INTERVAL`]
//! (sooner past [`HIGH_WATER`]); a line waits that long at most before it is
//! on stderr.
//!
//! Why not tracing-appender's `non_blocking`: it sends each line through a
//! channel as a `Vec` of its own and its worker writes them one by one; even
//! lossless (`lossy(false)`) over a `BufWriter` that batches the writes, it
//! measured 40.3 µs of service CPU a shared token against 33.5 µs with this
//! writer, and 190 against 181 µs a viewer token (3 alternating rounds under
//! wrk, one binary, CHANGELOG "Measured"): a fifth of a shared token's cost.
//!
//! Nothing is dropped to keep up: past [`CAPACITY`] bytes waiting (stderr is
//! stalled: a pipe nobody reads), a logging thread waits for room, as it
//! waited for stderr before. The only lines lost are those of a write to
//! stderr that fails (stderr closed); they are counted in
//! `log_lines_dropped_total` on `/metrics`. [`LogGuard`], dropped when a
//! command ends, writes what is left; [`flush`] does it at once (before an
//! abort).
//!
//! The audit lines (one per token) are made by [`JsonLines`]: the same JSON,
//! byte for byte, as tracing-subscriber's JSON format, written in one piece
//! rather than through its writer adapter (which checks and copies each of
//! the line's ~60 pieces on its own).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::ser::{SerializeMap as _, Serializer as _};
use tracing::{Event, Subscriber};
use tracing_serde::fields::AsMap as _;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// The target of the audit lines.
pub(crate) const AUDIT_TARGET: &str = "audit";

/// tracing-subscriber's JSON format, with the audit lines outside any span
/// made in one piece. Every other line (and an audit line inside a span,
/// which the JSON format gives the span's fields) is made by the JSON
/// format itself.
pub(crate) struct JsonLines {
    json: Format<Json, SystemTime>,
}

impl JsonLines {
    pub(crate) fn new() -> Self {
        Self {
            json: Format::default().json(),
        }
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let in_span =
            event.parent().is_some() || (event.is_contextual() && ctx.lookup_current().is_some());
        if meta.target() != AUDIT_TARGET || in_span {
            return self.json.format_event(ctx, writer, event);
        }
        thread_local! {
            static LINE: RefCell<(String, Vec<u8>)> = const { RefCell::new((String::new(), Vec::new())) };
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            let (timestamp, json) = &mut *line;
            timestamp.clear();
            json.clear();
            // What the JSON format writes, in its order: timestamp, level,
            // fields (tracing-serde's visitor, as it uses), target.
            SystemTime.format_time(&mut Writer::new(timestamp))?;
            let mut serializer = serde_json::Serializer::new(&mut *json);
            let mut map = serializer.serialize_map(None).map_err(|_| fmt::Error)?;
            map.serialize_entry("timestamp", timestamp.as_str())
                .and_then(|()| map.serialize_entry("level", meta.level().as_str()))
                .and_then(|()| map.serialize_entry("fields", &event.field_map()))
                .and_then(|()| map.serialize_entry("target", meta.target()))
                .and_then(|()| map.end())
                .map_err(|_| fmt::Error)?;
            // serde_json writes UTF-8 only.
            writer.write_str(std::str::from_utf8(json).map_err(|_| fmt::Error)?)?;
            writer.write_char('\n')
        })
    }
}

/// Longest a line waits in the buffer.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// Bytes waiting past which the flusher writes without waiting longer.
pub(crate) const HIGH_WATER: usize = 256 * 1024;
/// Bytes waiting past which a logging thread waits for the flusher.
pub(crate) const CAPACITY: usize = 4 * 1024 * 1024;

/// The name of the counter of lines lost to failed writes.
pub(crate) const DROPPED_METRIC: &str = "log_lines_dropped_total";

/// What the logging threads and the flusher share.
struct Shared {
    state: Mutex<State>,
    /// Held while a batch is taken and written, so that batches reach
    /// stderr in the order they were taken.
    writing: Mutex<()>,
    /// The flusher waits here for lines (or the stop).
    filled: Condvar,
    /// Logging threads wait here for room.
    drained: Condvar,
}

#[derive(Default)]
struct State {
    waiting: Vec<u8>,
    stopping: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left whole lines
        // (the buffer is only ever appended to or swapped): go on with them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the lines waiting, then `more`, to stderr from the calling
    /// thread, under the writing lock: no batch of the flusher's is written
    /// meanwhile, so lines neither change order nor mix mid-line.
    fn write_now(&self, more: &[u8]) {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let waiting = std::mem::take(&mut self.lock().waiting);
        self.drained.notify_all();
        let mut stderr = io::stderr();
        write_batch(&mut stderr, &waiting);
        write_batch(&mut stderr, more);
    }

    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        if state.stopping {
            // The flusher is gone or going (the command is ending): this
            // line goes straight to stderr, as every line once did, after
            // the lines still waiting.
            drop(state);
            self.write_now(line);
            return;
        }
        while state.waiting.len() >= CAPACITY && !state.stopping {
            state = self
                .drained
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let before = state.waiting.len();
        state.waiting.extend_from_slice(line);
        let after = state.waiting.len();
        drop(state);
        // One wake-up per batch: when the buffer stops being empty, and
        // when it crosses the high-water mark.
        if before == 0 || (before < HIGH_WATER && after >= HIGH_WATER) {
            self.filled.notify_one();
        }
    }
}

/// The [`tracing_subscriber::fmt::MakeWriter`] of the batched stderr.
#[derive(Clone)]
pub(crate) struct BatchedStderr {
    shared: Arc<Shared>,
}

/// One line's writer (tracing-subscriber writes each event's line whole).
pub(crate) struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

/// Writes what is left when dropped, and stops the flusher.
pub(crate) struct LogGuard {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.filled.notify_one();
        self.shared.drained.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

/// The process's batched stderr, for [`flush`].
static INSTALLED: OnceLock<Arc<Shared>> = OnceLock::new();

/// The batched stderr and its guard; lines go to `sink` (stderr in the
/// service). The first call also makes it the one [`flush`] writes.
pub(crate) fn batched(sink: impl Write + Send + 'static) -> io::Result<(BatchedStderr, LogGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        writing: Mutex::new(()),
        filled: Condvar::new(),
        drained: Condvar::new(),
    });
    let _ = INSTALLED.set(Arc::clone(&shared));
    let flusher = std::thread::Builder::new()
        .name("log-flusher".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || run_flusher(&shared, sink)
        })?;
    Ok((
        BatchedStderr {
            shared: Arc::clone(&shared),
        },
        LogGuard {
            shared,
            flusher: Some(flusher),
        },
    ))
}

/// Writes every line waiting now, from the calling thread (before the
/// process aborts on purpose).
pub(crate) fn flush() {
    if let Some(shared) = INSTALLED.get() {
        shared.write_now(&[]);
    }
}

fn run_flusher(shared: &Shared, mut sink: impl Write) {
    let mut spare = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.waiting.is_empty() && !state.stopping {
            state = shared
                .filled
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        // Let the batch gather, unless it is large already or this is the end.
        let deadline = Instant::now() + FLUSH_INTERVAL;
        while !state.stopping && state.waiting.len() < HIGH_WATER {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            state = shared
                .filled
                .wait_timeout(state, left)
                .map(|(state, _)| state)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        drop(state);
        let writing = shared.writing.lock();
        let mut state = shared.lock();
        let stopping = state.stopping;
        std::mem::swap(&mut state.waiting, &mut spare);
        drop(state);
        shared.drained.notify_all();
        write_batch(&mut sink, &spare);
        drop(writing);
        spare.clear();
        if stopping && shared.lock().waiting.is_empty() {
            return;
        }
    }
}

/// Writes one batch; the lines of a batch that could not be written are
/// counted.
fn write_batch(sink: &mut impl Write, batch: &[u8]) {
    if batch.is_empty() {
        return;
    }
    if sink.write_all(batch).and_then(|()| sink.flush()).is_err() {
        let lines = batch.iter().filter(|b| **b == b'\n').count();
        metrics::counter!(DROPPED_METRIC).increment(lines as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter as _;

    /// A sink that keeps what it is given, or fails every write.
    #[derive(Clone, Default)]
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        broken: bool,
        /// Each write waits here until the sending side is dropped.
        gate: Option<Arc<Mutex<std::sync::mpsc::Receiver<()>>>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.broken {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if let Some(gate) = &self.gate {
                let _ = gate.lock().unwrap().recv();
            }
            *self.writes.lock().unwrap() += 1;
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A MakeWriter into a shared buffer, for the formats' lines.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            Sink {
                written: Arc::clone(&self.0),
                ..Sink::default()
            }
        }
    }

    /// The lines `events` logs through tracing-subscriber's JSON format and
    /// through [`JsonLines`], timestamps cut out (they differ), and the
    /// timestamps.
    fn both_formats(events: impl Fn()) -> [(Vec<String>, Vec<String>); 2] {
        use tracing_subscriber::layer::SubscriberExt as _;
        let theirs = Lines::default();
        let ours = Lines::default();
        let json = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(theirs.clone());
        let lines = tracing_subscriber::fmt::layer()
            .json()
            .event_format(JsonLines::new())
            .with_writer(ours.clone());
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(json).with(lines),
            events,
        );
        [theirs, ours].map(|lines| {
            let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| {
                    let value: serde_json::Value = serde_json::from_str(l).unwrap();
                    let at = value["timestamp"].as_str().unwrap().to_owned();
                    (l.replace(&at, "T"), at)
                })
                .unzip()
        })
    }

    #[test]
    fn audit_lines_are_the_json_formats_lines_byte_for_byte() {
        #[derive(Debug)]
        struct Opaque;
        let error = io::Error::other("a \"quoted\" reason\nover two lines");
        let [(theirs, their_times), (ours, our_times)] = both_formats(|| {
            tracing::info!(
                target: "audit",
                caller = "api_key:bench",
                channel = %"arn:aws:ivs:us-west-2:123456789012:channel/abcd",
                key = %crate::Fingerprint::of_spki_der(b"key"),
                viewer = "",
                single_use = false,
                cached = true,
                exp = 1_796_042_276_u64,
                skew = -5_i64,
                share = 0.25_f64,
                odd = ?Opaque,
                unicode = "é \u{1F600} \u{7}",
                decision = "minted",
            );
            tracing::warn!(target: "audit", error = &error as &dyn std::error::Error, "with a message");
            tracing::info!(target: "audit", action = "key_rotated");
            // Inside a span: the JSON format's own line, with the span.
            let span = tracing::info_span!("request", id = 7);
            span.in_scope(|| tracing::info!(target: "audit", decision = "refused"));
            // Not an audit line.
            tracing::warn!(code = "timeout", "token request failed");
        });
        assert_eq!(ours.len(), 5);
        assert_eq!(ours, theirs);
        assert!(
            ours[3].contains("\"span\":{\"id\":7,\"name\":\"request\"}"),
            "{}",
            ours[3]
        );
        // The timestamps are the JSON format's: RFC 3339, UTC, microseconds.
        for (mine, its) in our_times.iter().zip(&their_times) {
            assert_eq!(mine.len(), its.len(), "{mine} {its}");
            assert_eq!(mine[..16], its[..16], "{mine} {its}");
        }
    }

    fn line(i: usize) -> String {
        format!("{{\"line\":{i}}}\n")
    }

    #[test]
    fn every_line_arrives_in_order_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = batched(sink.clone()).unwrap();
        for i in 0..10_000 {
            writer.make_writer().write_all(line(i).as_bytes()).unwrap();
        }
        drop(guard);
        let expected: String = (0..10_000).map(line).collect();
        assert_eq!(
            String::from_utf8(sink.written.lock().unwrap().clone()).unwrap(),
            expected
        );
        let writes = *sink.writes.lock().unwrap();
        assert!(writes < 100, "{writes} writes for 10,000 lines");
    }

    #[test]
    fn a_line_is_written_within_the_interval_without_more_lines() {
        let sink = Sink::default();
        let (writer, _guard) = batched(sink.clone()).unwrap();
        writer.make_writer().write_all(line(1).as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.written.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(*sink.written.lock().unwrap(), line(1).into_bytes());
    }

    #[test]
    fn a_stalled_stderr_holds_the_writers_at_the_capacity_and_loses_nothing() {
        // A stderr whose writes wait until the test opens the gate.
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let sink = Sink {
            gate: Some(Arc::new(Mutex::new(gate))),
            ..Sink::default()
        };
        let (writer, guard) = batched(sink.clone()).unwrap();
        let waiting = || writer.shared.lock().waiting.len();
        std::thread::scope(|s| {
            // 4 × 200,000 lines of about 9 bytes: nearly twice the capacity.
            for t in 0..4 {
                let writer = writer.clone();
                s.spawn(move || {
                    for i in 0..200_000 {
                        let text = format!("{t}:{i}\n");
                        writer.make_writer().write_all(text.as_bytes()).unwrap();
                    }
                });
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while waiting() < CAPACITY {
                assert!(Instant::now() < deadline, "the buffer never filled");
                std::thread::sleep(Duration::from_millis(5));
            }
            // Full, and held there: the writers wait for room.
            let held = waiting();
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(waiting(), held);
            assert!(held < CAPACITY + 16, "{held}");
            drop(open);
        });
        drop(guard);
        let written = String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 800_000);
        for t in 0..4 {
            // Each thread's lines, in its order.
            let own: Vec<usize> = written
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t}:")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(own, (0..200_000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn lines_a_failed_write_loses_are_counted() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let batch: String = (0..3).map(line).collect();
            let mut broken = Sink {
                broken: true,
                ..Sink::default()
            };
            write_batch(&mut broken, batch.as_bytes());
            write_batch(&mut Sink::default(), batch.as_bytes());
        });
        let text = handle.render();
        assert!(
            text.lines().any(|l| l == format!("{DROPPED_METRIC} 3")),
            "{text}"
        );
    }
}
