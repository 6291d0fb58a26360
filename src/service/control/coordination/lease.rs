//! The rotation state and the lease that guards it. Only the lease holder
//! saves the state: a save is one transaction that renews the holder's
//! lease (on condition that it still holds it) and writes the state (on
//! condition that the stored version is the one the save was based on), so
//! a replica that lost its lease, or read an old state, changes nothing.
//! A lease that is not renewed expires: a replica killed mid-rotation is
//! replaced by the next one that asks.

use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, KeysAndAttributes, Put, ReturnValue, TransactWriteItem, Update,
};

use super::{Coordination, CoordinationError, Item, PK, SK, key, n, now_ms, number, s, text};

/// The partition of the rotation's items.
pub(super) const ROTATION: &str = "rotation";
const STATE: &str = "state";
const LEASE: &str = "lease";
/// The item whose `version` every viewer revocation bumps.
pub(super) const DENY_VERSION: &str = "deny-version";

/// What asking for the rotation lease gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lease {
    /// This replica holds it now; `took_over` names the replica whose
    /// lease had expired (it stopped mid-way, or was too slow).
    Acquired {
        /// The previous holder, when its lease had expired.
        took_over: Option<String>,
    },
    /// Another replica holds it.
    Held {
        /// That replica.
        holder: String,
        /// When its lease expires unless renewed (Unix milliseconds).
        expires_at_ms: u64,
    },
}

/// What a poll reads: small, and changed only when something happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Head {
    /// The stored state's version (0: none yet).
    pub(crate) state_version: u64,
    /// The lease's holder and expiry (Unix milliseconds), if one is held.
    pub(crate) lease: Option<(String, u64)>,
    /// The deny-list's version.
    pub(crate) deny_version: u64,
}

impl Head {
    /// Whether nobody holds the lease at `now_ms`.
    pub(crate) fn lease_free(&self, now_ms: u64) -> bool {
        self.lease
            .as_ref()
            .is_none_or(|(_, expires)| *expires <= now_ms)
    }
}

impl Coordination {
    /// The stored rotation state (JSON), if one was saved.
    pub(crate) async fn load_state(&self) -> Result<Option<String>, CoordinationError> {
        let got = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(ROTATION, STATE)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable("GetItem", &e))?;
        match got.item() {
            None => Ok(None),
            Some(item) => text(item, "state_json")
                .map(|json| Some(json.to_owned()))
                .ok_or_else(|| self.corrupt("the rotation state item has no `state_json`".into())),
        }
    }

    /// Saves the state as `version` if the stored one is `version - 1`
    /// and this replica holds the lease, which the same write renews.
    pub(crate) async fn save_state(
        &self,
        version: u64,
        json: &str,
    ) -> Result<(), CoordinationError> {
        let now = now_ms();
        let expires = now + u64::try_from(self.lease_duration().as_millis()).unwrap_or(u64::MAX);
        let renew = Update::builder()
            .table_name(self.table())
            .set_key(Some(key(ROTATION, LEASE)))
            .update_expression("SET #e = :exp")
            .condition_expression("#h = :me")
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_names("#h", "holder")
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":me", s(self.replica()))
            .build()
            .map_err(|e| self.corrupt(e.to_string()))?;
        let mut put = Put::builder()
            .table_name(self.table())
            .item(PK, s(ROTATION))
            .item(SK, s(STATE))
            .item("version", n(version))
            .item("state_json", s(json))
            .item("updated_at_ms", n(now))
            .item("updated_by", s(self.replica()));
        put = if version <= 1 {
            put.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
        } else {
            put.condition_expression("#v = :prev")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":prev", n(version - 1))
        };
        let put = put.build().map_err(|e| self.corrupt(e.to_string()))?;
        let items = vec![
            TransactWriteItem::builder().update(renew).build(),
            TransactWriteItem::builder().put(put).build(),
        ];
        // DynamoDB cancels a transaction that meets another write to one of
        // its items in flight (`TransactionConflict`): another replica's
        // `try_lease` on the lease item does that. A conflict is no verdict
        // on the conditions: ask again, a few times.
        let mut attempt = 0u64;
        let e = loop {
            let sent = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let Err(e) = sent else {
                return Ok(());
            };
            let conflict = cancellation_reasons(e.as_service_error())
                .is_some_and(|r| r.iter().any(|r| r.code() == Some("TransactionConflict")));
            attempt += 1;
            if !conflict || attempt >= 4 {
                break e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
        };
        let Some(reasons) = cancellation_reasons(e.as_service_error()) else {
            return Err(self.unavailable("TransactWriteItems", &e));
        };
        // The items in the order sent: 0 renews the lease, 1 writes the state.
        let failed = |item: usize| {
            reasons
                .get(item)
                .is_some_and(|r| r.code() == Some("ConditionalCheckFailed"))
        };
        let head = self.head().await.unwrap_or_default();
        if failed(0) {
            let holder = head.lease.map_or("nobody".to_owned(), |(h, _)| h);
            return Err(CoordinationError::LeaseLost(format!(
                "replica {} no longer holds the rotation lease (held by {holder} now): its step is not recorded",
                self.replica()
            )));
        }
        if failed(1) {
            return Err(CoordinationError::Conflict {
                stored: head.state_version,
                ours: version.saturating_sub(1),
            });
        }
        Err(self.unavailable("TransactWriteItems", &e))
    }

    /// Takes the rotation lease if nobody holds it, its holder's lease has
    /// expired, or this replica holds it already (then it is renewed).
    pub(crate) async fn try_lease(&self) -> Result<Lease, CoordinationError> {
        let now = now_ms();
        let expires = now + u64::try_from(self.lease_duration().as_millis()).unwrap_or(u64::MAX);
        let sent = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(ROTATION, LEASE)))
            .update_expression("SET #h = :me, #e = :exp, #a = :now")
            .condition_expression("attribute_not_exists(#pk) OR #h = :me OR #e < :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#h", "holder")
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_names("#a", "acquired_at")
            .expression_attribute_values(":me", s(self.replica()))
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match sent {
            Ok(out) => {
                let before = out.attributes().and_then(|a| text(a, "holder"));
                let took_over = before.filter(|h| *h != self.replica()).map(str::to_owned);
                if let Some(previous) = &took_over {
                    tracing::warn!(previous = %previous, "took over the rotation lease of a replica that let it expire");
                }
                Ok(Lease::Acquired { took_over })
            }
            // A conflict with a save in flight (the holder's transaction
            // on this item) means the lease is held: read who holds it.
            Err(e)
                if matches!(
                    e.code(),
                    Some("ConditionalCheckFailedException" | "TransactionConflictException")
                ) =>
            {
                match self.head().await?.lease {
                    Some((holder, expires_at_ms)) => Ok(Lease::Held {
                        holder,
                        expires_at_ms,
                    }),
                    // Released between the two calls: ask again next time.
                    None => Ok(Lease::Held {
                        holder: "nobody".into(),
                        expires_at_ms: now,
                    }),
                }
            }
            Err(e) => Err(self.unavailable("UpdateItem", &e)),
        }
    }

    /// Gives the lease up (if this replica still holds it).
    pub(crate) async fn release_lease(&self) {
        self.delete_own(
            key(ROTATION, LEASE),
            "#h = :me",
            &[("#h", "holder")],
            "the rotation lease",
        )
        .await;
    }

    /// The state's version, the lease and the deny-list's version, in one
    /// read.
    pub(crate) async fn head(&self) -> Result<Head, CoordinationError> {
        let keys = KeysAndAttributes::builder()
            .keys(key(ROTATION, STATE))
            .keys(key(ROTATION, LEASE))
            .keys(key(ROTATION, DENY_VERSION))
            .consistent_read(true)
            .projection_expression("#sk, #v, #h, #e")
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#h", "holder")
            .expression_attribute_names("#e", "expires_at")
            .build()
            .map_err(|e| self.corrupt(e.to_string()))?;
        let got = self
            .client()
            .batch_get_item()
            .request_items(self.table(), keys)
            .send()
            .await
            .map_err(|e| self.unavailable("BatchGetItem", &e))?;
        if got
            .unprocessed_keys()
            .is_some_and(|u| u.values().any(|k| !k.keys().is_empty()))
        {
            return Err(CoordinationError::Unavailable {
                table: self.table().to_owned(),
                call: "BatchGetItem",
                message: "DynamoDB left keys unprocessed (throttled); read again at the next poll"
                    .into(),
            });
        }
        let mut head = Head::default();
        let items: &[Item] = got
            .responses()
            .and_then(|r| r.get(self.table()))
            .map_or(&[], Vec::as_slice);
        for item in items {
            match text(item, SK) {
                Some(STATE) => head.state_version = number(item, "version").unwrap_or(0),
                Some(LEASE) => {
                    if let (Some(holder), Some(expires)) =
                        (text(item, "holder"), number(item, "expires_at"))
                    {
                        head.lease = Some((holder.to_owned(), expires));
                    }
                }
                Some(DENY_VERSION) => head.deny_version = number(item, "version").unwrap_or(0),
                _ => {}
            }
        }
        Ok(head)
    }
}

/// Why each item of a cancelled transaction failed, in the order they were
/// sent (`None`: the call failed for another reason).
fn cancellation_reasons(e: Option<&TransactWriteItemsError>) -> Option<&[CancellationReason]> {
    match e {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
            Some(c.cancellation_reasons())
        }
        _ => None,
    }
}
