//! SigV4 on the control plane: every request must be signed; with configured
//! credentials the signature is checked by signing the request again with
//! `aws-sigv4` and comparing in constant time.
//!
//! What is checked: the `Authorization` header's form (`AWS4-HMAC-SHA256
//! Credential=AKID/DATE/REGION/ivs/aws4_request, SignedHeaders=...,
//! Signature=...`), the service name `ivs`, `x-amz-date` within 15 minutes of
//! now and on the credential's date, and, when credentials are configured, the
//! access key and the signature itself (method, path, query, signed headers and
//! body). The region of the credential scope picks the region's state.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::http::{HeaderMap, Method, Uri};
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use super::state::Scope;

const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// An access key the local IVS accepts, and the account it belongs to.
#[derive(Clone)]
pub(crate) struct Credential {
    pub(crate) secret: String,
    pub(crate) account: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("account", &self.account)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub(crate) struct Authenticator {
    /// By access key id. Empty: any well-formed signature is accepted.
    pub(crate) credentials: HashMap<String, Credential>,
    /// The account of requests whose key is not configured.
    pub(crate) default_account: String,
}

struct Parsed<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn denied(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::access_denied(code, message)
}

fn parse_authorization(value: &str) -> Result<Parsed<'_>, ApiError> {
    let malformed = |why: &str| {
        denied(
            "IncompleteSignatureException",
            format!("Authorization header is not a valid SigV4 header: {why}"),
        )
    };
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| malformed("it must start with AWS4-HMAC-SHA256"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("a component is not key=value"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| malformed("Credential is missing"))?;
    let mut scope = credential.split('/');
    let (Some(access_key), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(malformed(
            "Credential must be AKID/YYYYMMDD/REGION/SERVICE/aws4_request",
        ));
    };
    let signed_headers: Vec<&str> = signed_headers
        .ok_or_else(|| malformed("SignedHeaders is missing"))?
        .split(';')
        .collect();
    let signature = signature.ok_or_else(|| malformed("Signature is missing"))?;
    if !signed_headers.contains(&"host") {
        return Err(malformed("the host header must be signed"));
    }
    Ok(Parsed {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// `YYYYMMDDTHHMMSSZ` to a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    // Digits only: `u64::from_str` also takes a leading `+`.
    let num = |r: std::ops::Range<usize>| {
        let field = s.get(r)?;
        field
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| field.parse::<u64>().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    // Year 0000 in January or February has no year before it (found by
    // fuzzing: the subtraction overflowed and the request's task panicked).
    let (y, m) = if mo <= 2 {
        (y.checked_sub(1)?, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe;
    let days = days.checked_sub(719_468)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + se))
}

impl Authenticator {
    /// Checks a request and returns the account and region it acts on.
    pub(crate) fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Scope, ApiError> {
        let Some(value) = headers.get("authorization") else {
            return Err(denied(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token: requests to IVS must be signed with SigV4",
            ));
        };
        let value = value.to_str().map_err(|_| {
            denied(
                "IncompleteSignatureException",
                "Authorization header is not ASCII",
            )
        })?;
        let parsed = parse_authorization(value)?;
        if parsed.service != "ivs" {
            return Err(denied(
                "InvalidSignatureException",
                format!(
                    "Credential should be scoped to correct service: 'ivs', not '{}'",
                    parsed.service
                ),
            ));
        }
        let amz_date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                denied(
                    "IncompleteSignatureException",
                    "the x-amz-date header is missing",
                )
            })?;
        let time = parse_amz_date(amz_date).ok_or_else(|| {
            denied(
                "IncompleteSignatureException",
                format!("x-amz-date `{amz_date}` is not YYYYMMDDTHHMMSSZ"),
            )
        })?;
        if !amz_date.starts_with(parsed.date) {
            return Err(denied(
                "InvalidSignatureException",
                "the credential date does not match x-amz-date",
            ));
        }
        let skew = now
            .duration_since(time)
            .or_else(|_| time.duration_since(now))
            .unwrap_or_default();
        if skew > MAX_SKEW {
            return Err(denied(
                "InvalidSignatureException",
                format!(
                    "Signature expired: {amz_date} is more than 15 minutes from the server's time"
                ),
            ));
        }
        let account = if self.credentials.is_empty() {
            self.default_account.clone()
        } else {
            let credential = self.credentials.get(parsed.access_key).ok_or_else(|| {
                denied(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                )
            })?;
            let expected = resign(&parsed, credential, method, uri, headers, body, time)?;
            if !bool::from(expected.as_bytes().ct_eq(parsed.signature.as_bytes())) {
                return Err(denied(
                    "InvalidSignatureException",
                    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
                ));
            }
            credential.account.clone()
        };
        Ok(Scope {
            account,
            region: parsed.region.to_owned(),
        })
    }
}

/// The signature the client should have sent, computed by signing the same
/// request again.
fn resign(
    parsed: &Parsed<'_>,
    credential: &Credential,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    time: SystemTime,
) -> Result<String, ApiError> {
    let mut signed = Vec::with_capacity(parsed.signed_headers.len());
    for name in &parsed.signed_headers {
        // Several values of one header are joined with `,` as SigV4 does.
        let values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(denied(
                "IncompleteSignatureException",
                format!("signed header `{name}` is not in the request"),
            ));
        }
        signed.push((*name, values.join(",")));
    }
    let identity: Identity = Credentials::new(
        parsed.access_key,
        &credential.secret,
        None,
        None,
        "local-ivs",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Sign exactly the headers the client signed.
    settings.excluded_headers = Some(Vec::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(parsed.region)
        .name(parsed.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| ApiError::internal(format!("sigv4 parameters: {e}")))?
        .into();
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = SignableRequest::new(
        method.as_str(),
        path_and_query,
        signed.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| {
        denied(
            "IncompleteSignatureException",
            format!("unsignable request: {e}"),
        )
    })?;
    let output = sign(request, &params).map_err(|e| {
        denied(
            "IncompleteSignatureException",
            format!("unsignable request: {e}"),
        )
    })?;
    Ok(output.signature().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_amz_dates() {
        let t = parse_amz_date("20261126T134000Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_795_700_400
        );
        assert!(parse_amz_date("2026-11-26T13:40:00Z").is_none());
        assert!(parse_amz_date("20261326T134000Z").is_none());
    }

    #[test]
    fn refuses_amz_dates_the_arithmetic_cannot_hold() {
        // Year 0 in January or February overflowed (a panic); before 1970 is
        // refused too.
        assert!(parse_amz_date("00000115T120000Z").is_none());
        assert!(parse_amz_date("00000229T000000Z").is_none());
        assert!(parse_amz_date("00000315T120000Z").is_none());
        assert!(parse_amz_date("19691231T235959Z").is_none());
        assert!(parse_amz_date("99991231T235959Z").is_some());
        // Signs are not digits.
        assert!(parse_amz_date("2026+126T134000Z").is_none());
        assert!(parse_amz_date("+0261126T134000Z").is_none());
    }

    #[test]
    fn a_year_zero_date_is_refused_not_a_panic() {
        let auth = Authenticator {
            credentials: HashMap::new(),
            default_account: "123456789012".into(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-date", "00000115T120000Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/00000115/us-west-2/ivs/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
                .parse()
                .unwrap(),
        );
        let err = auth
            .authenticate(
                &Method::POST,
                &"/ListChannels".parse().unwrap(),
                &headers,
                b"{}",
                SystemTime::now(),
            )
            .unwrap_err();
        assert_eq!(err.code, "IncompleteSignatureException");
        assert!(err.message.contains("00000115T120000Z"), "{}", err.message);
    }

    #[test]
    fn parses_the_authorization_header() {
        let p = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-west-2/ivs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(p.access_key, "AKID");
        assert_eq!(p.region, "us-west-2");
        assert_eq!(p.signed_headers, ["host", "x-amz-date"]);
        assert!(parse_authorization("Bearer x").is_err());
        assert!(
            parse_authorization(
                "AWS4-HMAC-SHA256 Credential=AKID/x, SignedHeaders=host, Signature=a"
            )
            .is_err()
        );
    }
}
