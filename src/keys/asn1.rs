//! The DER structures of EC keys, read the way OpenSSL reads them: SEC1
//! `ECPrivateKey` (RFC 5915), PKCS#8 `PrivateKeyInfo` (RFC 5208/5958) and
//! `SubjectPublicKeyInfo` (RFC 5480), with the curve given by name (an OID)
//! or by explicit parameters (`openssl ec -param_enc explicit`), and public
//! points compressed or not.
//!
//! The `sec1` and `pkcs8` crates read only named curves, so the structures
//! are walked here; the arithmetic stays in `p384`.

use crate::error::{KeyError, KeyErrorKind};

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// SEC 2's secp384r1 domain parameters in their explicit form, as written by
/// `openssl ecparam -name secp384r1 -param_enc explicit -outform DER`.
const P384_EXPLICIT: &[u8] = include_bytes!("secp384r1-explicit-params.der");

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CONTEXT_0: u8 = 0xa0;
const TAG_CONTEXT_1: u8 = 0xa1;

/// One DER element: its tag and its body.
#[derive(Clone, Copy)]
pub(super) struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Reads the next element of `input` and moves past it.
fn next<'a>(input: &mut &'a [u8]) -> Option<Tlv<'a>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (body, rest) = rest.split_at(len);
    *input = rest;
    Some(Tlv { tag, body })
}

/// The elements of a constructed body, or `None` if they do not parse.
fn children(body: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut rest = body;
    let mut out = Vec::new();
    while !rest.is_empty() {
        out.push(next(&mut rest)?);
    }
    Some(out)
}

/// The single element that `der` is, with nothing after it.
fn whole(der: &[u8]) -> Option<Tlv<'_>> {
    let mut rest = der;
    let tlv = next(&mut rest)?;
    rest.is_empty().then_some(tlv)
}

/// An integer's magnitude, without the sign-padding zeros.
fn unsigned(body: &[u8]) -> &[u8] {
    let zeros = body.iter().take_while(|&&b| b == 0).count();
    &body[zeros.min(body.len().saturating_sub(1))..]
}

/// The curve of a key, as the key names it.
pub(super) enum Curve {
    P384,
    /// Another named curve, by dotted OID.
    Named(String),
    /// Explicit parameters that are not P-384; the field size in bits.
    ExplicitOther(usize),
    /// No parameters where they are needed, or `implicitlyCA` (NULL).
    Unnamed,
}

/// Reads ECParameters: a named-curve OID or explicit parameters.
fn curve_of(params: Tlv<'_>) -> Curve {
    match params.tag {
        TAG_OID if params.body == OID_P384 => Curve::P384,
        TAG_OID => Curve::Named(dotted_oid(params.body)),
        TAG_SEQUENCE => match (explicit_fields(params.body), explicit_reference()) {
            (Some(given), Some(p384)) if given.same_curve(&p384) => Curve::P384,
            (Some(given), _) => Curve::ExplicitOther(unsigned(given.prime).len() * 8),
            (None, _) => Curve::Unnamed,
        },
        _ => Curve::Unnamed,
    }
}

/// The fields of explicit parameters that define the curve (the seed and
/// the version do not).
struct Explicit<'a> {
    prime: &'a [u8],
    a: &'a [u8],
    b: &'a [u8],
    generator: &'a [u8],
    order: &'a [u8],
    cofactor: Option<&'a [u8]>,
}

impl Explicit<'_> {
    fn same_curve(&self, other: &Explicit<'_>) -> bool {
        let field = |x: &[u8]| unsigned(x).to_vec();
        let same_point = match (
            p384::PublicKey::from_sec1_bytes(self.generator),
            p384::PublicKey::from_sec1_bytes(other.generator),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        };
        field(self.prime) == field(other.prime)
            && field(self.a) == field(other.a)
            && field(self.b) == field(other.b)
            && field(self.order) == field(other.order)
            && self.cofactor.is_none_or(|c| unsigned(c) == [1])
            && same_point
    }
}

/// `SEQUENCE { version, fieldID { prime-field, p }, curve { a, b, seed? },
/// base, order, cofactor? }` (SEC 1 §C.2).
fn explicit_fields(body: &[u8]) -> Option<Explicit<'_>> {
    let fields = children(body)?;
    let field_id = children(fields.get(1)?.body)?;
    let curve = children(fields.get(2)?.body)?;
    Some(Explicit {
        prime: field_id.get(1).filter(|t| t.tag == TAG_INTEGER)?.body,
        a: curve.first().filter(|t| t.tag == TAG_OCTET_STRING)?.body,
        b: curve.get(1).filter(|t| t.tag == TAG_OCTET_STRING)?.body,
        generator: fields.get(3).filter(|t| t.tag == TAG_OCTET_STRING)?.body,
        order: fields.get(4).filter(|t| t.tag == TAG_INTEGER)?.body,
        cofactor: fields.get(5).map(|t| t.body),
    })
}

fn explicit_reference() -> Option<Explicit<'static>> {
    whole(P384_EXPLICIT).and_then(|t| explicit_fields(t.body))
}

fn dotted_oid(body: &[u8]) -> String {
    pkcs8::ObjectIdentifier::from_bytes(body)
        .map_or_else(|_| "(unreadable)".to_owned(), |o| o.to_string())
}

fn malformed(what: &str) -> KeyError {
    KeyError::new(KeyErrorKind::Malformed, what.to_owned())
}

/// A private key's DER, as far as it could be read.
pub(super) enum PrivateDer {
    /// A P-384 key.
    Key(p384::SecretKey),
    /// Not a private-key structure we know (the caller tries other readings).
    NotPrivateKey,
}

/// Reads a SEC1 `ECPrivateKey`. `outer` is the curve of an enclosing PKCS#8
/// structure, if any.
pub(super) fn sec1_private(der: &[u8], outer: Option<Curve>) -> Result<PrivateDer, KeyError> {
    let Some(seq) = whole(der).filter(|t| t.tag == TAG_SEQUENCE) else {
        return Ok(PrivateDer::NotPrivateKey);
    };
    let Some(fields) = children(seq.body) else {
        return Ok(PrivateDer::NotPrivateKey);
    };
    let (Some(version), Some(secret)) = (fields.first(), fields.get(1)) else {
        return Ok(PrivateDer::NotPrivateKey);
    };
    if version.tag != TAG_INTEGER || version.body != [1] || secret.tag != TAG_OCTET_STRING {
        return Ok(PrivateDer::NotPrivateKey);
    }
    let params = fields.iter().find(|t| t.tag == TAG_CONTEXT_0);
    let inner = match params {
        Some(p) => {
            Some(curve_of(whole(p.body).ok_or_else(|| {
                malformed("the key's curve parameters are garbled")
            })?))
        }
        None => None,
    };
    // The curve is named by PKCS#8, by SEC1, or by both (then both must say
    // P-384).
    if outer.is_none() && inner.is_none() {
        check_curve(&Curve::Unnamed)?;
    }
    for curve in [outer, inner].iter().flatten() {
        check_curve(curve)?;
    }
    let d = unsigned(secret.body);
    if d.len() > 48 {
        return Err(malformed(
            "the private scalar is longer than 48 bytes: not a P-384 key",
        ));
    }
    let mut scalar = zeroize::Zeroizing::new([0u8; 48]);
    scalar[48 - d.len()..].copy_from_slice(d);
    let key = p384::SecretKey::from_slice(scalar.as_slice()).map_err(|_| {
        malformed("the private scalar is zero or not below the P-384 order: the key is corrupt")
    })?;
    // The public point, if the file carries one, must be this key's: a
    // mismatch means the file was altered or pieced together.
    if let Some(public) = fields.iter().find(|t| t.tag == TAG_CONTEXT_1) {
        let point = whole(public.body)
            .filter(|t| t.tag == TAG_BIT_STRING)
            .and_then(|t| t.body.split_first())
            .and_then(|(&unused, point)| (unused == 0).then_some(point))
            .ok_or_else(|| malformed("the key's public point is garbled"))?;
        let matches = p384::PublicKey::from_sec1_bytes(point).is_ok_and(|p| p == key.public_key());
        if !matches {
            return Err(malformed(
                "the public key stored in the file does not belong to its private key (the file is corrupt or was pieced together)",
            ));
        }
    }
    Ok(PrivateDer::Key(key))
}

/// What a PKCS#8 structure holds.
pub(super) enum Pkcs8<'a> {
    /// A `PrivateKeyInfo`: its algorithm OID, parameters and private key.
    Plain {
        algorithm: &'a [u8],
        params: Option<Tlv<'a>>,
        private_key: &'a [u8],
    },
    /// An `EncryptedPrivateKeyInfo`.
    Encrypted,
    /// Neither.
    Other,
}

/// Reads the outer PKCS#8 layer.
pub(super) fn pkcs8(der: &[u8]) -> Pkcs8<'_> {
    let Some(fields) = whole(der)
        .filter(|t| t.tag == TAG_SEQUENCE)
        .and_then(|t| children(t.body))
    else {
        return Pkcs8::Other;
    };
    match fields.as_slice() {
        [alg, data] if alg.tag == TAG_SEQUENCE && data.tag == TAG_OCTET_STRING => Pkcs8::Encrypted,
        [version, alg, key, ..]
            if version.tag == TAG_INTEGER
                && alg.tag == TAG_SEQUENCE
                && key.tag == TAG_OCTET_STRING =>
        {
            let Some(alg) = children(alg.body) else {
                return Pkcs8::Other;
            };
            match alg.first() {
                Some(oid) if oid.tag == TAG_OID => Pkcs8::Plain {
                    algorithm: oid.body,
                    params: alg.get(1).copied(),
                    private_key: key.body,
                },
                _ => Pkcs8::Other,
            }
        }
        _ => Pkcs8::Other,
    }
}

/// Reads a PKCS#8 `PrivateKeyInfo` holding an EC key.
pub(super) fn pkcs8_private(der: &[u8]) -> Result<PrivateDer, KeyError> {
    match pkcs8(der) {
        Pkcs8::Encrypted => Err(super::encrypted()),
        Pkcs8::Other => Ok(PrivateDer::NotPrivateKey),
        Pkcs8::Plain {
            algorithm,
            params,
            private_key,
        } => {
            check_algorithm(algorithm)?;
            let curve = params.map_or(Curve::Unnamed, curve_of);
            check_curve(&curve)?;
            match sec1_private(private_key, Some(curve))? {
                PrivateDer::Key(key) => Ok(PrivateDer::Key(key)),
                PrivateDer::NotPrivateKey => {
                    Err(malformed("the PKCS#8 key holds no readable EC private key"))
                }
            }
        }
    }
}

/// Reads a `SubjectPublicKeyInfo` holding an EC P-384 point.
pub(super) fn spki(der: &[u8]) -> Result<Option<p384::PublicKey>, KeyError> {
    let Some(fields) = whole(der)
        .filter(|t| t.tag == TAG_SEQUENCE)
        .and_then(|t| children(t.body))
    else {
        return Ok(None);
    };
    let [alg, key] = fields.as_slice() else {
        return Ok(None);
    };
    if alg.tag != TAG_SEQUENCE || key.tag != TAG_BIT_STRING {
        return Ok(None);
    }
    let Some(alg) = children(alg.body) else {
        return Ok(None);
    };
    let Some(oid) = alg.first().filter(|t| t.tag == TAG_OID) else {
        return Ok(None);
    };
    check_algorithm(oid.body)?;
    check_curve(&alg.get(1).copied().map_or(Curve::Unnamed, curve_of))?;
    let point = match key.body.split_first() {
        Some((0, point)) => point,
        _ => return Err(malformed("the public key's BIT STRING is garbled")),
    };
    p384::PublicKey::from_sec1_bytes(point)
        .map(Some)
        .map_err(|_| malformed("the public key is not a point on P-384: the key is corrupt"))
}

fn check_curve(curve: &Curve) -> Result<(), KeyError> {
    let name = match curve {
        Curve::P384 => return Ok(()),
        Curve::Named(oid) => match oid.as_str() {
            "1.2.840.10045.3.1.7" => "P-256 (prime256v1)".to_owned(),
            "1.3.132.0.35" => "P-521 (secp521r1)".to_owned(),
            "1.3.132.0.10" => "secp256k1".to_owned(),
            "1.3.132.0.33" => "P-224 (secp224r1)".to_owned(),
            other => format!("curve {other}"),
        },
        Curve::ExplicitOther(256) => {
            "a 256-bit curve given by explicit parameters (P-256?)".to_owned()
        }
        Curve::ExplicitOther(521..=528) => {
            "a 521-bit curve given by explicit parameters (P-521?)".to_owned()
        }
        Curve::ExplicitOther(bits) => {
            format!("a {bits}-bit curve given by explicit parameters")
        }
        Curve::Unnamed => "an unnamed curve (no curve parameters)".to_owned(),
    };
    Err(KeyError::new(
        KeyErrorKind::WrongCurve,
        format!(
            "this key is on {name}; IVS playback keys are P-384 (secp384r1): make one with `openssl ecparam -name secp384r1 -genkey -noout -out playback-key.pem`"
        ),
    ))
}

/// The algorithm must be id-ecPublicKey; other algorithms are named.
fn check_algorithm(oid: &[u8]) -> Result<(), KeyError> {
    if oid == OID_EC_PUBLIC_KEY {
        return Ok(());
    }
    let dotted = dotted_oid(oid);
    let name = match dotted.as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => "an RSA",
        "1.3.101.112" => "an Ed25519",
        "1.3.101.113" => "an Ed448",
        "1.3.101.110" => "an X25519",
        "1.2.840.10040.4.1" => "a DSA",
        _ => "a non-EC",
    };
    Err(KeyError::new(
        KeyErrorKind::NotEllipticCurve,
        format!(
            "this is {name} key (algorithm {dotted}); IVS playback keys are ECDSA P-384: make one with `openssl ecparam -name secp384r1 -genkey -noout -out playback-key.pem`"
        ),
    ))
}

/// Whether `der` has the shape of a SubjectPublicKeyInfo: used to say
/// "this is a public key" when a private key was expected.
pub(super) fn is_spki_shaped(der: &[u8]) -> bool {
    whole(der)
        .filter(|t| t.tag == TAG_SEQUENCE)
        .and_then(|t| children(t.body))
        .is_some_and(|f| {
            matches!(f.as_slice(), [alg, key] if alg.tag == TAG_SEQUENCE && key.tag == TAG_BIT_STRING)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_parameters_are_p384() {
        let reference = explicit_reference().unwrap();
        assert_eq!(unsigned(reference.prime).len(), 48);
        assert!(reference.same_curve(&reference));
        assert!(matches!(
            curve_of(whole(P384_EXPLICIT).unwrap()),
            Curve::P384
        ));
    }

    #[test]
    fn a_changed_parameter_is_another_curve() {
        let mut changed = P384_EXPLICIT.to_vec();
        // The last byte of `b` (offset 121 + 2 + 47, see asn1parse).
        changed[170] ^= 1;
        assert!(matches!(
            curve_of(whole(&changed).unwrap()),
            Curve::ExplicitOther(384)
        ));
    }

    #[test]
    fn reads_lengths_in_long_form_and_refuses_truncation() {
        let mut der = vec![0x04, 0x81, 0x80];
        der.extend([7u8; 0x80]);
        assert_eq!(whole(&der).unwrap().body.len(), 0x80);
        assert!(whole(&der[..100]).is_none());
        assert!(whole(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_none());
    }
}
