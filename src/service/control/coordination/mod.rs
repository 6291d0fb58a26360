//! The replicas' coordination in one DynamoDB table (`coordination.table`):
//! what several replicas of the service must agree on, and nothing else.
//!
//! The table has a string partition key `pk` and a string sort key `sk`, is
//! billed per request, and has DynamoDB's TTL on `purge_at` (Unix seconds):
//!
//! | `pk` | `sk` | what | written |
//! |---|---|---|---|
//! | `rotation` | `state` | the rotation state (`version`, `state_json`) | by the lease holder only, over the version it read ([`lease`]) |
//! | `rotation` | `lease` | who rotates (`holder`, `expires_at` in ms) | taken when free or expired, renewed with every state save |
//! | `rotation` | `deny-version` | a counter bumped by every viewer revocation | `ADD` |
//! | `replica` | replica id | the heartbeat: the key it signs with, the latest `exp` it signed per key | every `heartbeat_seconds` |
//! | `deny` | `CHANNEL_ARN\|VIEWER_ID` | a revoked viewer, `until` (Unix s) | only ever extended |
//! | `idempotency` | the `Idempotency-Key` | a rotation request's answer, or who is running it | claimed once, then done |
//!
//! DynamoDB deletes items past their `purge_at` only eventually (hours to
//! days later), so every read here ignores what has expired by its own
//! clock. A replica's poll reads three small items (the state's version,
//! the lease, the deny counter) in one `BatchGetItem`, and reads more only
//! when one of them changed.

mod lease;
mod records;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};

pub(crate) use self::lease::{Head, Lease};
pub(crate) use self::records::{Claim, Heartbeat};

/// The partition key's name.
const PK: &str = "pk";
/// The sort key's name.
const SK: &str = "sk";
/// The attribute DynamoDB's TTL deletes items by (Unix seconds).
pub(crate) const PURGE_AT: &str = "purge_at";

/// A coordination failure; the message names the table and the call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CoordinationError {
    /// DynamoDB refused or could not be reached.
    #[error("coordination table {table}: {call}: {message}")]
    Unavailable {
        /// The table.
        table: String,
        /// The DynamoDB call.
        call: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The state was saved by someone else meanwhile.
    #[error("the rotation state changed meanwhile (version {stored} is newer than {ours})")]
    Conflict {
        /// The stored version.
        stored: u64,
        /// The version this save was based on.
        ours: u64,
    },
    /// The save needs the rotation lease, which another replica holds now.
    #[error("{0}")]
    LeaseLost(String),
    /// An item does not have the shape this service writes.
    #[error("coordination table {table}: {message}")]
    Corrupt {
        /// The table.
        table: String,
        /// What is wrong with which item.
        message: String,
    },
}

/// The coordination table, as this replica uses it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Coordination {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_dynamodb::Client,
    table: String,
    replica: String,
    lease: Duration,
}

impl std::fmt::Debug for Coordination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordination")
            .field("table", &self.inner.table)
            .field("replica", &self.inner.replica)
            .finish_non_exhaustive()
    }
}

/// What `create-table` did.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TableReport {
    /// The table.
    pub(crate) table: String,
    /// Whether it was created now (else it existed with the right keys).
    pub(crate) created: bool,
    /// The attribute DynamoDB's TTL deletes items by.
    pub(crate) ttl_attribute: &'static str,
}

impl Coordination {
    /// The table `table` through `client`, as replica `replica`, with
    /// rotation leases of `lease`.
    pub(crate) fn new(
        client: aws_sdk_dynamodb::Client,
        table: &str,
        replica: &str,
        lease: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                table: table.to_owned(),
                replica: replica.to_owned(),
                lease,
            }),
        }
    }

    /// The table's name.
    pub(crate) fn table(&self) -> &str {
        &self.inner.table
    }

    /// This replica's id (in heartbeats, the lease, idempotency records).
    pub(crate) fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// How long a rotation lease lasts without renewal.
    pub(crate) fn lease_duration(&self) -> Duration {
        self.inner.lease
    }

    fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.inner.client
    }

    fn unavailable<E, R>(&self, call: &'static str, e: &SdkError<E, R>) -> CoordinationError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let mut message = DisplayErrorContext(e).to_string();
        if e.code() == Some("ResourceNotFoundException") {
            message.push_str(
                " (create the table with `ivs-playback-auth coordination create-table --config FILE`)",
            );
        }
        CoordinationError::Unavailable {
            table: self.inner.table.clone(),
            call,
            message,
        }
    }

    fn corrupt(&self, message: String) -> CoordinationError {
        CoordinationError::Corrupt {
            table: self.inner.table.clone(),
            message,
        }
    }

    /// Creates the table with its schema and turns DynamoDB's TTL on for
    /// `purge_at`; a table that exists is checked to have the right keys
    /// (and gets its TTL turned on if it is off). Waits until it is active.
    pub(crate) async fn create_table(&self) -> Result<TableReport, CoordinationError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let (Ok(pk_attr), Ok(sk_attr), Ok(pk_key), Ok(sk_key)) = (
            attribute(PK),
            attribute(SK),
            key(PK, KeyType::Hash),
            key(SK, KeyType::Range),
        ) else {
            return Err(self.corrupt("the table's schema could not be built".into()));
        };
        let created = match self
            .client()
            .create_table()
            .table_name(&self.inner.table)
            .attribute_definitions(pk_attr)
            .attribute_definitions(sk_attr)
            .key_schema(pk_key)
            .key_schema(sk_key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) if e.code() == Some("ResourceInUseException") => false,
            Err(e) => return Err(self.unavailable("CreateTable", &e)),
        };
        self.wait_active().await?;
        self.enable_ttl().await?;
        Ok(TableReport {
            table: self.inner.table.clone(),
            created,
            ttl_attribute: PURGE_AT,
        })
    }

    /// Waits (up to two minutes) for the table to be active, and checks
    /// its keys.
    async fn wait_active(&self) -> Result<(), CoordinationError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let described = self
                .client()
                .describe_table()
                .table_name(&self.inner.table)
                .send()
                .await
                .map_err(|e| self.unavailable("DescribeTable", &e))?;
            let table = described
                .table()
                .ok_or_else(|| self.corrupt("DescribeTable answered no table".into()))?;
            let keys: Vec<(String, KeyType)> = table
                .key_schema()
                .iter()
                .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
                .collect();
            let wanted = vec![
                (PK.to_owned(), KeyType::Hash),
                (SK.to_owned(), KeyType::Range),
            ];
            if keys != wanted {
                return Err(self.corrupt(format!(
                    "the table exists with the keys {keys:?}; this service needs a string partition key `{PK}` and a string sort key `{SK}`: name another coordination.table"
                )));
            }
            if table.table_status() == Some(&TableStatus::Active) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(self.corrupt(format!(
                    "the table is still {:?} after two minutes",
                    table.table_status()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn enable_ttl(&self) -> Result<(), CoordinationError> {
        let described = self
            .client()
            .describe_time_to_live()
            .table_name(&self.inner.table)
            .send()
            .await
            .map_err(|e| self.unavailable("DescribeTimeToLive", &e))?;
        if let Some(ttl) = described.time_to_live_description() {
            let on = matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            match ttl.attribute_name() {
                Some(PURGE_AT) if on => return Ok(()),
                Some(other) if on => {
                    return Err(self.corrupt(format!(
                        "DynamoDB's TTL is on for the attribute `{other}`; this service expires items by `{PURGE_AT}`"
                    )));
                }
                _ => {}
            }
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(PURGE_AT)
            .build()
            .map_err(|e| self.corrupt(e.to_string()))?;
        self.client()
            .update_time_to_live()
            .table_name(&self.inner.table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| self.unavailable("UpdateTimeToLive", &e))?;
        Ok(())
    }
}

impl Coordination {
    /// Deletes an item of this replica's (`:me` in `condition`) if the
    /// condition still holds. A failure is only logged: `what` expires by
    /// itself.
    async fn delete_own(&self, item: Item, condition: &str, names: &[(&str, &str)], what: &str) {
        let mut delete = self
            .client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(item))
            .condition_expression(condition)
            .expression_attribute_values(":me", s(self.replica()));
        for (name, attribute) in names {
            delete = delete.expression_attribute_names(*name, *attribute);
        }
        if let Err(e) = delete.send().await
            && e.code() != Some("ConditionalCheckFailedException")
        {
            tracing::warn!(error = %DisplayErrorContext(&e), "could not delete {what}; it expires by itself");
        }
    }
}

/// A replica's id: the host name (a Kubernetes pod's name) and a random
/// suffix, so that a replica restarted on the same host is a new one.
pub(crate) fn replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 64)
        .unwrap_or_else(|| "replica".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

/// How fresh this replica's view of the shared stores is: when its last
/// poll and its last heartbeat succeeded. Readiness turns false once either
/// is older than `coordination.stale_after_seconds`; signing goes on.
#[derive(Debug, Default)]
pub(crate) struct Freshness {
    polled: AtomicU64,
    beat: AtomicU64,
}

impl Freshness {
    /// A poll succeeded at `now` (Unix seconds).
    pub(crate) fn polled(&self, now: u64) {
        self.polled.store(now, Ordering::Relaxed);
    }

    /// A heartbeat was written at `now` (Unix seconds).
    pub(crate) fn beat(&self, now: u64) {
        self.beat.store(now, Ordering::Relaxed);
    }

    /// Seconds since the older of the two, at `now`.
    pub(crate) fn age(&self, now: u64) -> u64 {
        let oldest = self
            .polled
            .load(Ordering::Relaxed)
            .min(self.beat.load(Ordering::Relaxed));
        now.saturating_sub(oldest)
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

fn s(value: impl Into<String>) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::S(value.into())
}

fn n(value: u64) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::N(value.to_string())
}

/// A string attribute of an item.
fn text<'i>(item: &'i Item, name: &str) -> Option<&'i str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// A whole-number attribute of an item.
fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// The key of an item.
fn key(pk: &str, sk: &str) -> Item {
    Item::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::service::control::aws::{self, moto};

    async fn replicas(moto: &moto::Moto, lease: Duration) -> (Coordination, Coordination) {
        let client = aws::dynamodb(&moto.sdk().await, Some(&moto.url));
        let a = Coordination::new(client.clone(), "coordination", "replica-a", lease);
        let b = Coordination::new(client, "coordination", "replica-b", lease);
        (a, b)
    }

    #[tokio::test]
    async fn the_table_is_created_once_with_its_keys_and_ttl_and_a_wrong_one_is_refused() {
        let Some(moto) = moto::start().await else {
            return;
        };
        let (a, _) = replicas(&moto, Duration::from_secs(5)).await;
        let made = a.create_table().await.unwrap();
        assert!(made.created);
        assert!(!a.create_table().await.unwrap().created);
        let ttl = a
            .client()
            .describe_time_to_live()
            .table_name("coordination")
            .send()
            .await
            .unwrap();
        let ttl = ttl.time_to_live_description().unwrap();
        assert_eq!(ttl.attribute_name(), Some(PURGE_AT));
        assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

        let client = aws::dynamodb(&moto.sdk().await, Some(&moto.url));
        client
            .create_table()
            .table_name("other")
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        let other = Coordination::new(client, "other", "r", Duration::from_secs(5));
        let e = other.create_table().await.unwrap_err().to_string();
        assert!(
            e.contains("`pk`") && e.contains("another coordination.table"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn only_the_lease_holder_saves_only_over_the_version_it_read_and_an_expired_lease_is_taken_over()
     {
        let Some(moto) = moto::start().await else {
            return;
        };
        let (a, b) = replicas(&moto, Duration::from_millis(1500)).await;
        a.create_table().await.unwrap();
        assert_eq!(a.load_state().await.unwrap(), None);
        assert_eq!(a.head().await.unwrap(), Head::default());
        // Nobody holds the lease: no save.
        assert!(matches!(
            a.save_state(1, "{}").await,
            Err(CoordinationError::LeaseLost(_))
        ));
        assert_eq!(
            a.try_lease().await.unwrap(),
            Lease::Acquired { took_over: None }
        );
        assert!(
            matches!(b.try_lease().await.unwrap(), Lease::Held { holder, .. } if holder == "replica-a")
        );
        assert!(matches!(
            b.save_state(1, "{\"by\":\"b\"}").await,
            Err(CoordinationError::LeaseLost(m)) if m.contains("replica-a")
        ));
        a.save_state(1, "{\"v\":1}").await.unwrap();
        a.save_state(2, "{\"v\":2}").await.unwrap();
        // A save based on version 1 again: refused, the stored one stands.
        assert!(matches!(
            a.save_state(2, "{\"v\":\"stale\"}").await,
            Err(CoordinationError::Conflict { stored: 2, ours: 1 })
        ));
        assert_eq!(a.load_state().await.unwrap().as_deref(), Some("{\"v\":2}"));
        let head = a.head().await.unwrap();
        assert_eq!(head.state_version, 2);
        assert!(!head.lease_free(now_ms()));
        // A stops renewing; once its lease expired, B takes it over and A's
        // saves are refused.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !a.head().await.unwrap().lease_free(now_ms()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the lease never expired"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            b.try_lease().await.unwrap(),
            Lease::Acquired {
                took_over: Some("replica-a".into())
            }
        );
        assert!(matches!(
            a.save_state(3, "{}").await,
            Err(CoordinationError::LeaseLost(m)) if m.contains("replica-b")
        ));
        b.save_state(3, "{\"v\":3}").await.unwrap();
        b.release_lease().await;
        assert!(a.head().await.unwrap().lease_free(now_ms()));
        // Releasing a lease one does not hold changes nothing.
        assert_eq!(
            a.try_lease().await.unwrap(),
            Lease::Acquired { took_over: None }
        );
        b.release_lease().await;
        assert!(!a.head().await.unwrap().lease_free(now_ms()));
    }

    /// The lease's one guarantee, asked for by two replicas at the same
    /// moment, many times. It holds only if the store's conditional write is
    /// atomic, as DynamoDB's is; stock moto_server's is not (two of them can
    /// both succeed), which is why the tests run it one request at a time
    /// (tests/moto/moto_server.py).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_two_replicas_asking_at_once_exactly_one_gets_the_lease() {
        let Some(moto) = moto::start().await else {
            return;
        };
        let (a, b) = replicas(&moto, Duration::from_secs(30)).await;
        a.create_table().await.unwrap();
        for round in 0..100 {
            let (x, y) = tokio::join!(
                tokio::spawn({
                    let a = a.clone();
                    async move { a.try_lease().await }
                }),
                tokio::spawn({
                    let b = b.clone();
                    async move { b.try_lease().await }
                }),
            );
            let (x, y) = (x.unwrap().unwrap(), y.unwrap().unwrap());
            let acquired = [&x, &y]
                .iter()
                .filter(|l| matches!(l, Lease::Acquired { .. }))
                .count();
            assert_eq!(acquired, 1, "round {round}: {x:?} {y:?}");
            a.release_lease().await;
            b.release_lease().await;
            assert!(a.head().await.unwrap().lease_free(now_ms()));
        }
    }

    #[tokio::test]
    async fn heartbeats_denials_and_idempotency_records_are_shared_and_expire_on_read() {
        let Some(moto) = moto::start().await else {
            return;
        };
        let (a, b) = replicas(&moto, Duration::from_secs(2)).await;
        a.create_table().await.unwrap();

        let signed = BTreeMap::from([("aa".to_owned(), 100), ("bb".to_owned(), 200)]);
        a.beat(
            "bb",
            &signed,
            Duration::from_secs(60),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
        b.beat(
            "bb",
            &BTreeMap::new(),
            Duration::from_secs(60),
            Duration::from_secs(0),
        )
        .await
        .unwrap();
        let beats = b.heartbeats().await.unwrap();
        // B's was kept for 0 s past its expiry: read as alive still (it
        // expires in 60 s); A's says what it signed.
        assert_eq!(beats.len(), 2);
        let of_a = beats.iter().find(|h| h.replica == "replica-a").unwrap();
        assert_eq!((of_a.active.as_str(), &of_a.signed), ("bb", &signed));
        b.beat(
            "bb",
            &BTreeMap::new(),
            Duration::from_secs(0),
            Duration::from_secs(0),
        )
        .await
        .unwrap();
        // Past its purge time: ignored, though DynamoDB has not deleted it.
        assert_eq!(b.heartbeats().await.unwrap().len(), 1);

        let arn = "arn:aws:ivs:us-west-2:123456789012:channel/abcd";
        let now = now_ms() / 1000;
        assert_eq!(a.head().await.unwrap().deny_version, 0);
        a.deny(arn, "viewer|with|bars", now + 100).await.unwrap();
        b.deny(arn, "viewer|with|bars", now + 50).await.unwrap();
        a.deny(arn, "gone", now - 1).await.unwrap();
        assert_eq!(b.head().await.unwrap().deny_version, 3);
        assert_eq!(
            b.denials().await.unwrap(),
            vec![(arn.to_owned(), "viewer|with|bars".to_owned(), now + 100)]
        );

        assert_eq!(
            a.claim("k1", Duration::from_secs(2)).await.unwrap(),
            Claim::Mine
        );
        assert!(
            matches!(b.claim("k1", Duration::from_secs(2)).await.unwrap(), Claim::Pending { owner } if owner == "replica-a")
        );
        a.complete("k1", 200, "{\"ok\":1}", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            b.claim("k1", Duration::from_secs(2)).await.unwrap(),
            Claim::Done {
                status: 200,
                body: "{\"ok\":1}".into()
            }
        );
        // A claim given up, or one whose owner died (expired): claimed anew.
        assert_eq!(
            a.claim("k2", Duration::from_millis(300)).await.unwrap(),
            Claim::Mine
        );
        b.abandon("k2").await;
        assert!(matches!(
            b.claim("k2", Duration::from_secs(2)).await.unwrap(),
            Claim::Pending { .. }
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while b.claim("k2", Duration::from_secs(2)).await.unwrap() != Claim::Mine {
            assert!(
                std::time::Instant::now() < deadline,
                "the claim never expired"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        b.abandon("k2").await;
        assert_eq!(
            a.claim("k2", Duration::from_secs(2)).await.unwrap(),
            Claim::Mine
        );
    }
}
