//! Everything that needs the `service` feature: the local IVS now; the token
//! service, control module and key stores as they land.

pub mod local_ivs;
