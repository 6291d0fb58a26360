//! A private channel's playback restriction policy, applied at mint time.
//!
//! IVS ignores a playback restriction policy on a channel with playback
//! authorization and leaves geo and origin checks to the token issuer
//! (`docs/ivs-facts.md` §1). The channel cache holds each channel with the
//! policy it names, so applying it costs no IVS call: the viewer's country
//! (from the trusted country header) must be among the policy's countries,
//! and the token's origins are narrowed to those the caller may have *and*
//! the policy allows, strictly enforced when the policy says so.

use super::policy::Grant;
use super::refusal::Refusal;
use crate::claims::MAX_STRICT_ORIGINS;
use crate::service::channel::RestrictionPolicy;
use crate::{AllowedOrigins, Origin};

/// Where the viewer is, as far as the service can tell.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Whereabouts<'a> {
    /// The trusted country header's name, when one is configured.
    pub(crate) header: Option<&'a str>,
    /// Its value in this request, when it was sent.
    pub(crate) country: Option<&'a str>,
}

/// The grant narrowed by the channel's policy, or why no token: `who` names
/// the caller in messages.
pub(crate) fn apply(
    policy: &RestrictionPolicy,
    mut grant: Grant,
    whereabouts: Whereabouts<'_>,
    who: &str,
) -> Result<Grant, Refusal> {
    check_country(policy, whereabouts)?;
    if policy.allowed_origins.is_empty() {
        // Every origin: nothing to narrow, and strict enforcement of every
        // origin adds nothing (the claim would need a list to enforce).
        return Ok(grant);
    }
    // Entries a token cannot carry (`null`, the origin of sandboxed frames
    // and files) are left out: such a viewer cannot be named in a claim, so
    // the token allows fewer origins than the policy, never more.
    let allowed: Vec<Origin> = policy
        .allowed_origins
        .iter()
        .filter_map(|o| Origin::parse(o).ok())
        .collect();
    let narrowed = match &grant.origins {
        None => allowed,
        Some(own) => intersect(own, &allowed),
    };
    let Ok(origins) = AllowedOrigins::from_origins(narrowed) else {
        let own = grant
            .origins
            .as_ref()
            .map_or_else(|| "every origin".to_owned(), ToString::to_string);
        return Err(Refusal::PolicyDenied(format!(
            "no origin is allowed both by {who} ({own}) and by the channel's {} ({}): their intersection is empty",
            policy.label(),
            policy.allowed_origins.join(",")
        )));
    };
    grant.strict |= policy.strict_origin_enforcement;
    if grant.strict && origins.len() > MAX_STRICT_ORIGINS {
        return Err(Refusal::PolicyDenied(format!(
            "the channel's {} enforces origins strictly, and a strict token may name at most {MAX_STRICT_ORIGINS} origins; {} remain ({origins}): ask for at most {MAX_STRICT_ORIGINS} of them in `origins`",
            policy.label(),
            origins.len()
        )));
    }
    grant.origins = Some(origins);
    Ok(grant)
}

/// The policy's countries, against the trusted country header.
fn check_country(policy: &RestrictionPolicy, at: Whereabouts<'_>) -> Result<(), Refusal> {
    if policy.allowed_countries.is_empty() {
        return Ok(());
    }
    let list = policy.allowed_countries.join(", ");
    let Some(header) = at.header else {
        return Err(Refusal::PolicyUnverifiable(format!(
            "the channel's {} allows only viewers in {list}, and this service has no trusted country header to check that (set policy.country_header, e.g. \"CloudFront-Viewer-Country\", or channels.enforce_restriction_policies = false)",
            policy.label()
        )));
    };
    let Some(country) = at.country.map(|c| c.trim().to_ascii_uppercase()) else {
        return Err(Refusal::PolicyDenied(format!(
            "the viewer's country is unknown (no {header} header), and the channel's {} allows only {list}",
            policy.label()
        )));
    };
    if policy
        .allowed_countries
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&country))
    {
        return Ok(());
    }
    // The header's value is the client's only if a proxy wrote it; shown
    // escaped and cut short so that a forged one cannot shape the message.
    let shown: String = country
        .chars()
        .take(8)
        .collect::<String>()
        .escape_debug()
        .to_string();
    Err(Refusal::PolicyDenied(format!(
        "country {shown} is not allowed by the channel's {} (allowed: {list})",
        policy.label()
    )))
}

/// The origins both `own` (the caller's claim) and `policy` allow. An exact
/// origin stays when the other side allows it (itself, or a wildcard
/// matching it); a wildcard stays only when the other side lists the same
/// wildcard, since `*.` stands for one label ([`Origin::matches`]) and two
/// different wildcards then share no origin. The caller's order comes first.
pub(crate) fn intersect(own: &AllowedOrigins, policy: &[Origin]) -> Vec<Origin> {
    if own.is_any() {
        return policy.to_vec();
    }
    let own = own.origins();
    let allowed_by = |side: &[Origin], o: &Origin| {
        if o.is_wildcard() {
            side.contains(o)
        } else {
            side.iter().any(|s| s.matches(o.as_str()))
        }
    };
    let mut out: Vec<Origin> = Vec::new();
    for o in own.iter().chain(policy) {
        if allowed_by(own, o) && allowed_by(policy, o) && !out.contains(o) {
            out.push(o.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn origins(list: &[&str]) -> Vec<Origin> {
        list.iter().map(|o| Origin::parse(o).unwrap()).collect()
    }

    fn claim(list: &[&str]) -> AllowedOrigins {
        AllowedOrigins::from_origins(origins(list)).unwrap()
    }

    fn strs(list: &[Origin]) -> Vec<&str> {
        list.iter().map(Origin::as_str).collect()
    }

    fn policy(countries: &[&str], allowed: &[&str], strict: bool) -> RestrictionPolicy {
        RestrictionPolicy {
            arn: "arn:aws:ivs:us-west-2:123456789012:playback-restriction-policy/abc".into(),
            name: "geo".into(),
            allowed_countries: countries.iter().map(|c| (*c).to_owned()).collect(),
            allowed_origins: allowed.iter().map(|o| (*o).to_owned()).collect(),
            strict_origin_enforcement: strict,
        }
    }

    fn grant(own: Option<&[&str]>) -> Grant {
        Grant {
            ttl: Duration::from_secs(60),
            origins: own.map(claim),
            strict: false,
            single_use: false,
            viewer: None,
            resolution: None,
        }
    }

    const NOWHERE: Whereabouts<'static> = Whereabouts {
        header: None,
        country: None,
    };

    #[test]
    fn exact_origins_intersect_exactly() {
        let got = intersect(
            &claim(&["https://a.example.com", "https://b.example.com"]),
            &origins(&["https://b.example.com", "https://c.example.com"]),
        );
        assert_eq!(strs(&got), ["https://b.example.com"]);
        let none = intersect(
            &claim(&["https://a.example.com"]),
            &origins(&["https://c.example.com"]),
        );
        assert!(none.is_empty());
        let any = intersect(&AllowedOrigins::any(), &origins(&["https://c.example.com"]));
        assert_eq!(strs(&any), ["https://c.example.com"]);
    }

    #[test]
    fn a_wildcard_keeps_the_exact_origins_it_matches_on_either_side() {
        // The caller's wildcard, the policy's exact origin.
        let got = intersect(
            &claim(&["https://*.example.com"]),
            &origins(&["https://app.example.com", "https://evil.example"]),
        );
        assert_eq!(strs(&got), ["https://app.example.com"]);
        // The policy's wildcard, the caller's exact origins.
        let got = intersect(
            &claim(&["https://app.example.com", "https://x.y.example.com"]),
            &origins(&["https://*.example.com"]),
        );
        assert_eq!(strs(&got), ["https://app.example.com"], "one label only");
        // The same wildcard on both sides stays a wildcard.
        let got = intersect(
            &claim(&["https://*.example.com", "https://other.test"]),
            &origins(&["https://*.example.com"]),
        );
        assert_eq!(strs(&got), ["https://*.example.com"]);
        // Different wildcards share no origin (one label each).
        let got = intersect(
            &claim(&["https://*.example.com"]),
            &origins(&["https://*.app.example.com"]),
        );
        assert!(got.is_empty());
        // Scheme and port count.
        let got = intersect(
            &claim(&["https://*.example.com"]),
            &origins(&["http://app.example.com", "https://app.example.com:8443"]),
        );
        assert!(got.is_empty());
    }

    #[test]
    fn the_policy_narrows_origins_and_turns_strict_on() {
        let p = policy(&[], &["https://app.example.com", "null"], true);
        let g = apply(&p, grant(None), NOWHERE, "API key a").unwrap();
        assert_eq!(g.origins.unwrap().to_string(), "https://app.example.com");
        assert!(g.strict);
        let g = apply(
            &p,
            grant(Some(&["https://*.example.com"])),
            NOWHERE,
            "API key a",
        )
        .unwrap();
        assert_eq!(g.origins.unwrap().to_string(), "https://app.example.com");

        let Err(Refusal::PolicyDenied(m)) = apply(
            &p,
            grant(Some(&["https://other.test"])),
            NOWHERE,
            "API key a",
        ) else {
            panic!("an empty intersection is refused");
        };
        assert!(
            m.contains("API key a (https://other.test)") && m.contains("policy geo"),
            "{m}"
        );
        // Only `null`: no origin a token can name.
        let only_null = policy(&[], &["null"], false);
        assert!(apply(&only_null, grant(None), NOWHERE, "x").is_err());
        // Every origin, every country: the grant as it was.
        let open = apply(&policy(&[], &[], true), grant(None), NOWHERE, "x").unwrap();
        assert!(open.origins.is_none() && !open.strict);
    }

    #[test]
    fn strict_tokens_hold_at_most_five_origins() {
        let six: Vec<String> = (0..6)
            .map(|i| format!("https://s{i}.example.com"))
            .collect();
        let six: Vec<&str> = six.iter().map(String::as_str).collect();
        let Err(Refusal::PolicyDenied(m)) =
            apply(&policy(&[], &six, true), grant(None), NOWHERE, "x")
        else {
            panic!("six strict origins are refused");
        };
        assert!(m.contains("at most 5"), "{m}");
        let g = apply(&policy(&[], &six, false), grant(None), NOWHERE, "x").unwrap();
        assert_eq!(g.origins.unwrap().len(), 6);
        let g = apply(
            &policy(&[], &six, true),
            grant(Some(&six[..2])),
            NOWHERE,
            "x",
        )
        .unwrap();
        assert_eq!(g.origins.unwrap().len(), 2);
    }

    #[test]
    fn countries_need_the_trusted_header() {
        let p = policy(&["DE", "FR"], &[], false);
        let at = |country| Whereabouts {
            header: Some("CloudFront-Viewer-Country"),
            country,
        };
        assert!(apply(&p, grant(None), at(Some("de")), "x").is_ok());
        let Err(Refusal::PolicyDenied(m)) = apply(&p, grant(None), at(Some("US")), "x") else {
            panic!("US is refused");
        };
        assert!(m.contains("country US") && m.contains("policy geo"), "{m}");
        let Err(Refusal::PolicyDenied(m)) = apply(&p, grant(None), at(None), "x") else {
            panic!("an unknown country is refused");
        };
        assert!(m.contains("no CloudFront-Viewer-Country header"), "{m}");
        let Err(Refusal::PolicyUnverifiable(m)) = apply(&p, grant(None), NOWHERE, "x") else {
            panic!("no header configured: the policy cannot be checked");
        };
        assert!(m.contains("policy.country_header"), "{m}");
    }
}
