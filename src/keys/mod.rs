//! P-384 keys: read (SEC1 and PKCS#8, PEM and DER, every layout OpenSSL
//! reads), generate, write, and the IVS fingerprint.
//!
//! Reading is in two layers: `pem` finds and decodes the PEM block as
//! OpenSSL does (and explains the layouts OpenSSL refuses), `asn1` reads the
//! DER structures, named or explicit curve parameters included.
//!
//! Private keys are held in `p384::SecretKey`, which zeroes its memory when
//! dropped; their `Debug` shows only the fingerprint. The public key, as
//! SubjectPublicKeyInfo PEM, is what `ImportPlaybackKeyPair` takes.
//!
//! IVS's rules (private-channels-create-key; `docs/ivs-facts.md` §2): a
//! playback key pair is ECDSA P-384 (secp384r1); the docs generate it with
//! `openssl ecparam -name secp384r1 -genkey -noout` (SEC1) and import the
//! public half as `BEGIN PUBLIC KEY` PEM.

use std::fmt;
use std::fs;
use std::path::Path;
use std::str::FromStr;

use md5::{Digest as _, Md5};
use p384::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use zeroize::Zeroizing;

use self::asn1::PrivateDer;
use crate::error::{Error, KeyError, KeyErrorKind};
use crate::fsutil::write_new_file;

mod asn1;
mod pem;

/// A P-384 (secp384r1) private key, the secret half of an IVS playback key
/// pair.
///
/// Read it once at start-up ([`read_file`](Self::read_file),
/// [`from_pem`](Self::from_pem)) and make a [`SigningKey`](crate::SigningKey)
/// of it. The secret is zeroed when the value is dropped; `Debug` shows the
/// fingerprint and `<redacted>` for the secret. Not `Clone`, so that copies
/// of the secret do not multiply.
pub struct PrivateKey {
    secret: p384::SecretKey,
    public: PublicKey,
}

impl PrivateKey {
    /// A new random key from the operating system's generator. Save it with
    /// [`write_pem_file`](Self::write_pem_file) and import
    /// [`public_key`](Self::public_key) into IVS before signing with it.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system's random number generator
    /// fails.
    pub fn generate() -> Result<Self, Error> {
        use p384::elliptic_curve::Generate as _;
        let secret = p384::SecretKey::try_generate().map_err(|_| Error::Random)?;
        Ok(Self::from_secret(secret))
    }

    fn from_secret(secret: p384::SecretKey) -> Self {
        let public = PublicKey::from_p384(secret.public_key());
        Self { secret, public }
    }

    /// Reads a PEM private key: SEC1 (`BEGIN EC PRIVATE KEY`, what
    /// `openssl ecparam -genkey` writes, with or without its `EC PARAMETERS`
    /// block) or PKCS#8 (`BEGIN PRIVATE KEY`), in any layout OpenSSL reads
    /// (a BOM, CRLF line ends, text around the block, re-wrapped base64, ...),
    /// the curve named or given explicitly. Layouts OpenSSL refuses (literal
    /// `\n` sequences, line breaks turned into spaces, an indented block) are
    /// refused with the fix in the message.
    ///
    /// # Errors
    ///
    /// [`KeyError`] with its [`KeyErrorKind`]: `Malformed` when the text
    /// holds no PEM block, a broken one (the message says what is wrong and
    /// how to fix it), or a block that is not a key; `Encrypted` for an
    /// encrypted key; `PublicKeyGiven` for a `BEGIN PUBLIC KEY` block;
    /// `NotEllipticCurve` for an RSA, DSA, Ed25519 or OpenSSH key;
    /// `WrongCurve` for an EC key on another curve than P-384.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let block = pem::decode(pem, "a private key")?;
        match block.label.as_str() {
            "EC PRIVATE KEY" => Self::from_sec1_der(&block.der),
            "PRIVATE KEY" => Self::from_pkcs8_der(&block.der),
            label => Err(wrong_label(label, "a private key")),
        }
    }

    /// Reads a DER private key, SEC1 (`ECPrivateKey`) or PKCS#8
    /// (`PrivateKeyInfo`).
    ///
    /// # Errors
    ///
    /// [`KeyError`] with its [`KeyErrorKind`]: `Malformed` when the bytes are
    /// neither structure (or the stored public point is not the key's);
    /// `Encrypted` for an `EncryptedPrivateKeyInfo`; `PublicKeyGiven` for a
    /// SubjectPublicKeyInfo; `NotEllipticCurve` for a PKCS#8 key of another
    /// algorithm; `WrongCurve` for an EC key on another curve than P-384.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        if let PrivateDer::Key(key) = asn1::pkcs8_private(der)? {
            return Ok(Self::from_secret(key));
        }
        if let PrivateDer::Key(key) = asn1::sec1_private(der, None)? {
            return Ok(Self::from_secret(key));
        }
        if asn1::is_spki_shaped(der) {
            return Err(KeyError::new(
                KeyErrorKind::PublicKeyGiven,
                "this is a public key; a private key is needed",
            ));
        }
        Err(KeyError::new(
            KeyErrorKind::Malformed,
            "not a PEM or DER private key (SEC1 or PKCS#8)",
        ))
    }

    /// Reads PEM or DER, whichever the bytes are: text is read as PEM,
    /// binary as DER.
    ///
    /// # Errors
    ///
    /// As [`from_pem`](Self::from_pem) or [`from_der`](Self::from_der).
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, KeyError> {
        if let Some(text) = as_pem_text(bytes) {
            return Self::from_pem(text);
        }
        Self::from_der(bytes)
    }

    /// Reads a key file (PEM or DER). The bytes read are zeroed once parsed.
    ///
    /// # Errors
    ///
    /// [`Error::KeyFile`] when the file cannot be read; [`Error::Key`] when
    /// its content is refused, as [`from_pem_or_der`](Self::from_pem_or_der)
    /// says, with the path at the start of the message.
    pub fn read_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(fs::read(path).map_err(|source| Error::KeyFile {
            path: path.to_owned(),
            source,
        })?);
        Self::from_pem_or_der(&bytes)
            .map_err(|e| KeyError::new(e.kind(), format!("{}: {e}", path.display())).into())
    }

    fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        match asn1::sec1_private(der, None)? {
            PrivateDer::Key(key) => Ok(Self::from_secret(key)),
            PrivateDer::NotPrivateKey => Err(KeyError::new(
                KeyErrorKind::Malformed,
                "the `EC PRIVATE KEY` block does not hold a SEC1 EC private key",
            )),
        }
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        match asn1::pkcs8_private(der)? {
            PrivateDer::Key(key) => Ok(Self::from_secret(key)),
            PrivateDer::NotPrivateKey => Err(KeyError::new(
                KeyErrorKind::Malformed,
                "the `PRIVATE KEY` block does not hold a PKCS#8 private key",
            )),
        }
    }

    /// The public half: what IVS imports, and what a
    /// [`Verifier`](crate::Verifier) checks with.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The IVS fingerprint of the public half, as IVS shows it for the
    /// imported key pair.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.public.fingerprint
    }

    /// PKCS#8 DER (`PrivateKeyInfo`, named curve), zeroed when dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] if the encoder fails, which it does not for a
    /// valid key.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let doc = self
            .secret
            .to_pkcs8_der()
            .map_err(|_| Error::Internal("PKCS#8 encoding of a private key"))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// PKCS#8 PEM (`BEGIN PRIVATE KEY`, LF line ends), zeroed when dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] if the encoder fails, which it does not for a
    /// valid key.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        self.secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::Internal("PKCS#8 encoding of a private key"))
    }

    /// Writes the key as PKCS#8 PEM to a new file readable only by its owner
    /// (mode 0600 on Unix; other systems get their default permissions). An
    /// existing file is never overwritten; the file appears complete or not
    /// at all: it is written to a temporary file in the same directory, then
    /// hard-linked to `path`, so the file system must support hard links.
    ///
    /// # Errors
    ///
    /// [`Error::KeyFileExists`] when `path` exists; [`Error::KeyFile`] when
    /// the directory cannot be written, or does not support hard links, or
    /// the system random number generator fails while naming the temporary
    /// file. Never panics.
    pub fn write_pem_file(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let pem = self.to_pkcs8_pem()?;
        write_new_file(path.as_ref(), pem.as_bytes(), 0o600)
    }

    pub(crate) fn secret(&self) -> &p384::SecretKey {
        &self.secret
    }
}

/// The secret scalar lives in `p384::SecretKey`, which zeroes it on drop.
impl zeroize::ZeroizeOnDrop for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("fingerprint", &self.public.fingerprint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A P-384 public key, the half of a playback key pair that IVS imports.
///
/// Kept in canonical form (named curve, uncompressed point), which is what
/// the [`Fingerprint`] is computed from, so the same key read from
/// differently encoded files has one fingerprint. `Debug` shows the
/// fingerprint only.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: p384::PublicKey,
    spki_der: Box<[u8]>,
    fingerprint: Fingerprint,
}

impl PublicKey {
    fn from_p384(key: p384::PublicKey) -> Self {
        // Encoding a valid point as SPKI cannot fail; an empty DER would only
        // give a wrong fingerprint, never a wrong signature.
        let spki_der: Box<[u8]> = key
            .to_public_key_der()
            .map(|doc| doc.as_bytes().into())
            .unwrap_or_default();
        let fingerprint = Fingerprint::of_spki_der(&spki_der);
        Self {
            key,
            spki_der,
            fingerprint,
        }
    }

    /// Reads a SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), the form IVS
    /// imports, in any layout OpenSSL reads; the curve may be named or
    /// explicit and the point compressed. The key is kept (and fingerprinted)
    /// in its canonical form: named curve, uncompressed point.
    ///
    /// # Errors
    ///
    /// [`KeyError`] with its [`KeyErrorKind`]: `Malformed` when the text
    /// holds no PEM block, a broken one, or a block that is not a key;
    /// `PrivateKeyGiven` for a private key block (use
    /// [`PrivateKey::public_key`], or [`read_file`](Self::read_file));
    /// `NotEllipticCurve` for an RSA, DSA or OpenSSH key; `WrongCurve` for
    /// an EC key on another curve than P-384.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let block = pem::decode(pem, "a public key")?;
        match block.label.as_str() {
            "PUBLIC KEY" => Self::from_der(&block.der),
            "EC PRIVATE KEY" | "PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => Err(KeyError::new(
                KeyErrorKind::PrivateKeyGiven,
                "this is a private key; a public key (BEGIN PUBLIC KEY) is needed",
            )),
            label => Err(wrong_label(label, "a public key")),
        }
    }

    /// Reads a SubjectPublicKeyInfo DER.
    ///
    /// # Errors
    ///
    /// [`KeyError`] with its [`KeyErrorKind`]: `Malformed` when the bytes are
    /// not a SubjectPublicKeyInfo or the point is not on P-384;
    /// `NotEllipticCurve` for another algorithm; `WrongCurve` for another
    /// curve.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        match asn1::spki(der)? {
            Some(key) => Ok(Self::from_p384(key)),
            None => Err(KeyError::new(
                KeyErrorKind::Malformed,
                "not a SubjectPublicKeyInfo (BEGIN PUBLIC KEY) public key",
            )),
        }
    }

    /// Reads PEM or DER, whichever the bytes are: text is read as PEM,
    /// binary as DER.
    ///
    /// # Errors
    ///
    /// As [`from_pem`](Self::from_pem) or [`from_der`](Self::from_der).
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, KeyError> {
        match as_pem_text(bytes) {
            Some(text) => Self::from_pem(text),
            None => Self::from_der(bytes),
        }
    }

    /// Reads a public key file (PEM or DER); a private key file gives its
    /// public half.
    ///
    /// # Errors
    ///
    /// [`Error::KeyFile`] when the file cannot be read; [`Error::Key`] when
    /// its content is neither a public nor a private P-384 key, with the
    /// path at the start of the message and the reason of the reader that
    /// came closest (a P-256 private key is refused for its curve).
    pub fn read_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(fs::read(path).map_err(|source| Error::KeyFile {
            path: path.to_owned(),
            source,
        })?);
        let with_path = |e: KeyError| KeyError::new(e.kind(), format!("{}: {e}", path.display()));
        match Self::from_pem_or_der(&bytes) {
            Ok(key) => Ok(key),
            // A private key file: its public half, or why the private key is
            // refused (a P-256 key is refused for its curve, not its kind).
            Err(e) if e.kind() == KeyErrorKind::PrivateKeyGiven => {
                PrivateKey::from_pem_or_der(&bytes)
                    .map(|private| private.public_key().clone())
                    .map_err(|e| with_path(e).into())
            }
            Err(e) if e.kind() == KeyErrorKind::Malformed => {
                match PrivateKey::from_pem_or_der(&bytes) {
                    Ok(private) => Ok(private.public_key().clone()),
                    Err(p) if p.kind() != KeyErrorKind::Malformed => Err(with_path(p).into()),
                    Err(_) => Err(with_path(e).into()),
                }
            }
            Err(e) => Err(with_path(e).into()),
        }
    }

    /// SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`): what
    /// `ImportPlaybackKeyPair` takes as `publicKeyMaterial`
    /// (private-channels-create-key). LF line ends.
    pub fn to_pem(&self) -> String {
        pem_rfc7468_encode("PUBLIC KEY", &self.spki_der)
    }

    /// SubjectPublicKeyInfo DER (120 bytes for P-384 with a named curve),
    /// the bytes the [`Fingerprint`] is the MD5 of.
    pub fn to_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The uncompressed SEC1 point (`04 || x || y`), 97 bytes.
    pub fn to_sec1_bytes(&self) -> Box<[u8]> {
        self.key.to_sec1_bytes()
    }

    /// The IVS fingerprint, as IVS returns it for the imported key pair.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Writes SubjectPublicKeyInfo PEM to a new file (mode 0644 on Unix); an
    /// existing file is never overwritten, and the file appears complete or
    /// not at all (as [`PrivateKey::write_pem_file`] does it).
    ///
    /// # Errors
    ///
    /// [`Error::KeyFileExists`] when `path` exists; [`Error::KeyFile`] when
    /// the directory cannot be written, or does not support hard links, or
    /// the system random number generator fails while naming the temporary
    /// file. Never panics.
    pub fn write_pem_file(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        write_new_file(path.as_ref(), self.to_pem().as_bytes(), 0o644)
    }

    #[cfg(not(feature = "aws-lc-rs"))]
    pub(crate) fn p384(&self) -> &p384::PublicKey {
        &self.key
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// The fingerprint IVS shows for a playback key pair: MD5 of the DER
/// SubjectPublicKeyInfo, as 16 lowercase hex pairs joined by `:`.
///
/// It matches a private key to its imported key pair without a network call.
/// (MD5 is what IVS uses; it identifies keys, it does not protect them.)
/// The format is documented (private-channels-create-key); that it is the
/// MD5 of the DER SubjectPublicKeyInfo is strong indirect evidence
/// (`docs/ivs-facts.md` §2): compare it with what `ImportPlaybackKeyPair`
/// returns before signing with a new key.
///
/// `Display` writes `aa:bb:...:ff` (16 lowercase hex pairs joined by `:`);
/// `FromStr` reads that, in either case.
///
/// ```
/// use ivs_playback_auth::{Fingerprint, PrivateKey};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = PrivateKey::generate()?;
/// // The `fingerprint` field of ImportPlaybackKeyPair's answer:
/// let from_ivs: Fingerprint = key.fingerprint().to_string().to_uppercase().parse()?;
/// assert_eq!(&from_ivs, key.fingerprint());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// The fingerprint of a DER SubjectPublicKeyInfo: MD5 of the bytes as
    /// given. The bytes are not checked to be a key, and a key encoded
    /// differently (explicit curve, compressed point) gets another
    /// fingerprint than IVS's: prefer [`PublicKey::fingerprint`], which
    /// encodes canonically first.
    pub fn of_spki_der(der: &[u8]) -> Self {
        Self(Md5::digest(der).into())
    }

    /// The 16 bytes of the MD5 digest.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Made whole, then written once: the token service writes one into
        // every audit line, and a formatter call per byte (31 of them, each
        // through the JSON writer's escaping) cost more than the rest.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b':'; 47];
        for (i, b) in self.0.iter().enumerate() {
            text[3 * i] = HEX[usize::from(b >> 4)];
            text[3 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        // ASCII by construction; the fallback is never taken.
        f.write_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Parses `aa:bb:...` (16 hex pairs joined by `:`, either case).
///
/// # Errors
///
/// [`KeyError`] of kind [`KeyErrorKind::Malformed`] for anything else (other
/// separators, fewer or more pairs, spaces).
impl FromStr for Fingerprint {
    type Err = KeyError;

    /// Parses `aa:bb:...` (16 pairs, either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            KeyError::new(
                KeyErrorKind::Malformed,
                format!("fingerprint `{s}` is not 16 hex pairs joined by `:`"),
            )
        };
        let mut out = [0u8; 16];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

fn pem_rfc7468_encode(label: &str, der: &[u8]) -> String {
    // Only the encoder's output-length arithmetic can fail, and not for a
    // key-sized input.
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der).unwrap_or_default()
}

/// Bytes that are text (a PEM file, or one garbled on its way): valid UTF-8
/// with no control characters but whitespace. DER keys are binary.
fn as_pem_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .filter(|t| !t.chars().any(|c| c.is_control() && !c.is_whitespace()))
}

fn wrong_label(label: &str, wanted: &str) -> KeyError {
    let kind = match label {
        "PUBLIC KEY" => KeyErrorKind::PublicKeyGiven,
        "RSA PRIVATE KEY" | "RSA PUBLIC KEY" | "DSA PRIVATE KEY" | "OPENSSH PRIVATE KEY" => {
            KeyErrorKind::NotEllipticCurve
        }
        _ => KeyErrorKind::Malformed,
    };
    let hint = match kind {
        KeyErrorKind::PublicKeyGiven => " (this is a public key)",
        KeyErrorKind::NotEllipticCurve => " (IVS playback keys are ECDSA P-384)",
        _ => "",
    };
    KeyError::new(
        kind,
        format!("found a PEM `{label}` block, expected {wanted}{hint}"),
    )
}

fn encrypted() -> KeyError {
    KeyError::new(
        KeyErrorKind::Encrypted,
        "this private key is encrypted; decrypt it first: `openssl pkey -in KEY -out plain.pem` (asks for the passphrase)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_through_pkcs8_pem() {
        let key = PrivateKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = PrivateKey::from_pem(&pem).unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
        let der = key.to_pkcs8_der().unwrap();
        assert_eq!(
            PrivateKey::from_der(&der).unwrap().fingerprint(),
            key.fingerprint()
        );
    }

    #[test]
    fn reads_sec1_pem_and_der() {
        let key = PrivateKey::generate().unwrap();
        let sec1_pem = key.secret.to_sec1_pem(LineEnding::LF).unwrap();
        assert!(sec1_pem.starts_with("-----BEGIN EC PRIVATE KEY-----"));
        assert_eq!(
            PrivateKey::from_pem(&sec1_pem).unwrap().fingerprint(),
            key.fingerprint()
        );
        let sec1_der = key.secret.to_sec1_der().unwrap();
        assert_eq!(
            PrivateKey::from_der(&sec1_der).unwrap().fingerprint(),
            key.fingerprint()
        );
        // `openssl ecparam -genkey` without -noout writes the parameters first.
        let with_params = format!(
            "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n{}",
            &*sec1_pem
        );
        assert_eq!(
            PrivateKey::from_pem(&with_params).unwrap().fingerprint(),
            key.fingerprint()
        );
    }

    #[test]
    fn public_key_round_trips_and_fingerprint_is_md5_of_spki() {
        let key = PrivateKey::generate().unwrap();
        let public = key.public_key();
        let pem = public.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let back = PublicKey::from_pem(&pem).unwrap();
        assert_eq!(&back, public);
        let want: [u8; 16] = Md5::digest(public.to_der()).into();
        assert_eq!(public.fingerprint().as_bytes(), &want);
        let text = public.fingerprint().to_string();
        assert_eq!(text.len(), 47);
        assert!(
            text.chars()
                .all(|c| c == ':' || c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_eq!(text.parse::<Fingerprint>().unwrap(), *public.fingerprint());
        assert_eq!(
            text.to_uppercase().parse::<Fingerprint>().unwrap(),
            *public.fingerprint()
        );
        assert_eq!(public.to_sec1_bytes().len(), 97);
    }

    #[test]
    fn a_fingerprint_is_written_as_lowercase_hex_pairs_joined_by_colons() {
        let bytes: [u8; 16] = [
            0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0x9a, 0xab, 0xbc, 0xcd, 0xde, 0xef, 0xf0, 0xfe,
            0xff, 0x42,
        ];
        let want = "00:01:0f:10:7f:80:9a:ab:bc:cd:de:ef:f0:fe:ff:42";
        let parsed: Fingerprint = want.parse().unwrap();
        assert_eq!(parsed.as_bytes(), &bytes);
        assert_eq!(parsed.to_string(), want);
        assert_eq!(format!("{parsed:?}"), format!("Fingerprint({want})"));
    }

    #[test]
    fn refuses_public_key_as_private_and_the_reverse() {
        let key = PrivateKey::generate().unwrap();
        let err = PrivateKey::from_pem(&key.public_key().to_pem()).unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::PublicKeyGiven);
        let err = PrivateKey::from_der(key.public_key().to_der()).unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::PublicKeyGiven);
        let err = PublicKey::from_pem(&key.to_pkcs8_pem().unwrap()).unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::PrivateKeyGiven);
    }

    #[test]
    fn refuses_garbled_and_truncated_input() {
        for bad in [
            "",
            "hello",
            "-----BEGIN PRIVATE KEY-----\nnot base64!!\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nMIG2AgEAMBAGByqGSM49\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let err = PrivateKey::from_pem(bad).unwrap_err();
            assert_eq!(err.kind(), KeyErrorKind::Malformed, "{bad}: {err}");
        }
        assert_eq!(
            PrivateKey::from_der(b"\x30\x03\x02\x01\x01")
                .unwrap_err()
                .kind(),
            KeyErrorKind::Malformed
        );
        assert!("00:11".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn refuses_encrypted_keys() {
        let pem =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(
            PrivateKey::from_pem(pem).unwrap_err().kind(),
            KeyErrorKind::Encrypted
        );
        let legacy = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(
            PrivateKey::from_pem(legacy).unwrap_err().kind(),
            KeyErrorKind::Encrypted
        );
    }

    #[test]
    fn refuses_rsa_label() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            PrivateKey::from_pem(pem).unwrap_err().kind(),
            KeyErrorKind::NotEllipticCurve
        );
    }

    #[test]
    fn writes_private_key_0600_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::generate().unwrap();
        let path = dir.path().join("k.pem");
        key.write_pem_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let other = PrivateKey::generate().unwrap();
        assert!(matches!(
            other.write_pem_file(&path),
            Err(Error::KeyFileExists { .. })
        ));
        assert_eq!(
            PrivateKey::read_file(&path).unwrap().fingerprint(),
            key.fingerprint()
        );
        assert_eq!(
            PublicKey::read_file(&path).unwrap().fingerprint(),
            key.fingerprint()
        );
        // Only the key file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = PrivateKey::generate().unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("redacted"));
        let scalar = key.secret.to_bytes();
        let hex: String = scalar.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!debug.contains(&hex));
        assert!(!debug.to_lowercase().contains(&hex[..16]));
    }
}
