//! `Origin` and `AllowedOrigins`: the `aws:access-control-allow-origin` claim.

use std::fmt;
use std::str::FromStr;

use super::names;
use crate::error::ClaimError;

/// One origin in `aws:access-control-allow-origin`, normalised to
/// `scheme://host[:port]`.
///
/// Scheme and host are lowercased, a default port (80 for http, 443 for https)
/// and a single trailing `/` are dropped. A host may start with the wildcard
/// label `*.` (`https://*.example.com`), as the IVS docs allow
/// (private-channels-generate-tokens). Paths, queries, fragments, user info,
/// spaces and non-ASCII hosts (use punycode) are refused.
///
/// IVS does not document how it compares origins (`docs/ivs-facts.md` §1):
/// the normal form is the one a browser sends in its `Origin` header, so
/// that an exact comparison on IVS's side matches.
///
/// ```
/// use ivs_playback_auth::Origin;
///
/// # fn main() -> Result<(), ivs_playback_auth::ClaimError> {
/// assert_eq!(Origin::parse("HTTPS://WWW.Example.com:443/")?.as_str(), "https://www.example.com");
/// assert!(Origin::parse("https://www.example.com/watch").is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(Box<str>);

impl Origin {
    /// Parses and normalises one origin, `scheme://host[:port]`.
    ///
    /// # Errors
    ///
    /// [`ClaimError`] for `aws:access-control-allow-origin` when the origin is
    /// empty or `*` (every origin is [`AllowedOrigins::any`], not one origin),
    /// has no or an invalid scheme, has a path, query, fragment or user info,
    /// contains whitespace, a control character or a comma, has an invalid
    /// port (0, over 65535, or empty), a non-ASCII or invalid host (labels
    /// are 1 to 63 letters, digits, `-` or `_`; IPv6 in brackets), or a
    /// wildcard anywhere but as the first label, or before a single label
    /// (`https://*.com`; `*.localhost` is allowed).
    pub fn parse(origin: &str) -> Result<Self, ClaimError> {
        let err = |rule: String| ClaimError::new(names::ALLOW_ORIGIN, rule);
        // Callers of the library build `*` with `AllowedOrigins::any()`; the
        // message speaks of values, as CLI and HTTP users see it.
        if origin == "*" {
            return Err(err(
                "`*` (every origin) must be the only value, not one origin among others".into(),
            ));
        }
        if origin.is_empty() {
            return Err(err(
                "an origin is empty; write it as scheme://host[:port], e.g. https://example.com"
                    .into(),
            ));
        }
        if let Some(c) = origin
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == ',')
        {
            return Err(err(format!(
                "origin `{}` contains {c:?}; an origin is scheme://host[:port]",
                origin.escape_debug()
            )));
        }
        let (scheme, rest) = origin.split_once("://").ok_or_else(|| {
            err(format!(
                "origin `{origin}` has no scheme; write it as scheme://host[:port], e.g. https://example.com"
            ))
        })?;
        let scheme = scheme.to_ascii_lowercase();
        let mut scheme_chars = scheme.chars();
        let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(err(format!("origin `{origin}` has an invalid scheme")));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(err(format!(
                "origin `{origin}` has a path, query or fragment; an origin is only scheme://host[:port]"
            )));
        }
        if authority.contains('@') {
            return Err(err(format!(
                "origin `{origin}` has user info; an origin is only scheme://host[:port]"
            )));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| err(format!("origin `{origin}` has an invalid port")))?;
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(err(format!("origin `{origin}` has no host")));
        }
        if !host.is_ascii() {
            return Err(err(format!(
                "origin `{origin}` has a non-ASCII host; write it in punycode (xn--...)"
            )));
        }
        if host.starts_with('[') {
            let inner = &host[1..host.len() - 1];
            if inner.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err(format!("origin `{origin}` has an invalid IPv6 host")));
            }
        } else {
            let (wild, labels) = match host.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, host.as_str()),
            };
            for label in labels.split('.') {
                let ok = !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !label.starts_with('-')
                    && !label.ends_with('-');
                if !ok {
                    let why = if label.contains('*') {
                        "the wildcard `*.` may only be the first label of the host"
                    } else {
                        "each host label must be 1 to 63 letters, digits, `-` or `_`"
                    };
                    return Err(err(format!("origin `{origin}`: {why}")));
                }
            }
            if wild && !labels.contains('.') && labels != "localhost" {
                return Err(err(format!(
                    "origin `{origin}`: the wildcard needs at least two labels after it (`*.example.com`); `*.{labels}` would allow every site under `{labels}`"
                )));
            }
        }
        let default_port = match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        let normalised = match port {
            Some(p) if Some(p) != default_port => format!("{scheme}://{host}:{p}"),
            _ => format!("{scheme}://{host}"),
        };
        Ok(Self(normalised.into()))
    }

    /// The normalised origin, as it goes into the claim.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the host starts with the `*.` wildcard label.
    pub fn is_wildcard(&self) -> bool {
        self.0.contains("://*.")
    }

    /// Whether a browser's `Origin` header value is allowed by this entry.
    /// A header that is not an origin (`null`, garbage) is not allowed; never
    /// panics.
    ///
    /// The header is normalised the same way first. The wildcard `*.` stands
    /// for exactly one host label. IVS does not document its matching rules
    /// \[OPEN\]: one label is the narrowest reading, so a token that plays here
    /// does not rely on a looser match.
    pub fn matches(&self, header: &str) -> bool {
        let Ok(candidate) = Origin::parse(header) else {
            return false;
        };
        if candidate.is_wildcard() {
            return false;
        }
        let Some((pattern_prefix, pattern_suffix)) = self.0.split_once("*.") else {
            return candidate.0 == self.0;
        };
        let Some(rest) = candidate.0.strip_prefix(pattern_prefix) else {
            return false;
        };
        let Some(label) = rest.strip_suffix(pattern_suffix) else {
            return false;
        };
        label.len() > 1 && label.ends_with('.') && !label[..label.len() - 1].contains('.')
    }
}

/// Splits `host[:port]` (with `[v6]` hosts); `None` for a bad port.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(parse_port(p)?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, p)) => Some((host, Some(parse_port(p)?))),
        None => Some((authority, None)),
    }
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|&p| p != 0)
}

/// Same as [`Origin::parse`].
impl FromStr for Origin {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value of `aws:access-control-allow-origin`: every origin (`*`), or a
/// list of origins.
///
/// Without the claim, IVS lets any origin play. With it, IVS checks the
/// browser's `Origin` header on the multivariant playlist request only, or
/// on every playlist and segment request when `aws:strict-origin-enforcement`
/// is on; then at most 5 origins may be listed
/// ([`MAX_STRICT_ORIGINS`](super::MAX_STRICT_ORIGINS), checked by
/// the builder), otherwise the list is unlimited
/// (private-channels-generate-tokens). The check concerns browsers, which
/// send `Origin` (`docs/ivs-facts.md` §1); it is no defence against a
/// client that forges the header.
///
/// `Display` writes the wire form: `*`, or the normalised origins joined by
/// `,` without spaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AllowedOrigins(OriginsRepr);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum OriginsRepr {
    Any,
    List(Vec<Origin>),
}

impl AllowedOrigins {
    /// `*`: every origin may play (the value the AWS examples use).
    pub fn any() -> Self {
        Self(OriginsRepr::Any)
    }

    /// A list of origins, in order, duplicates (after normalisation) removed.
    ///
    /// # Errors
    ///
    /// [`ClaimError`] for `aws:access-control-allow-origin` when `origins` is
    /// empty: leave the claim out instead (or use [`any`](Self::any)). The
    /// 5-origin limit of strict enforcement is checked by
    /// [`PlaybackClaimsBuilder::build`](crate::PlaybackClaimsBuilder::build),
    /// not here.
    pub fn from_origins(origins: impl IntoIterator<Item = Origin>) -> Result<Self, ClaimError> {
        let mut list: Vec<Origin> = Vec::new();
        for origin in origins {
            if !list.contains(&origin) {
                list.push(origin);
            }
        }
        if list.is_empty() {
            return Err(ClaimError::new(
                names::ALLOW_ORIGIN,
                "the list of origins is empty; leave the claim out to allow any origin",
            ));
        }
        Ok(Self(OriginsRepr::List(list)))
    }

    /// Parses the claim's wire form: `*`, or comma-separated origins (spaces
    /// around the commas are allowed, and dropped), each normalised as
    /// [`Origin::parse`] does.
    ///
    /// # Errors
    ///
    /// [`ClaimError`] for `aws:access-control-allow-origin` when `value` is
    /// empty, has an empty entry (a comma too many), has `*` beside other
    /// origins, or has an entry [`Origin::parse`] refuses.
    pub fn parse(value: &str) -> Result<Self, ClaimError> {
        if value.trim() == "*" {
            return Ok(Self::any());
        }
        let mut origins = Vec::new();
        for part in value.split(',') {
            let part = part.trim();
            if part == "*" {
                return Err(ClaimError::new(
                    names::ALLOW_ORIGIN,
                    "`*` must be the only value when present",
                ));
            }
            if part.is_empty() {
                let why = if value.trim().is_empty() {
                    "is empty; leave the claim out to allow every origin, or write `*`".to_owned()
                } else {
                    format!(
                        "`{value}` has an empty entry (a comma too many at the start, the end or between two origins)"
                    )
                };
                return Err(ClaimError::new(names::ALLOW_ORIGIN, why));
            }
            origins.push(Origin::parse(part)?);
        }
        Self::from_origins(origins)
    }

    /// Whether this is `*`.
    pub fn is_any(&self) -> bool {
        matches!(self.0, OriginsRepr::Any)
    }

    /// The listed origins, normalised, without duplicates (empty for `*`).
    pub fn origins(&self) -> &[Origin] {
        match &self.0 {
            OriginsRepr::Any => &[],
            OriginsRepr::List(list) => list,
        }
    }

    /// How many entries the claim holds (`*` counts as one), the number
    /// IVS's 5-origin limit of strict enforcement is about.
    pub fn len(&self) -> usize {
        match &self.0 {
            OriginsRepr::Any => 1,
            OriginsRepr::List(list) => list.len(),
        }
    }

    /// Never true: an empty list cannot be built.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether a browser's `Origin` header value is allowed, by `*` or by
    /// one entry's [`Origin::matches`]. Never panics.
    pub fn allows(&self, header: &str) -> bool {
        match &self.0 {
            OriginsRepr::Any => true,
            OriginsRepr::List(list) => list.iter().any(|o| o.matches(header)),
        }
    }
}

impl fmt::Display for AllowedOrigins {
    /// The wire form: `*` or origins joined by `,`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            OriginsRepr::Any => f.write_str("*"),
            OriginsRepr::List(list) => {
                for (i, origin) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(origin.as_str())?;
                }
                Ok(())
            }
        }
    }
}

/// Same as [`AllowedOrigins::parse`].
impl FromStr for AllowedOrigins {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
