//! `MaximumResolution`: the `aws:maximum-resolution` claim.

use std::fmt;
use std::str::FromStr;

use serde::ser::{Serialize, Serializer};

use super::names;
use crate::error::ClaimError;

/// The `aws:maximum-resolution` claim: the highest rendition the viewer
/// gets. IVS documents exactly three values, `SD`, `HD` and `FULL_HD`
/// (private-channels-generate-tokens); leave the claim out for no cap.
///
/// Parsing (`FromStr`, and serde's `Deserialize`) takes only those three
/// spellings, upper case, as IVS writes them. `Serialize` writes the wire
/// value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaximumResolution {
    /// `SD`: standard definition.
    Sd,
    /// `HD`: high definition.
    Hd,
    /// `FULL_HD`: full high definition.
    FullHd,
}

impl MaximumResolution {
    /// The wire value: `SD`, `HD` or `FULL_HD`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sd => "SD",
            Self::Hd => "HD",
            Self::FullHd => "FULL_HD",
        }
    }
}

/// Parses the wire value.
///
/// # Errors
///
/// [`ClaimError`] for `aws:maximum-resolution` for anything but `SD`, `HD`
/// or `FULL_HD` exactly (`full_hd` and `4K` are refused).
impl FromStr for MaximumResolution {
    type Err = ClaimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "SD" => Ok(Self::Sd),
            "HD" => Ok(Self::Hd),
            "FULL_HD" => Ok(Self::FullHd),
            _ => Err(ClaimError::new(
                names::MAXIMUM_RESOLUTION,
                format!("must be SD, HD or FULL_HD, got `{s}`"),
            )),
        }
    }
}

impl Serialize for MaximumResolution {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MaximumResolution {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MaximumResolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
