//! Lists of origins as configuration and requests write them: `*` alone
//! means every origin. The one place such lists are read.

use crate::{AllowedOrigins, ClaimError, Origin};

/// Origins a rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginList {
    /// `*`: every origin.
    Any,
    /// These origins (`https://*.example.com` patterns included).
    Only(Vec<Origin>),
}

impl OriginList {
    /// A configured list: `*` among the entries allows every origin; every
    /// other entry must parse. The error carries the index of the entry.
    pub(crate) fn from_config(list: &[String]) -> Result<Self, (usize, ClaimError)> {
        if list.iter().any(|o| o == "*") {
            return Ok(Self::Any);
        }
        Self::each(list)
    }

    /// A caller's list: `["*"]` alone asks for every origin; otherwise every
    /// entry must be an origin (a `*` beside others is refused by
    /// [`Origin::parse`], which says why).
    pub(crate) fn from_request(list: &[String]) -> Result<Self, (usize, ClaimError)> {
        if let [only] = list
            && only == "*"
        {
            return Ok(Self::Any);
        }
        Self::each(list)
    }

    fn each(list: &[String]) -> Result<Self, (usize, ClaimError)> {
        Self::origins(list).map(Self::Only)
    }

    /// Every entry an origin (no `*` at all): what a caller without rights
    /// over origins may ask for, a subset of its configured origins.
    pub(crate) fn origins(list: &[String]) -> Result<Vec<Origin>, (usize, ClaimError)> {
        list.iter()
            .enumerate()
            .map(|(i, o)| Origin::parse(o).map_err(|e| (i, e)))
            .collect()
    }

    /// Whether an origin is in the list.
    pub(crate) fn allows(&self, origin: &Origin) -> bool {
        match self {
            Self::Any => true,
            Self::Only(list) => list.contains(origin),
        }
    }

    /// Whether the list allows every origin.
    pub(crate) fn is_any(&self) -> bool {
        matches!(self, Self::Any)
    }

    /// The `aws:access-control-allow-origin` claim value, or `None` for an
    /// empty list (the claim is then left out).
    pub(crate) fn to_claim(&self) -> Option<AllowedOrigins> {
        match self {
            Self::Any => Some(AllowedOrigins::any()),
            Self::Only(list) if list.is_empty() => None,
            Self::Only(list) => AllowedOrigins::from_origins(list.iter().cloned()).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_star_means_any_in_config_and_only_alone_in_requests() {
        let mixed = strings(&["https://a.example", "*"]);
        assert_eq!(OriginList::from_config(&mixed).unwrap(), OriginList::Any);
        assert_eq!(OriginList::from_request(&mixed).unwrap_err().0, 1);
        assert_eq!(
            OriginList::from_request(&strings(&["*"])).unwrap(),
            OriginList::Any
        );
        let bad = strings(&["https://a.example", "example.com"]);
        assert_eq!(OriginList::from_config(&bad).unwrap_err().0, 1);
        assert!(OriginList::from_config(&[]).unwrap().to_claim().is_none());
        let one = OriginList::from_config(&strings(&["https://a.example"])).unwrap();
        assert!(one.allows(&Origin::parse("https://a.example").unwrap()));
        assert!(!one.allows(&Origin::parse("https://b.example").unwrap()));
        assert!(!one.is_any());
    }
}
