//! The signer's errors: one enum for the library, with the claim and key
//! problems as their own types so that callers can match on what went wrong.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the signer library.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A claim breaks a rule of IVS; the error names the claim and the rule.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Key material could not be read or is not a P-384 key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A key file could not be read or written.
    #[error("{}: {source}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A key file already exists; keys are never overwritten.
    #[error("{}: already exists; refusing to overwrite a key", path.display())]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
    /// The secret for pseudonymous viewer ids is unusable.
    #[error("viewer-id secret: {0}")]
    ViewerIdSecret(&'static str),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A step that cannot fail for valid input failed anyway (an encoder of
    /// the key or the claims).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The signing backend failed (it should not: the key was checked when it
    /// was loaded).
    #[error("the {backend} signing backend failed")]
    Signing {
        /// The backend's name.
        backend: &'static str,
    },
}

/// A claim that IVS would reject, or a combination of claims it would reject.
///
/// `claim` is the claim's name on the wire (for example `aws:viewer-id`) and
/// the message states the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimError {
    claim: &'static str,
    rule: Cow<'static, str>,
}

impl ClaimError {
    pub(crate) fn new(claim: &'static str, rule: impl Into<Cow<'static, str>>) -> Self {
        Self {
            claim,
            rule: rule.into(),
        }
    }

    /// The wire name of the claim at fault, such as `aws:viewer-id` or `exp`.
    pub fn claim(&self) -> &'static str {
        self.claim
    }

    /// The rule that was broken, in words.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.claim, self.rule)
    }
}

impl std::error::Error for ClaimError {}

/// Why key material was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    kind: KeyErrorKind,
    detail: Cow<'static, str>,
}

/// The broad reason a key was refused, for callers that branch on it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyErrorKind {
    /// Not PEM or DER we can read, or a PEM block with a broken body.
    Malformed,
    /// An elliptic-curve key on a curve other than P-384 (secp384r1).
    WrongCurve,
    /// Not an elliptic-curve key at all (RSA, Ed25519, ...).
    NotEllipticCurve,
    /// A public key where a private key was expected.
    PublicKeyGiven,
    /// A private key where a public key was expected.
    PrivateKeyGiven,
    /// An encrypted private key; decrypt it first.
    Encrypted,
}

impl KeyError {
    pub(crate) fn new(kind: KeyErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The broad reason.
    pub fn kind(&self) -> KeyErrorKind {
        self.kind
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for KeyError {}
