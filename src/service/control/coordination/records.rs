//! The records replicas share besides the rotation: heartbeats (which key
//! each replica signs with, and the latest `exp` it signed with each), the
//! viewer deny-list, and the answers of idempotent requests. Each has an
//! expiry of its own that every read applies: DynamoDB's TTL deletes
//! expired items only eventually.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types::AttributeValue;

use super::lease::{DENY_VERSION, ROTATION};
use super::{
    Coordination, CoordinationError, Item, PK, PURGE_AT, SK, key, n, now_ms, number, s, text,
};

const REPLICA: &str = "replica";
const DENY: &str = "deny";
const IDEMPOTENCY: &str = "idempotency";

/// What one replica said about its signing, at its last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// The replica.
    pub(crate) replica: String,
    /// The key it signs with.
    pub(crate) active: String,
    /// The latest `exp` it signed, per key (Unix seconds).
    pub(crate) signed: BTreeMap<String, u64>,
    /// Until when it counts as alive (Unix seconds): it may sign with
    /// `active` until then.
    pub(crate) expires_at: u64,
}

/// What claiming an idempotency key gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This replica runs the request now.
    Mine,
    /// It ran already: its answer.
    Done {
        /// The HTTP status.
        status: u16,
        /// The body.
        body: String,
    },
    /// Another replica runs it now.
    Pending {
        /// That replica.
        owner: String,
    },
}

impl Coordination {
    /// Writes this replica's heartbeat: it signs with `active` and counts as
    /// alive for `live_for`; the item is kept `keep_for` longer, since the
    /// deletion rule reads a dead replica's last heartbeat until then.
    pub(crate) async fn beat(
        &self,
        active: &str,
        signed: &BTreeMap<String, u64>,
        live_for: Duration,
        keep_for: Duration,
    ) -> Result<(), CoordinationError> {
        let now = now_ms() / 1000;
        let expires_at = now + live_for.as_secs();
        let signed: std::collections::HashMap<String, AttributeValue> =
            signed.iter().map(|(k, v)| (k.clone(), n(*v))).collect();
        self.client()
            .put_item()
            .table_name(self.table())
            .item(PK, s(REPLICA))
            .item(SK, s(self.replica()))
            .item("active", s(active))
            .item("signed", AttributeValue::M(signed))
            .item("expires_at", n(expires_at))
            .item(PURGE_AT, n(expires_at + keep_for.as_secs()))
            .send()
            .await
            .map_err(|e| self.unavailable("PutItem", &e))?;
        Ok(())
    }

    /// Every replica's last heartbeat that is not past its purge time,
    /// dead replicas' included (see [`Heartbeat::expires_at`]).
    pub(crate) async fn heartbeats(&self) -> Result<Vec<Heartbeat>, CoordinationError> {
        let now = now_ms() / 1000;
        let mut out = Vec::new();
        for item in self.partition(REPLICA).await? {
            if number(&item, PURGE_AT).is_some_and(|t| t <= now) {
                continue;
            }
            let (Some(replica), Some(active), Some(expires_at)) = (
                text(&item, SK),
                text(&item, "active"),
                number(&item, "expires_at"),
            ) else {
                return Err(self.corrupt(format!("a heartbeat item lacks a field: {item:?}")));
            };
            let signed = item
                .get("signed")
                .and_then(|v| v.as_m().ok())
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?)))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Heartbeat {
                replica: replica.to_owned(),
                active: active.to_owned(),
                signed,
                expires_at,
            });
        }
        Ok(out)
    }

    /// Refuses tokens for `viewer` on `channel` until `until` (Unix
    /// seconds) on every replica: a longer denial already stored stands.
    /// The deny-list's version is bumped after, so that a replica that sees
    /// the new version finds the entry.
    pub(crate) async fn deny(
        &self,
        channel: &str,
        viewer: &str,
        until: u64,
    ) -> Result<(), CoordinationError> {
        let sent = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(DENY, &format!("{channel}|{viewer}"))))
            .update_expression("SET #c = :c, #v = :v, #u = :u, #p = :u")
            .condition_expression("attribute_not_exists(#u) OR #u < :u")
            .expression_attribute_names("#c", "channel")
            .expression_attribute_names("#v", "viewer")
            .expression_attribute_names("#u", "until")
            .expression_attribute_names("#p", PURGE_AT)
            .expression_attribute_values(":c", s(channel))
            .expression_attribute_values(":v", s(viewer))
            .expression_attribute_values(":u", n(until))
            .send()
            .await;
        match sent {
            Ok(_) => {}
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {}
            Err(e) => return Err(self.unavailable("UpdateItem", &e)),
        }
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(ROTATION, DENY_VERSION)))
            .update_expression("ADD #v :one")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| self.unavailable("UpdateItem", &e))?;
        Ok(())
    }

    /// The denials in force: (channel ARN, viewer id, until).
    pub(crate) async fn denials(&self) -> Result<Vec<(String, String, u64)>, CoordinationError> {
        let now = now_ms() / 1000;
        let mut out = Vec::new();
        for item in self.partition(DENY).await? {
            if let (Some(channel), Some(viewer), Some(until)) = (
                text(&item, "channel"),
                text(&item, "viewer"),
                number(&item, "until"),
            ) && until > now
            {
                out.push((channel.to_owned(), viewer.to_owned(), until));
            }
        }
        Ok(out)
    }

    /// Claims `request_key` for this replica for `hold`, unless another
    /// holds it or it is done (and not expired).
    pub(crate) async fn claim(
        &self,
        request_key: &str,
        hold: Duration,
    ) -> Result<Claim, CoordinationError> {
        let now = now_ms();
        let until = now + u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
        let sent = self
            .client()
            .put_item()
            .table_name(self.table())
            .item(PK, s(IDEMPOTENCY))
            .item(SK, s(request_key))
            .item("owner", s(self.replica()))
            .item("expires_at_ms", n(until))
            .item(PURGE_AT, n(until / 1000 + 1))
            .condition_expression("attribute_not_exists(#pk) OR #e < :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#e", "expires_at_ms")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match sent {
            Ok(_) => return Ok(Claim::Mine),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {}
            Err(e) => return Err(self.unavailable("PutItem", &e)),
        }
        let got = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(IDEMPOTENCY, request_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        let Some(item) = got.item() else {
            // Abandoned between the two calls: the caller claims again.
            return Ok(Claim::Pending {
                owner: "nobody".into(),
            });
        };
        match (number(item, "status"), text(item, "body")) {
            (Some(status), Some(body)) => Ok(Claim::Done {
                status: u16::try_from(status).unwrap_or(500),
                body: body.to_owned(),
            }),
            _ => Ok(Claim::Pending {
                owner: text(item, "owner").unwrap_or("unknown").to_owned(),
            }),
        }
    }

    /// Records the answer of a claimed request, kept for `keep`.
    pub(crate) async fn complete(
        &self,
        request_key: &str,
        status: u16,
        body: &str,
        keep: Duration,
    ) -> Result<(), CoordinationError> {
        let until = now_ms() + u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        self.client()
            .put_item()
            .table_name(self.table())
            .item(PK, s(IDEMPOTENCY))
            .item(SK, s(request_key))
            .item("owner", s(self.replica()))
            .item("status", n(u64::from(status)))
            .item("body", s(body))
            .item("expires_at_ms", n(until))
            .item(PURGE_AT, n(until / 1000 + 1))
            .send()
            .await
            .map_err(|e| self.unavailable("PutItem", &e))?;
        Ok(())
    }

    /// Gives up a claim that did not complete (a failed request is not
    /// remembered: a retry runs it again).
    pub(crate) async fn abandon(&self, request_key: &str) {
        self.delete_own(
            key(IDEMPOTENCY, request_key),
            "#o = :me AND attribute_not_exists(#s)",
            &[("#o", "owner"), ("#s", "status")],
            "an idempotency claim",
        )
        .await;
    }

    /// Every item of a partition (consistent reads, all pages).
    async fn partition(&self, pk: &str) -> Result<Vec<Item>, CoordinationError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.unavailable("Query", &e))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(out),
            }
        }
    }
}
