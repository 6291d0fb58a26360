//! What a channel is to the service, shared by the mint room (which caches
//! channels) and the control room (whose IVS client lists them): IVS's facts
//! about a channel, and a caller's reference to one, parsed once.

use std::fmt;

use crate::ChannelArn;

/// What IVS says of a channel, as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Its ARN.
    pub arn: ChannelArn,
    /// Its name (may be empty).
    pub name: String,
    /// Whether it is private (`authorized`).
    pub authorized: bool,
    /// Where players fetch it.
    pub playback_url: String,
    /// The playback restriction policy it names, as IVS held it when the
    /// channel was read (`None`: none attached, or the service was told not
    /// to read policies). IVS ignores it on a private channel; the mint
    /// applies it.
    pub restriction: Option<RestrictionPolicy>,
    /// Why the policy a private channel names could not be read (IVS
    /// refused or failed the read). The mint refuses this channel's tokens
    /// until a later read succeeds: a policy it cannot see is one it cannot
    /// apply, and one unreadable policy must not take every other channel
    /// down with it.
    pub restriction_unreadable: Option<String>,
}

/// A playback restriction policy as IVS describes it. IVS's empty lists
/// mean "every country" and "every origin".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictionPolicy {
    /// Its ARN.
    pub arn: String,
    /// Its name (may be empty).
    pub name: String,
    /// ISO 3166-1 alpha-2 codes; empty: every country.
    pub allowed_countries: Vec<String>,
    /// `Origin` header values; empty: every origin.
    pub allowed_origins: Vec<String>,
    /// `enableStrictOriginEnforcement`.
    pub strict_origin_enforcement: bool,
}

impl RestrictionPolicy {
    /// How messages name it: its name and ARN, or the ARN alone.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("playback restriction policy {}", self.arn)
        } else {
            format!("playback restriction policy {} ({})", self.name, self.arn)
        }
    }
}

/// Longest channel name IVS accepts (the model's `ChannelName` pattern:
/// `^[a-zA-Z0-9-_]{0,128}$`).
pub(crate) const MAX_CHANNEL_NAME: usize = 128;

/// A channel as a caller names it: by ARN or by IVS channel name. Anything
/// else is refused before a cache or IVS sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChannelRef {
    /// `arn:aws:ivs:REGION:ACCOUNT:channel/ID`.
    Arn(ChannelArn),
    /// A name: letters, digits, `-` and `_`, 1 to 128.
    Name(String),
}

impl ChannelRef {
    /// Parses a reference; the error says what a reference must look like.
    pub fn parse(reference: &str) -> Result<Self, String> {
        if reference.starts_with("arn:") {
            return ChannelArn::parse(reference)
                .map(Self::Arn)
                .map_err(|e| e.to_string());
        }
        let name_ok = !reference.is_empty()
            && reference.len() <= MAX_CHANNEL_NAME
            && reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if name_ok {
            Ok(Self::Name(reference.to_owned()))
        } else {
            Err(format!(
                "must be a channel ARN or a channel name (letters, digits, `-` and `_`, at most {MAX_CHANNEL_NAME})"
            ))
        }
    }

    /// The reference as the caller wrote it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Arn(arn) => arn.as_str(),
            Self::Name(name) => name,
        }
    }
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_arns_or_ivs_channel_names() {
        let arn = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl";
        assert!(matches!(ChannelRef::parse(arn), Ok(ChannelRef::Arn(_))));
        assert_eq!(
            ChannelRef::parse("team-a_1").unwrap(),
            ChannelRef::Name("team-a_1".into())
        );
        for bad in [
            "",
            "demo\n",
            "../x",
            "arn:aws:s3:::bucket",
            &"x".repeat(129),
        ] {
            assert!(ChannelRef::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ChannelRef::parse(arn).unwrap().to_string(), arn);
    }
}
