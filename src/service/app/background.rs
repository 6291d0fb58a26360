//! The work beside the listeners, each on its own period: the channel
//! cache's refresh, metrics upkeep, the key sweep, scheduled rotation, TLS
//! reload, the JWKS refresh and, with replicas, the poll of the coordination
//! table and the heartbeat.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Application;
use crate::ChannelArn;
use crate::service::control::coordination::Coordination;
use crate::service::http;

impl Application {
    /// The work beside the listeners, each on its own period.
    pub(super) fn background(&self) -> Vec<JoinHandle<()>> {
        let rotation = &self.config.rotation;
        let mut tasks = Vec::new();
        let mint = Arc::clone(&self.mint);
        let refresh = Duration::from_secs(self.config.channels.refresh_seconds.max(1));
        tasks.push(every(refresh, false, move || {
            let mint = Arc::clone(&mint);
            async move {
                match mint.channels.refresh().await {
                    Ok(_) => mint.warn_unverifiable(),
                    Err(e) => {
                        tracing::warn!(error = %e, "channel cache refresh failed; serving what is cached");
                    }
                }
            }
        }));
        // The Prometheus recorder buffers histogram samples until upkeep
        // drains them into buckets; without it memory grows with traffic.
        let state = self.state.clone();
        tasks.push(every(Duration::from_secs(5), true, move || {
            if let Some(handle) = http::metrics_handle() {
                handle.run_upkeep();
            }
            state.housekeeping();
            async {}
        }));
        // Retired keys are deleted once their tokens have expired.
        let rotator = self.rotator.clone();
        let sweep = Duration::from_secs(rotation.sweep_seconds.max(1));
        tasks.push(every(sweep, true, move || {
            let rotator = rotator.clone();
            async move {
                if let Err(e) = rotator.sweep().await {
                    tracing::warn!(error = %e, "key sweep failed; retrying at the next one");
                }
            }
        }));
        if let Some(table) = self.rotator.coordination().cloned() {
            tasks.extend(self.replica_tasks(table));
        }
        if rotation.interval_seconds > 0 {
            let rotator = self.rotator.clone();
            let interval = Duration::from_secs(rotation.interval_seconds);
            tasks.push(every(interval, false, move || {
                let rotator = rotator.clone();
                async move {
                    match rotator.rotate().await {
                        Ok(r) => tracing::info!(active = %r.active, took_ms = r.took_ms, "scheduled rotation done"),
                        Err(e) => tracing::error!(error = %e, "scheduled rotation failed; the current key keeps signing"),
                    }
                }
            }));
        }
        if let Some(tls) = self.tls.clone() {
            let every_check = Duration::from_secs(self.config.server.tls_reload_seconds);
            tasks.push(every(every_check, false, move || {
                tls.reload_if_changed();
                async {}
            }));
        }
        if let Some(auth) = self.mint.viewers.clone() {
            tasks.push(every(auth.refresh_every(), false, move || {
                let auth = Arc::clone(&auth);
                async move { auth.refresh().await }
            }));
        }
        tasks
    }

    /// With replicas: the poll of the coordination table (a newer state's
    /// key set swapped in; the shared deny-list merged when its version
    /// moved) and the heartbeat. A failure is logged and retried at the next
    /// period; the keys held keep signing, and readiness says when the
    /// stores have been out of reach for too long.
    fn replica_tasks(&self, table: Coordination) -> Vec<JoinHandle<()>> {
        let replicas = &self.config.coordination;
        let rotator = self.rotator.clone();
        let mint = Arc::clone(&self.mint);
        let seen = Arc::new(AtomicU64::new(0));
        let poll = every(
            Duration::from_secs(replicas.poll_seconds),
            true,
            move || {
                let (rotator, mint, table, seen) = (
                    rotator.clone(),
                    Arc::clone(&mint),
                    table.clone(),
                    Arc::clone(&seen),
                );
                async move {
                    let head = match rotator.poll().await {
                        Ok(Some(head)) => head,
                        Ok(None) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "coordination poll failed; signing goes on with the keys held");
                            return;
                        }
                    };
                    if head.deny_version == seen.load(Ordering::Relaxed) {
                        return;
                    }
                    match table.denials().await {
                        Ok(denials) => {
                            for (channel, viewer, until) in denials {
                                match ChannelArn::parse(&channel) {
                                    Ok(arn) => mint.revocations.deny(&arn, &viewer, until),
                                    Err(e) => {
                                        tracing::warn!(channel = %channel, error = %e, "a shared denial names no channel ARN; skipped")
                                    }
                                }
                            }
                            seen.store(head.deny_version, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the shared deny-list could not be read; retrying at the next poll")
                        }
                    }
                }
            },
        );
        let rotator = self.rotator.clone();
        let beat = every(
            Duration::from_secs(replicas.heartbeat_seconds),
            true,
            move || {
                let rotator = rotator.clone();
                async move { rotator.heartbeat().await }
            },
        );
        vec![poll, beat]
    }
}

/// Runs `work` every `period` (at once too when `now`); a run that takes
/// longer than the period delays the next instead of piling up.
fn every<F, Fut>(period: Duration, now: bool, mut work: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if !now {
            tick.tick().await;
        }
        loop {
            tick.tick().await;
            work().await;
        }
    })
}
