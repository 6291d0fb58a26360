//! `ChannelArn`: the channel a token is for.

use std::fmt;
use std::str::FromStr;

use super::{CHANNEL_ARN_MAX_LEN, names};
use crate::error::ClaimError;

/// An IVS channel ARN, the `aws:channel-arn` claim:
/// `arn:aws:ivs:REGION:ACCOUNT:channel/ID`.
///
/// Parsing enforces the IVS service model's pattern for a channel ARN,
/// `arn:aws:ivs:[a-z0-9-]+:[0-9]+:channel/[a-zA-Z0-9-]+`, over the whole
/// string, and its length of 1 to 128 characters (all ASCII, so also bytes)
/// (`docs/ivs-facts.md` §1, §4). IVS needs the claim to know which channel
/// the token plays; one key signs for every channel of its account and
/// region, so the ARN is what keeps a token to one channel.
///
/// ```
/// use ivs_playback_auth::ChannelArn;
///
/// # fn main() -> Result<(), ivs_playback_auth::ClaimError> {
/// let arn: ChannelArn = "arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234".parse()?;
/// assert_eq!(arn.region(), "us-west-2");
/// assert_eq!(arn.channel_id(), "abcdEFGH1234");
/// // A playback-key ARN is not a channel:
/// assert!(ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:playback-key/abcd").is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelArn(pub(super) Box<str>);

impl ChannelArn {
    /// Parses a channel ARN, as it is: no trimming, no case folding.
    ///
    /// # Errors
    ///
    /// [`ClaimError`] for `aws:channel-arn` when the text is empty or longer
    /// than 128 characters, does not start with `arn:aws:ivs:`, names
    /// another resource type than `channel/` (a playback-key or stream-key
    /// ARN), or has a region, account or channel id off the pattern.
    pub fn parse(arn: &str) -> Result<Self, ClaimError> {
        let err = |rule: String| ClaimError::new(names::CHANNEL_ARN, rule);
        if arn.is_empty() || arn.len() > CHANNEL_ARN_MAX_LEN {
            return Err(err(format!(
                "must be 1 to {CHANNEL_ARN_MAX_LEN} characters, got {}",
                arn.len()
            )));
        }
        let shape = "must look like arn:aws:ivs:REGION:ACCOUNT:channel/ID";
        let rest = arn
            .strip_prefix("arn:aws:ivs:")
            .ok_or_else(|| err(format!("{shape} (it does not start with `arn:aws:ivs:`)")))?;
        let (region, rest) = rest.split_once(':').ok_or_else(|| err(shape.to_owned()))?;
        let (account, rest) = rest.split_once(':').ok_or_else(|| err(shape.to_owned()))?;
        let id = rest.strip_prefix("channel/").ok_or_else(|| {
            err(format!(
                "{shape} (the resource is not `channel/...`; a playback-key or stream-key ARN is not a channel)"
            ))
        })?;
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err(format!(
                "{shape}: region `{region}` must be lowercase letters, digits and `-`"
            )));
        }
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(format!("{shape}: account `{account}` must be digits")));
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(err(format!(
                "{shape}: channel id `{id}` must be letters, digits and `-`"
            )));
        }
        Ok(Self(arn.into()))
    }

    /// The ARN as text, as it goes into the token.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parts(&self) -> (&str, &str, &str) {
        // Parsing guaranteed the shape arn:aws:ivs:REGION:ACCOUNT:channel/ID.
        let rest = &self.0["arn:aws:ivs:".len()..];
        let (region, rest) = rest.split_once(':').unwrap_or_default();
        let (account, rest) = rest.split_once(':').unwrap_or_default();
        (
            region,
            account,
            rest.strip_prefix("channel/").unwrap_or(rest),
        )
    }

    /// The AWS region, such as `us-west-2`. Never panics (nor do the other
    /// accessors): parsing guaranteed the shape.
    pub fn region(&self) -> &str {
        self.parts().0
    }

    /// The AWS account id (digits; 12 for AWS accounts, though the pattern
    /// takes any number).
    pub fn account_id(&self) -> &str {
        self.parts().1
    }

    /// The channel's resource id, the part after `channel/`.
    pub fn channel_id(&self) -> &str {
        self.parts().2
    }
}

/// Same as [`ChannelArn::parse`].
impl FromStr for ChannelArn {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ChannelArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ChannelArn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
