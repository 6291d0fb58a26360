//! A private key made ready to sign: the backend seam (AWS-LC or pure-Rust
//! p384) and what rotation needs to know of a key (its IVS fingerprint, its
//! key-pair ARN, the latest `exp` it signed). The key set holds these; the
//! signer reads them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::claims::ExpiresAt;
use crate::error::Error;
use crate::keys::{Fingerprint, PrivateKey, PublicKey};

/// Length of an ES384 JWS signature: raw `r || s`, 48 bytes each.
pub(crate) const SIGNATURE_LEN: usize = 96;

/// Which implementation of ECDSA P-384 signs.
///
/// Both write the same ES384 signature form (raw 96-byte `r || s`, RFC 7518
/// §3.4) and IVS accepts either; they differ in speed and in what they need
/// to build. Which variants exist depends on the crate features.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// AWS-LC through `aws-lc-rs`: the fastest here, and what the AWS SDK
    /// already links. Needs the `aws-lc-rs` feature (a default feature; add it
    /// back with `default-features = false`).
    #[cfg(feature = "aws-lc-rs")]
    AwsLcRs,
    /// RustCrypto's pure-Rust `p384`: for targets where C cannot be built
    /// (WASM, edge runtimes). Always available; deterministic (RFC 6979), so
    /// the same claims signed twice give the same token.
    RustCrypto,
}

impl Backend {
    /// The backend used unless another is asked for: AWS-LC when compiled in,
    /// RustCrypto otherwise.
    pub const DEFAULT: Backend = {
        #[cfg(feature = "aws-lc-rs")]
        {
            Backend::AwsLcRs
        }
        #[cfg(not(feature = "aws-lc-rs"))]
        {
            Backend::RustCrypto
        }
    };

    /// Every backend compiled into this build.
    pub const ALL: &'static [Backend] = &[
        #[cfg(feature = "aws-lc-rs")]
        Backend::AwsLcRs,
        Backend::RustCrypto,
    ];

    /// A short name for logs and errors: `aws-lc-rs` or `rust-crypto`.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "aws-lc-rs")]
            Self::AwsLcRs => "aws-lc-rs",
            Self::RustCrypto => "rust-crypto",
        }
    }
}

impl Default for Backend {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A private key made ready to sign, with what rotation needs to know of it:
/// its fingerprint, its IVS key-pair ARN once imported, and the latest `exp`
/// it has signed.
///
/// Make it once per key at start-up: preparing a key costs more than many
/// signatures. It holds its own copy of the secret, zeroed when dropped, so
/// the [`PrivateKey`] may be dropped after. `Send + Sync`; `Debug` shows the
/// fingerprint, backend and key-pair ARN, and `<redacted>` for the secret.
/// Hand it to a [`TokenSigner`](crate::TokenSigner) or a
/// [`KeySet`](crate::KeySet).
pub struct SigningKey {
    inner: BackendKey,
    public: PublicKey,
    ivs_key_pair_arn: Option<String>,
    max_exp_signed: AtomicU64,
}

/// The key in the form each backend wants. Both zero their key memory when
/// dropped: `p384::ecdsa::SigningKey` through `zeroize`, AWS-LC by cleansing
/// every allocation it frees.
enum BackendKey {
    #[cfg(feature = "aws-lc-rs")]
    AwsLc(aws_lc_rs::signature::EcdsaKeyPair),
    RustCrypto(p384::ecdsa::SigningKey),
}

impl SigningKey {
    /// Prepares a key for the default backend ([`Backend::DEFAULT`]).
    ///
    /// # Errors
    ///
    /// As [`with_backend`](Self::with_backend).
    pub fn new(key: &PrivateKey) -> Result<Self, Error> {
        Self::with_backend(key, Backend::DEFAULT)
    }

    /// Prepares a key for a given backend.
    ///
    /// # Errors
    ///
    /// With `Backend::AwsLcRs` only, and not for a key this crate read:
    /// [`Error::Internal`] if the key cannot be encoded as PKCS#8 for
    /// AWS-LC, [`Error::Signing`] if AWS-LC refuses it. The RustCrypto
    /// backend never fails.
    pub fn with_backend(key: &PrivateKey, backend: Backend) -> Result<Self, Error> {
        let inner = match backend {
            #[cfg(feature = "aws-lc-rs")]
            Backend::AwsLcRs => {
                let der = key.to_pkcs8_der()?;
                let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                    &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                    &der,
                )
                .map_err(|_| Error::Signing {
                    backend: backend.name(),
                })?;
                BackendKey::AwsLc(pair)
            }
            Backend::RustCrypto => BackendKey::RustCrypto(key.secret().into()),
        };
        Ok(Self {
            inner,
            public: key.public_key().clone(),
            ivs_key_pair_arn: None,
            max_exp_signed: AtomicU64::new(0),
        })
    }

    /// Records the ARN IVS gave this key when it was imported
    /// (`arn:aws:ivs:REGION:ACCOUNT:playback-key/ID`), for logs and for the
    /// rotation that deletes the key pair later. Not checked, and not written
    /// into tokens: IVS documents no `kid` header.
    pub fn with_ivs_key_pair_arn(mut self, arn: impl Into<String>) -> Self {
        self.ivs_key_pair_arn = Some(arn.into());
        self
    }

    /// The backend that signs with this key.
    pub fn backend(&self) -> Backend {
        match self.inner {
            #[cfg(feature = "aws-lc-rs")]
            BackendKey::AwsLc(_) => Backend::AwsLcRs,
            BackendKey::RustCrypto(_) => Backend::RustCrypto,
        }
    }

    /// The public half, to import into IVS or to verify with.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The IVS fingerprint of the public half.
    pub fn fingerprint(&self) -> &Fingerprint {
        self.public.fingerprint()
    }

    /// The IVS key-pair ARN, if one was recorded with
    /// [`with_ivs_key_pair_arn`](Self::with_ivs_key_pair_arn).
    pub fn ivs_key_pair_arn(&self) -> Option<&str> {
        self.ivs_key_pair_arn.as_deref()
    }

    /// The latest `exp` of any token this key has signed in this process
    /// (`None` before the first): the key pair may be deleted from IVS only
    /// after it, plus a skew margin, as deleting it makes every token it
    /// signed fail (private-channels-delete-keys). Counted in memory only:
    /// it starts again at `None` after a restart and covers no other
    /// replica.
    pub fn max_exp_signed(&self) -> Option<ExpiresAt> {
        match self.max_exp_signed.load(Ordering::Relaxed) {
            0 => None,
            s => ExpiresAt::from_unix_seconds(s).ok(),
        }
    }

    /// Records that a token valid until `exp` (Unix seconds) was signed.
    pub(crate) fn note_signed(&self, exp: u64) {
        self.max_exp_signed.fetch_max(exp, Ordering::Relaxed);
    }

    /// Signs `message`, giving the raw 96-byte `r || s`.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], Error> {
        let failed = || Error::Signing {
            backend: self.backend().name(),
        };
        let mut out = [0u8; SIGNATURE_LEN];
        match &self.inner {
            #[cfg(feature = "aws-lc-rs")]
            BackendKey::AwsLc(pair) => {
                // aws-lc-rs ignores the rng argument: AWS-LC draws its own nonce.
                let sig = pair
                    .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                    .map_err(|_| failed())?;
                let bytes = sig.as_ref();
                if bytes.len() != SIGNATURE_LEN {
                    return Err(failed());
                }
                out.copy_from_slice(bytes);
            }
            BackendKey::RustCrypto(key) => {
                use p384::ecdsa::signature::Signer as _;
                let sig: p384::ecdsa::Signature = key.try_sign(message).map_err(|_| failed())?;
                out.copy_from_slice(&sig.to_bytes());
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", self.fingerprint())
            .field("backend", &self.backend())
            .field("ivs_key_pair_arn", &self.ivs_key_pair_arn)
            .field("secret", &"<redacted>")
            .finish()
    }
}
