//! Mint-time network policy: client networks and countries, decided before
//! anything else about a request.

use std::net::IpAddr;

use super::refusal::Refusal;
use crate::service::config::PolicyConfig;

/// The `[policy]` rules.
#[derive(Debug, Clone)]
pub(crate) struct NetworkRules {
    config: PolicyConfig,
}

impl NetworkRules {
    /// The rules of a (validated) `[policy]` section.
    pub(crate) fn new(config: PolicyConfig) -> Self {
        Self { config }
    }

    /// The header that carries the viewer's country, when one is trusted.
    pub(crate) fn country_header(&self) -> Option<&str> {
        self.config.country_header.as_deref()
    }

    /// Whether a client at `ip`, in `country` (from the trusted header, if
    /// any), may ask for tokens at all.
    pub(crate) fn check(&self, ip: IpAddr, country: Option<&str>) -> Result<(), Refusal> {
        let rules = &self.config;
        if let Some(net) = rules.deny_cidrs.iter().find(|n| n.contains(&ip)) {
            return Err(Refusal::PolicyDenied(format!(
                "client {ip} is in denied network {net} (policy.deny_cidrs)"
            )));
        }
        if !rules.allow_cidrs.is_empty() && !rules.allow_cidrs.iter().any(|n| n.contains(&ip)) {
            return Err(Refusal::PolicyDenied(format!(
                "client {ip} is not in an allowed network (policy.allow_cidrs)"
            )));
        }
        if rules.country_header.is_none() {
            return Ok(());
        }
        // What the header says goes into messages and the audit log: at most
        // a few printable characters of it.
        let country = country.map(|c| {
            c.trim()
                .chars()
                .take(8)
                .flat_map(char::to_uppercase)
                .flat_map(char::escape_debug)
                .collect::<String>()
        });
        if let Some(c) = &country
            && rules.deny_countries.contains(c)
        {
            return Err(Refusal::PolicyDenied(format!(
                "country {c} is denied (policy.deny_countries)"
            )));
        }
        if !rules.allow_countries.is_empty()
            && !country
                .as_ref()
                .is_some_and(|c| rules.allow_countries.contains(c))
        {
            return Err(Refusal::PolicyDenied(format!(
                "country {} is not allowed (policy.allow_countries)",
                country.as_deref().unwrap_or("unknown")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_then_countries() {
        let rules = NetworkRules::new(PolicyConfig {
            allow_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            deny_cidrs: vec!["10.1.0.0/16".parse().unwrap()],
            country_header: Some("x-country".into()),
            allow_countries: vec!["DE".into()],
            deny_countries: vec![],
        });
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(rules.check(ip("10.0.0.1"), Some("de")).is_ok());
        assert!(rules.check(ip("10.1.0.1"), Some("DE")).is_err());
        assert!(rules.check(ip("11.0.0.1"), Some("DE")).is_err());
        assert!(rules.check(ip("10.0.0.1"), Some("FR")).is_err());
        assert!(rules.check(ip("10.0.0.1"), None).is_err());
    }
}
