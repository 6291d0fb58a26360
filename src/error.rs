//! The signer's errors: one enum for the library, with the claim and key
//! problems as their own types so that callers can match on what went wrong.
//!
//! Messages are written for the person who has to fix the input (they name
//! the claim or the file and the rule), and never contain key material.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the signer library.
///
/// Functions that can only fail one way return the narrower type instead
/// ([`ClaimError`] from the claim parsers, [`KeyError`] from the key
/// parsers); both convert into `Error` with `?`.
///
/// ```
/// use ivs_playback_auth::{Error, KeyErrorKind, PrivateKey};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// match PrivateKey::read_file("/run/secrets/playback-key.pem") {
///     Ok(key) => println!("signing with {}", key.fingerprint()),
///     Err(Error::KeyFile { path, source }) => {
///         eprintln!("cannot read {}: {source}", path.display());
///     }
///     Err(Error::Key(e)) if e.kind() == KeyErrorKind::Encrypted => {
///         eprintln!("{e}"); // says how to decrypt it
///     }
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A claim, or a combination of claims, breaks a rule of IVS; the error
    /// names the claim and the rule. From
    /// `PlaybackClaimsBuilder::build`
    /// and `TokenSigner::sign`.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Key material could not be read or is not a P-384 key; from the key
    /// file readers (the other key parsers return [`KeyError`] itself).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A key file could not be read or written: the operating system's
    /// error, with the path. On a write, the path may be the temporary file
    /// next to the target (keys are written there first, then linked).
    #[error("{}: {source}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A key file already exists; keys are never overwritten, so that a
    /// key imported into IVS cannot be lost by writing another over it.
    #[error("{}: already exists; refusing to overwrite a key", path.display())]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
    /// The secret for pseudonymous viewer ids is unusable (shorter than
    /// `ViewerIdHasher::MIN_SECRET_LEN`
    /// bytes); the text says why.
    #[error("viewer-id secret: {0}")]
    ViewerIdSecret(&'static str),
    /// The operating system's random number generator failed, while
    /// `PrivateKey::generate` drew a key,
    /// `PlaybackClaimsBuilder::single_use`
    /// drew a UUID, or a key file's temporary name was drawn.
    #[error("the system random number generator failed")]
    Random,
    /// A step that cannot fail for valid input failed anyway (an encoder of
    /// the key or the claims); the text names the step. A bug: please report
    /// it.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The signing backend refused the key or failed to sign (it should not:
    /// the key was checked when it was loaded).
    #[error("the {backend} signing backend failed")]
    Signing {
        /// The backend's name, as `Backend::name`
        /// gives it.
        backend: &'static str,
    },
}

/// A claim that IVS would reject, or a combination of claims it would reject.
///
/// [`claim`](Self::claim) is the claim's name on the wire (one of
/// `claims::names`, for example `aws:viewer-id`) and
/// [`rule`](Self::rule) states the rule it breaks, in words meant for
/// people, not for matching. `Display` is `claim: rule`.
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

    /// The wire name of the claim at fault, such as `aws:viewer-id` or `exp`
    /// (a constant of `claims::names`), or
    /// `payload` when a verified token's payload is not a JSON object.
    pub fn claim(&self) -> &'static str {
        self.claim
    }

    /// The rule that was broken, in words, with the value at fault where it
    /// helps. Not stable: match on [`claim`](Self::claim), not on this.
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
///
/// [`kind`](Self::kind) is the reason to branch on; `Display` is a sentence
/// for the operator that says how to fix the file (for example the
/// `openssl` command that decrypts it). It never contains key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    kind: KeyErrorKind,
    detail: Cow<'static, str>,
}

/// The broad reason a key was refused, for callers that branch on it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyErrorKind {
    /// Not PEM or DER we can read, or a PEM block with a broken body; also a
    /// malformed `Fingerprint` string.
    Malformed,
    /// An elliptic-curve key on a curve other than P-384 (secp384r1), the
    /// only curve IVS playback keys use (private-channels-create-key).
    WrongCurve,
    /// Not an elliptic-curve key at all (RSA, Ed25519, ...): IVS playback
    /// keys are ECDSA P-384.
    NotEllipticCurve,
    /// A public key where a private key was expected (a `BEGIN PUBLIC KEY`
    /// file given to a private-key reader).
    PublicKeyGiven,
    /// A private key where a public key was expected (by
    /// `PublicKey::from_pem`; the file reader
    /// `PublicKey::read_file` takes the public
    /// half instead).
    PrivateKeyGiven,
    /// An encrypted private key (`BEGIN ENCRYPTED PRIVATE KEY`, or a legacy
    /// `Proc-Type: 4,ENCRYPTED` header); decrypt it first, the message says
    /// how.
    Encrypted,
}

impl KeyError {
    pub(crate) fn new(kind: KeyErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The broad reason, to branch on.
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
