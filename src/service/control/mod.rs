//! The control room: everything that changes what IVS holds. The IVS
//! client ([`ivs`]: aws-sdk-ivs, paced to IVS's quotas, retried), the key
//! store (`store`: private keys and the recorded rotation state, in a
//! directory or in Secrets Manager and the coordination table), the
//! replicas' coordination (`coordination`: DynamoDB: the rotation lease,
//! heartbeats, the shared deny-list and idempotency records), and key
//! rotation ([`rotation`]: pure transitions, the steps that act on IVS and
//! the store, and what they report). The token path never calls into here;
//! it reads the key set the rotator swaps and writes the token ledger.

pub(crate) mod aws;
pub(crate) mod coordination;
pub mod ivs;
pub mod rotation;
pub(crate) mod store;
