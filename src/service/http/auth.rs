//! Who is calling, from the request's headers: the network policy first,
//! then a viewer JWT (`Authorization: Bearer`), an API key (`X-Api-Key`), or
//! nobody. HTTP in, a mint-room [`Caller`] out.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};

use super::error::AppError;
use crate::service::mint::Mint;
use crate::service::mint::policy::Caller;
use crate::service::mint::refusal::Refusal;

/// The header trusted backends send their API key in.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";

/// The credentials of `Authorization: Bearer …`; the scheme is matched
/// without regard to case (RFC 9110 §11.1).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credentials.trim())
}

/// The viewer's country, from the configured (trusted) country header.
pub(crate) fn country<'h>(mint: &Mint, headers: &'h HeaderMap) -> Option<&'h str> {
    mint.network
        .country_header()
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok())
}

/// The network rules, then the caller the credentials name.
pub(crate) async fn admit(
    mint: &Mint,
    ip: IpAddr,
    headers: &HeaderMap,
) -> Result<Caller, AppError> {
    // A proxy that appends the trusted header, rather than replacing it,
    // passes the client's own value along first: refuse rather than pick.
    if let Some(name) = mint.network.country_header()
        && headers.get_all(name).iter().nth(1).is_some()
    {
        return Err(Refusal::invalid(
            name,
            "the trusted country header appears more than once: the proxy in front must replace it, not append to what the client sent",
        )
        .into());
    }
    mint.check_network(ip, country(mint, headers))?;
    if let (Some(token), Some(viewers)) = (bearer(headers), &mint.viewers)
        && !headers.contains_key(API_KEY_HEADER)
    {
        let viewer = viewers.verify(token.trim()).await?;
        return Ok(mint.policy.viewer_caller(viewer));
    }
    if let Some(value) = headers.get(API_KEY_HEADER) {
        let key = value
            .to_str()
            .map_err(|_| AppError::Unauthenticated("the X-Api-Key header is not ASCII".into()))?;
        return Ok(mint.policy.api_key_caller(key)?);
    }
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(AppError::Unauthenticated(
            "Authorization is not accepted here: send an API key in X-Api-Key".into(),
        ));
    }
    Ok(Caller::Anonymous(ip))
}
