//! Checks a playback token the way IVS does, and says why it fails.
//!
//! The order follows what the IVS edge can know at each step: the token's
//! shape, its header, its signature against the imported public keys, then
//! the claims (`exp`, the 10-minute rule, every claim's value) and the channel.
//! Each failure is a [`Rejection`] whose `Display` is a sentence a developer
//! can act on, and whose [`code`](Rejection::code) is stable for machines.
//!
//! Where the IVS docs are silent, tokens are judged as a standard JWT
//! verifier judges them (RFC 7519 and RFC 7515) [OPEN]: the IVS edge's error
//! texts are a generic JWT library's. So a fractional `exp` is read (rounded
//! down), `nbf` is enforced, `kid` is a hint (every key is tried), `typ` is
//! advisory and compared without case, other header members are ignored but
//! `crit` is refused. A token that relies on any of these passes with a
//! [note](VerifiedToken::notes), because IVS does not promise to accept it.
//! The signer writes only the documented form.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::claims::{
    ChannelArn, MILLISECONDS_THRESHOLD, NumericDate, PlaybackClaims, SHORT_LIVED_LIMIT, names,
    payload_map, unix_seconds,
};
use crate::error::ClaimError;
use crate::keys::{Fingerprint, PublicKey};
use crate::keyset::KeySet;
use crate::signing_key::SIGNATURE_LEN;

/// Verifies IVS playback tokens against a set of public keys, the way IVS
/// does, and says why a token fails.
///
/// For tests and for explaining a player's `ErrorAuthorization`: it is not
/// IVS, and where the IVS docs are silent it judges as a standard JWT
/// verifier would (see [`VerifiedToken::notes`]). Without
/// [`expect_channel`](Self::expect_channel), a token for any channel passes.
///
/// ```
/// use std::time::Duration;
/// use ivs_playback_auth::{ChannelArn, PlaybackClaims, PrivateKey, Rejection, SigningKey, TokenSigner, Verifier};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = PrivateKey::generate()?;
/// let channel = ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/abcdEFGH1234")?;
/// let claims = PlaybackClaims::builder(channel.clone()).expires_in(Duration::from_secs(60)).build()?;
/// let token = TokenSigner::new(SigningKey::new(&key)?).sign(&claims)?;
///
/// let other = ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/other")?;
/// match Verifier::new([key.public_key()]).expect_channel(other).verify(token.as_str()) {
///     Err(Rejection::ChannelMismatch { actual, .. }) => assert_eq!(actual, channel),
///     other => return Err(format!("{other:?}").into()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Vec<VerifyingKey>,
    channel: Option<ChannelArn>,
    leeway: Duration,
}

#[derive(Clone, Debug)]
struct VerifyingKey {
    public: PublicKey,
    #[cfg(feature = "aws-lc-rs")]
    sec1_point: Box<[u8]>,
    #[cfg(not(feature = "aws-lc-rs"))]
    rust_crypto: p384::ecdsa::VerifyingKey,
}

impl Verifier {
    /// A verifier that accepts tokens signed by any of `keys`, as IVS accepts
    /// tokens signed by any key pair imported in the region (one key signs
    /// for every channel of its account and region; `docs/ivs-facts.md` §2).
    /// With no keys, every token is refused ([`Rejection::UnknownKey`]).
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|public| VerifyingKey {
                    public: public.clone(),
                    #[cfg(feature = "aws-lc-rs")]
                    sec1_point: public.to_sec1_bytes(),
                    #[cfg(not(feature = "aws-lc-rs"))]
                    rust_crypto: p384::ecdsa::VerifyingKey::from(*public.p384()),
                })
                .collect(),
            channel: None,
            leeway: Duration::ZERO,
        }
    }

    /// A verifier for the active and retiring keys of a key set, as they are
    /// now: a later rotation of a [`SharedKeySet`](crate::SharedKeySet) is
    /// not followed.
    pub fn for_key_set(set: &KeySet) -> Self {
        Self::new(set.public_keys())
    }

    /// Also require `aws:channel-arn` to be this channel (IVS checks the
    /// token against the channel being played). Compared exactly.
    pub fn expect_channel(mut self, channel: ChannelArn) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Tolerate clocks this far apart (whole seconds; default none, like
    /// IVS): an expired token passes for `leeway` longer, an `nbf` is
    /// honoured `leeway` early, and the 10-minute limit of short-lived
    /// tokens is stretched by `leeway`.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The fingerprints of the keys tried, in the order given.
    pub fn fingerprints(&self) -> impl Iterator<Item = &Fingerprint> {
        self.keys.iter().map(|k| k.public.fingerprint())
    }

    /// Verifies a token now.
    ///
    /// # Errors
    ///
    /// As [`verify_at`](Self::verify_at).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, Rejection> {
        self.verify_at(token, SystemTime::now())
    }

    /// Verifies a token as of `now`. Whitespace around the token is ignored.
    /// Never panics, whatever the input.
    ///
    /// # Errors
    ///
    /// The first check that fails, in this order, as a [`Rejection`]:
    ///
    /// 1. [`Malformed`](Rejection::Malformed): not three base64url segments,
    ///    a header that is not a JSON object, or a signature that is not 96
    ///    bytes (the message spots DER, ES256 and ES512 signatures);
    /// 2. [`WrongAlgorithm`](Rejection::WrongAlgorithm): `alg` is not
    ///    `ES384`; [`UnexpectedHeader`](Rejection::UnexpectedHeader): `crit`,
    ///    or a `typ` or `kid` that is not a string;
    /// 3. [`UnknownKey`](Rejection::UnknownKey): the signature verifies with
    ///    none of the keys (then [`Malformed`](Rejection::Malformed) if the
    ///    signed payload segment is not base64url);
    /// 4. [`InvalidClaim`](Rejection::InvalidClaim): the payload is not a JSON
    ///    object, a claim has the wrong type or a value IVS refuses,
    ///    `aws:channel-arn` or `exp` is missing, or claims do not combine
    ///    (a session version without a viewer id, strict enforcement without
    ///    origins or with more than 5);
    ///    [`ExpInMilliseconds`](Rejection::ExpInMilliseconds) comes before
    ///    these;
    /// 5. [`Expired`](Rejection::Expired), then
    ///    [`ExpTooFarAhead`](Rejection::ExpTooFarAhead), then
    ///    [`NotYetValid`](Rejection::NotYetValid);
    /// 6. [`ChannelMismatch`](Rejection::ChannelMismatch), with
    ///    [`expect_channel`](Self::expect_channel).
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, Rejection> {
        let token = token.trim();
        let segments: Vec<&str> = token.split('.').collect();
        if segments.len() != 3 {
            return Err(Rejection::Malformed(format!(
                "a JWS compact token has 3 segments separated by `.`, this one has {}",
                segments.len()
            )));
        }
        let [header_b64, payload_b64, signature_b64] = [segments[0], segments[1], segments[2]];
        let header = decode_segment("header", header_b64)?;
        let mut notes = check_header(&header)?;
        let signature = decode_segment("signature", signature_b64)?;
        if signature.len() != SIGNATURE_LEN {
            let hint = match signature.len() {
                100..=104 if signature.first() == Some(&0x30) => {
                    " (it looks DER-encoded; a JWS ES384 signature is the raw 96-byte r||s)"
                }
                64 => {
                    " (64 bytes is an ES256 signature, made with a P-256 key; sign with a P-384 key)"
                }
                132 => {
                    " (132 bytes is an ES512 signature, made with a P-521 key; sign with a P-384 key)"
                }
                _ => "",
            };
            return Err(Rejection::Malformed(format!(
                "the signature is {} bytes; ES384 signatures are {SIGNATURE_LEN} bytes{hint}",
                signature.len()
            )));
        }
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        let key = self
            .keys
            .iter()
            .find(|k| k.verifies(signing_input.as_bytes(), &signature))
            .ok_or_else(|| Rejection::UnknownKey {
                tried: self.fingerprints().copied().collect(),
            })?;
        let payload = decode_segment("payload", payload_b64)?;
        let (claims, unknown_claims) = self.check_payload(&payload, &mut notes, now)?;
        Ok(VerifiedToken {
            claims,
            fingerprint: *key.public.fingerprint(),
            unknown_claims,
            notes,
        })
    }

    /// The claims checks of [`verify_at`](Self::verify_at), on a payload
    /// whose signature has been checked: the claims and the names of the
    /// claims IVS does not know. Apart so that the fuzz target of the claims
    /// reaches them without having to sign every input.
    pub(crate) fn check_payload(
        &self,
        payload: &[u8],
        notes: &mut Vec<String>,
        now: SystemTime,
    ) -> Result<(PlaybackClaims, Vec<String>), Rejection> {
        let map = payload_map(payload).map_err(Rejection::InvalidClaim)?;
        // Said before the other claims are judged: it is the likeliest mistake.
        let exp_date = map
            .get(names::EXP)
            .and_then(|v| NumericDate::parse(names::EXP, v).ok());
        if let Some(exp) = exp_date
            .map(|d| d.floor)
            .filter(|&e| e >= MILLISECONDS_THRESHOLD)
        {
            return Err(Rejection::ExpInMilliseconds { exp });
        }
        let (claims, mut unknown_claims) =
            PlaybackClaims::from_map(&map).map_err(Rejection::InvalidClaim)?;
        let now_s = unix_seconds(now);
        let exp = claims.expires_at().unix_seconds();
        if exp_date.is_some_and(|d| d.fractional) {
            notes.push(format!(
                "`exp` is {} (not a whole number): RFC 7519 allows it and it is read as {exp}, but IVS documents whole seconds",
                map.get(names::EXP).map(ToString::to_string).unwrap_or_default()
            ));
        }
        if exp.saturating_add(self.leeway.as_secs()) <= now_s {
            return Err(Rejection::Expired {
                exp,
                ago: Duration::from_secs(now_s - exp),
            });
        }
        let limit = SHORT_LIVED_LIMIT + self.leeway;
        if claims.is_short_lived() && exp.saturating_sub(now_s) > limit.as_secs() {
            return Err(Rejection::ExpTooFarAhead {
                ahead: Duration::from_secs(exp - now_s),
                claim: if claims.viewer_id().is_some() {
                    names::VIEWER_ID
                } else {
                    names::SINGLE_USE_UUID
                },
            });
        }
        // `nbf` is no IVS claim; a standard verifier refuses a token before
        // it [OPEN], so a token that plays here does not rely on IVS ignoring
        // it. A fractional `nbf` is rounded up: never valid early.
        if let Some(value) = map.get(names::NBF) {
            unknown_claims.retain(|c| c != names::NBF);
            let nbf = NumericDate::parse(names::NBF, value)
                .map_err(Rejection::InvalidClaim)?
                .ceil();
            if now_s.saturating_add(self.leeway.as_secs()) < nbf {
                return Err(Rejection::NotYetValid {
                    nbf,
                    wait: Duration::from_secs(nbf - now_s),
                });
            }
            notes.push(format!(
                "the token has `nbf` {value}, which IVS does not document: it is enforced here as RFC 7519 says"
            ));
        }
        if let Some(expected) = self.channel.as_ref().filter(|c| *c != claims.channel_arn()) {
            return Err(Rejection::ChannelMismatch {
                expected: expected.clone(),
                actual: claims.channel_arn().clone(),
            });
        }
        Ok((claims, unknown_claims))
    }
}

impl VerifyingKey {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        #[cfg(feature = "aws-lc-rs")]
        {
            aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
                &self.sec1_point,
            )
            .verify(message, signature)
            .is_ok()
        }
        #[cfg(not(feature = "aws-lc-rs"))]
        {
            use p384::ecdsa::signature::Verifier as _;
            p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| self.rust_crypto.verify(message, &sig).is_ok())
        }
    }
}

fn decode_segment(which: &'static str, b64: &str) -> Result<Vec<u8>, Rejection> {
    if b64.is_empty() {
        return Err(Rejection::Malformed(format!(
            "the {which} segment is empty"
        )));
    }
    if b64.contains('=') {
        return Err(Rejection::Malformed(format!(
            "the {which} has base64 padding `=`; JWS uses base64url without padding"
        )));
    }
    if b64.contains(['+', '/']) {
        return Err(Rejection::Malformed(format!(
            "the {which} uses standard base64 (`+` or `/`); JWS uses base64url (`-` and `_`)"
        )));
    }
    URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|e| Rejection::Malformed(format!("the {which} is not valid base64url: {e}")))
}

/// Checks the header; returns notes on what it relies on beyond the
/// documented `{"alg":"ES384","typ":"JWT"}`.
fn check_header(header: &[u8]) -> Result<Vec<String>, Rejection> {
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|_| {
        Rejection::Malformed(format!(
            "the header is not JSON: {}",
            String::from_utf8_lossy(header)
        ))
    })?;
    let object = value
        .as_object()
        .ok_or_else(|| Rejection::Malformed("the header is not a JSON object".into()))?;
    // `alg` is case-sensitive (RFC 7515 §4.1.1).
    match object.get("alg").and_then(serde_json::Value::as_str) {
        Some("ES384") => {}
        Some(alg) => return Err(Rejection::WrongAlgorithm(alg.to_owned())),
        None => return Err(Rejection::WrongAlgorithm("(missing)".to_owned())),
    }
    // Extensions listed in `crit` must be understood or the token refused
    // (RFC 7515 §4.1.11); none are.
    if let Some(crit) = object.get("crit") {
        return Err(Rejection::UnexpectedHeader(format!(
            "`crit` is {crit}: the token asks its verifier to understand header extensions, which neither IVS nor this verifier does; leave `crit` out"
        )));
    }
    const DOCUMENTED: &str = r#"IVS documents exactly {"alg":"ES384","typ":"JWT"}"#;
    let mut notes = Vec::new();
    match object.get("typ") {
        Some(typ) if typ.as_str() == Some("JWT") => {}
        // `typ` is advisory and compared without case (RFC 7519 §5.1) [OPEN].
        Some(typ) if typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT")) => {
            notes.push(format!(
                "the header's `typ` is {typ}, not \"JWT\": {DOCUMENTED}"
            ));
        }
        Some(typ) if typ.is_string() => {
            notes.push(format!(
                "the header's `typ` is {typ}, which is advisory in RFC 7519 and ignored here: {DOCUMENTED}"
            ));
        }
        Some(typ) => {
            return Err(Rejection::UnexpectedHeader(format!(
                "`typ` is {typ}, not a string; {DOCUMENTED}"
            )));
        }
        None => notes.push(format!("the header has no `typ`: {DOCUMENTED}")),
    }
    // `kid` only hints at the key (RFC 7515 §4.1.4): every imported key is
    // tried whatever it says [OPEN]. Integrations set it to the key-pair ARN.
    match object.get("kid") {
        None => {}
        Some(kid) if kid.is_string() => notes.push(format!(
            "the header has `kid` {kid}, which IVS does not document; it is taken as a hint only (every key is tried)"
        )),
        Some(kid) => {
            return Err(Rejection::UnexpectedHeader(format!(
                "`kid` is {kid}, not a string (RFC 7515 §4.1.4)"
            )));
        }
    }
    // Other members are ignored, as standard verifiers ignore them (a key
    // in `jwk`, `jku` or `x5c` is never trusted) [OPEN].
    let others: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|k| !["alg", "typ", "kid"].contains(k))
        .collect();
    if !others.is_empty() {
        notes.push(format!(
            "the header has members IVS does not document, ignored here: {}",
            others.join(", ")
        ));
    }
    Ok(notes)
}

/// A token that passed every check of a [`Verifier`].
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    claims: PlaybackClaims,
    fingerprint: Fingerprint,
    unknown_claims: Vec<String>,
    notes: Vec<String>,
}

impl VerifiedToken {
    /// Its claims, parsed into the same types the builder uses.
    pub fn claims(&self) -> &PlaybackClaims {
        &self.claims
    }

    /// The fingerprint of the key whose signature verified.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The names of claims IVS does not document (they are ignored, but
    /// worth a look: IVS may not ignore them), in payload order. `nbf` is
    /// not listed: it is judged, and mentioned in [`notes`](Self::notes).
    pub fn unknown_claims(&self) -> &[String] {
        &self.unknown_claims
    }

    /// What the token relies on that the IVS docs do not promise (a
    /// fractional `exp`, `nbf`, a `kid` header, `typ` other than `"JWT"`),
    /// one sentence each. Empty for a token in the documented form, which is
    /// what [`TokenSigner`](crate::TokenSigner) writes.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// Why a [`Verifier`] refused a token.
///
/// `Display` is a sentence a developer can act on; [`code`](Self::code) is
/// a stable identifier for machines. The `String` payloads are the same
/// kind of sentence, not meant for matching.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWS compact token: the segments, their base64url (padding and
    /// standard base64 are refused, RFC 7515 §2), the header's JSON or the
    /// signature's length (96 bytes for ES384) are wrong. A payload that is
    /// not JSON is an [`InvalidClaim`](Self::InvalidClaim).
    Malformed(String),
    /// `alg` is not ES384 (`none`, `HS384`, `RS256`, ...), the only
    /// algorithm IVS documents; the value found, or `(missing)`. Compared
    /// case-sensitively, as RFC 7515 §4.1.1 says.
    WrongAlgorithm(String),
    /// The header cannot be honoured: `crit` (RFC 7515 §4.1.11), or a `typ`
    /// or `kid` that is not a string.
    UnexpectedHeader(String),
    /// The signature does not verify with any key of the set: the token was
    /// signed by another key, or altered after signing (the two cannot be
    /// told apart). IVS refuses it too when the signing key pair is not
    /// imported, or was deleted (private-channels-delete-keys).
    UnknownKey {
        /// The fingerprints of the keys tried (empty if the verifier had
        /// none).
        tried: Vec<Fingerprint>,
    },
    /// `exp` is not after now (less the leeway): IVS would refuse to start
    /// playback with it.
    Expired {
        /// The token's `exp`, Unix seconds (a fraction rounded down).
        exp: u64,
        /// How long ago it expired, whole seconds.
        ago: Duration,
    },
    /// `nbf` is still ahead (RFC 7519 §4.1.5). `nbf` is no IVS claim: it is
    /// enforced as a standard verifier would, so a token that passes here
    /// does not rely on IVS ignoring it.
    NotYetValid {
        /// The token's `nbf`, Unix seconds, rounded up to a whole second.
        nbf: u64,
        /// How long until it is valid, whole seconds.
        wait: Duration,
    },
    /// `exp` is in milliseconds (10^11 or more), the mistake of the AWS docs'
    /// Node example: IVS reads seconds, so the token would never expire
    /// (`docs/ivs-facts.md` §1).
    ExpInMilliseconds {
        /// The token's `exp`, as written (rounded down).
        exp: u64,
    },
    /// `exp` is more than 10 minutes (plus the leeway) ahead on a viewer-id
    /// or single-use token, which IVS refuses
    /// (private-channels-generate-tokens).
    ExpTooFarAhead {
        /// How far ahead, whole seconds.
        ahead: Duration,
        /// The claim that imposes the limit: `aws:viewer-id`, or
        /// `aws:single-use-uuid` when there is no viewer id.
        claim: &'static str,
    },
    /// A claim has a type or value IVS refuses, a required claim
    /// (`aws:channel-arn`, `exp`) is missing, claims do not combine, or the
    /// payload is not a JSON object (claim `payload`); the [`ClaimError`]
    /// names the claim.
    InvalidClaim(ClaimError),
    /// The token is for another channel than the one given to
    /// [`Verifier::expect_channel`].
    ChannelMismatch {
        /// The channel being played.
        expected: ChannelArn,
        /// The channel in the token.
        actual: ChannelArn,
    },
}

impl Rejection {
    /// A stable machine-readable code, snake case: `malformed`,
    /// `wrong_algorithm`, `unexpected_header`, `unknown_key`, `expired`,
    /// `not_yet_valid`, `exp_in_milliseconds`, `exp_too_far_ahead`,
    /// `invalid_claim` or `channel_mismatch`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::WrongAlgorithm(_) => "wrong_algorithm",
            Self::UnexpectedHeader(_) => "unexpected_header",
            Self::UnknownKey { .. } => "unknown_key",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::ExpInMilliseconds { .. } => "exp_in_milliseconds",
            Self::ExpTooFarAhead { .. } => "exp_too_far_ahead",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::ChannelMismatch { .. } => "channel_mismatch",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed token: {why}"),
            Self::WrongAlgorithm(alg) => {
                write!(
                    f,
                    "wrong algorithm: the header says `alg` {alg}; IVS accepts only ES384 (ECDSA P-384 with SHA-384)"
                )?;
                match alg.as_str() {
                    "ES256" => f.write_str(": ES256 is signed with a P-256 key; sign with a P-384 key"),
                    "ES512" => f.write_str(": ES512 is signed with a P-521 key; sign with a P-384 key"),
                    a if a.eq_ignore_ascii_case("es384") => {
                        f.write_str(": `alg` is case-sensitive, write it ES384")
                    }
                    a if a.starts_with("HS") => f.write_str(
                        ": HMAC tokens are signed with a shared secret; IVS needs an ECDSA P-384 key pair",
                    ),
                    _ => Ok(()),
                }
            }
            Self::UnexpectedHeader(why) => write!(f, "unexpected header: {why}"),
            Self::UnknownKey { tried } if tried.is_empty() => {
                f.write_str(
                    "the signature cannot be checked: there are no public keys to check it with (none given or imported)",
                )
            }
            Self::UnknownKey { tried } => {
                write!(
                    f,
                    "the signature does not verify with {} (fingerprint{} ",
                    if tried.len() == 1 { "the one key tried".to_owned() } else { format!("any of the {} keys tried", tried.len()) },
                    if tried.len() == 1 { "" } else { "s" },
                )?;
                for (i, fp) in tried.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{fp}")?;
                }
                f.write_str("): it was signed by another key, or altered after signing")
            }
            Self::Expired { exp, ago } => {
                write!(f, "expired: `exp` {exp} was {} ago", HumanDuration(*ago))
            }
            Self::NotYetValid { nbf, wait } => write!(
                f,
                "not valid yet: `nbf` {nbf} is {} ahead",
                HumanDuration(*wait)
            ),
            Self::ExpInMilliseconds { exp } => write!(
                f,
                "`exp` {exp} looks like milliseconds; IVS reads it as Unix seconds, so this token would never expire"
            ),
            Self::ExpTooFarAhead { ahead, claim } => write!(
                f,
                "`exp` is {} ahead; a token with {claim} may be valid for at most 10 minutes",
                HumanDuration(*ahead)
            ),
            Self::InvalidClaim(e) => write!(f, "invalid claim {e}"),
            Self::ChannelMismatch { expected, actual } => {
                write!(f, "the token is for channel {actual}, not {expected}")
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// `3 h 2 min 5 s`, or `42 s`.
struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
        let mut parts = Vec::new();
        if d > 0 {
            parts.push(format!("{d} d"));
        }
        if h > 0 {
            parts.push(format!("{h} h"));
        }
        if m > 0 {
            parts.push(format!("{m} min"));
        }
        if s > 0 || parts.is_empty() {
            parts.push(format!("{s} s"));
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::claims::{AllowedOrigins, ViewerId};
    use crate::keys::PrivateKey;
    use crate::signer::TokenSigner;
    use crate::signing_key::{Backend, SigningKey};

    const ARN: &str = "arn:aws:ivs:us-west-2:123456789012:channel/abcd";

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn setup() -> (PrivateKey, TokenSigner, Verifier) {
        let key = PrivateKey::generate().unwrap();
        let signer = TokenSigner::new(SigningKey::new(&key).unwrap());
        let verifier = Verifier::new([key.public_key()]);
        (key, signer, verifier)
    }

    fn claims() -> PlaybackClaims {
        PlaybackClaims::builder(ChannelArn::parse(ARN).unwrap())
            .viewer_id(ViewerId::parse("viewer").unwrap())
            .allowed_origins(AllowedOrigins::parse("https://a.com").unwrap())
            .expires_in(Duration::from_secs(300))
            .build_at(now())
            .unwrap()
    }

    /// Signs an arbitrary payload with the key, bypassing the builder, to
    /// test what the verifier says of tokens other issuers make.
    fn forge(key: &PrivateKey, header: &str, payload: &str) -> String {
        use p384::ecdsa::signature::Signer as _;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sk = p384::ecdsa::SigningKey::from(key.secret());
        let sig: p384::ecdsa::Signature = sk.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    const HEADER: &str = r#"{"alg":"ES384","typ":"JWT"}"#;

    #[test]
    fn accepts_a_fresh_token_from_every_backend() {
        let key = PrivateKey::generate().unwrap();
        let verifier =
            Verifier::new([key.public_key()]).expect_channel(ChannelArn::parse(ARN).unwrap());
        for &backend in Backend::ALL {
            let signer = TokenSigner::new(SigningKey::with_backend(&key, backend).unwrap());
            let token = signer.sign_at(&claims(), now()).unwrap();
            let verified = verifier.verify_at(token.as_str(), now()).unwrap();
            assert_eq!(verified.claims(), &claims());
            assert_eq!(verified.fingerprint(), key.fingerprint());
            // The signer writes only the documented form.
            assert!(verified.notes().is_empty(), "{:?}", verified.notes());
        }
    }

    #[test]
    fn explains_wrong_segment_count() {
        let (_, _, verifier) = setup();
        let err = verifier.verify_at("a.b", now()).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("3 segments"), "{err}");
    }

    #[test]
    fn explains_bad_base64() {
        let (_, signer, verifier) = setup();
        let token = signer.sign_at(&claims(), now()).unwrap().into_string();
        let padded = token.replacen('.', "=.", 1);
        assert!(
            verifier
                .verify_at(&padded, now())
                .unwrap_err()
                .to_string()
                .contains("padding")
        );
        let std_b64 = format!("{}+", token);
        assert!(
            verifier
                .verify_at(&std_b64, now())
                .unwrap_err()
                .to_string()
                .contains("standard base64")
        );
        let garbage = token.replacen('.', "!.", 1);
        assert_eq!(
            verifier.verify_at(&garbage, now()).unwrap_err().code(),
            "malformed"
        );
    }

    #[test]
    fn rejects_tampered_payload_and_signature() {
        let (_, signer, verifier) = setup();
        let token = signer.sign_at(&claims(), now()).unwrap().into_string();
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let text = String::from_utf8(payload.clone())
            .unwrap()
            .replace("viewer", "victim");
        payload = text.into_bytes();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(&payload),
            parts[2]
        );
        assert_eq!(
            verifier.verify_at(&tampered, now()).unwrap_err().code(),
            "unknown_key"
        );
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let tampered = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(
            verifier.verify_at(&tampered, now()).unwrap_err().code(),
            "unknown_key"
        );
    }

    #[test]
    fn names_the_fingerprints_tried_for_another_key() {
        let (key, _, _) = setup();
        let other = PrivateKey::generate().unwrap();
        let verifier = Verifier::new([other.public_key()]);
        let token = TokenSigner::new(SigningKey::new(&key).unwrap())
            .sign_at(&claims(), now())
            .unwrap();
        let err = verifier.verify_at(token.as_str(), now()).unwrap_err();
        assert_eq!(
            err,
            Rejection::UnknownKey {
                tried: vec![*other.fingerprint()]
            }
        );
        assert!(err.to_string().contains(&other.fingerprint().to_string()));
        let empty = Verifier::new([]);
        assert!(
            empty
                .verify_at(token.as_str(), now())
                .unwrap_err()
                .to_string()
                .contains("no public keys")
        );
    }

    #[test]
    fn rejects_alg_none_and_hs384() {
        let (_, signer, verifier) = setup();
        let token = signer.sign_at(&claims(), now()).unwrap().into_string();
        let payload = token.split('.').nth(1).unwrap();
        for alg in ["none", "HS384", "RS256", "ES256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let forged = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 48]));
            let err = verifier.verify_at(&forged, now()).unwrap_err();
            assert_eq!(err, Rejection::WrongAlgorithm(alg.into()));
        }
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(
            verifier.verify_at(&none, now()).unwrap_err().code(),
            "wrong_algorithm"
        );
    }

    #[test]
    fn takes_kid_as_a_hint_and_notes_it() {
        let (key, _, verifier) = setup();
        let payload = claims().to_json();
        let kid = r#"{"alg":"ES384","typ":"JWT","kid":"arn:aws:ivs:us-west-2:123456789012:playback-key/abc"}"#;
        let verified = verifier
            .verify_at(&forge(&key, kid, &payload), now())
            .unwrap();
        assert_eq!(verified.notes().len(), 1, "{:?}", verified.notes());
        assert!(
            verified.notes()[0].contains("`kid`"),
            "{:?}",
            verified.notes()
        );
        // A kid naming no key changes nothing: every key is tried.
        let wrong = r#"{"alg":"ES384","typ":"JWT","kid":"another"}"#;
        assert!(
            verifier
                .verify_at(&forge(&key, wrong, &payload), now())
                .is_ok()
        );
        let bad = r#"{"alg":"ES384","typ":"JWT","kid":7}"#;
        let err = verifier
            .verify_at(&forge(&key, bad, &payload), now())
            .unwrap_err();
        assert_eq!(err.code(), "unexpected_header");
        // Member order does not matter, and the documented form has no note.
        let token = forge(&key, r#"{"typ":"JWT","alg":"ES384"}"#, &payload);
        assert!(
            verifier
                .verify_at(&token, now())
                .unwrap()
                .notes()
                .is_empty()
        );
    }

    #[test]
    fn takes_typ_as_advisory_and_refuses_crit() {
        let (key, _, verifier) = setup();
        let payload = claims().to_json();
        for (header, note) in [
            (r#"{"alg":"ES384","typ":"jwt"}"#, "\"jwt\""),
            (r#"{"alg":"ES384","typ":"Jwt"}"#, "\"Jwt\""),
            (r#"{"alg":"ES384","typ":"at+jwt"}"#, "advisory"),
            (r#"{"alg":"ES384"}"#, "no `typ`"),
            (r#"{"alg":"ES384","typ":"JWT","x5t":"abc"}"#, "x5t"),
        ] {
            let verified = verifier
                .verify_at(&forge(&key, header, &payload), now())
                .unwrap();
            assert!(
                verified.notes().iter().any(|n| n.contains(note)),
                "{header}: {:?}",
                verified.notes()
            );
        }
        for header in [
            r#"{"alg":"ES384","typ":5}"#,
            r#"{"alg":"ES384","typ":"JWT","crit":["exp"]}"#,
        ] {
            let err = verifier
                .verify_at(&forge(&key, header, &payload), now())
                .unwrap_err();
            assert_eq!(err.code(), "unexpected_header", "{header}");
        }
        // `alg` stays case-sensitive, and the message says so.
        let err = verifier
            .verify_at(
                &forge(&key, r#"{"alg":"es384","typ":"JWT"}"#, &payload),
                now(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("case-sensitive"), "{err}");
    }

    #[test]
    fn reads_a_fractional_exp_rounded_down_with_a_note() {
        let (key, _, verifier) = setup();
        for exp in ["1800000300.5", "1800000300.0", "1.8000003e9"] {
            let token = forge(
                &key,
                HEADER,
                &format!(r#"{{"aws:channel-arn":"{ARN}","exp":{exp}}}"#),
            );
            let verified = verifier.verify_at(&token, now()).unwrap();
            assert_eq!(verified.claims().expires_at().unix_seconds(), 1_800_000_300);
            assert!(verified.notes()[0].contains("not a whole number"), "{exp}");
            // Rounded down: expired at the whole second, never later.
            let at = now() + Duration::from_secs(300);
            assert_eq!(
                verifier.verify_at(&token, at).unwrap_err().code(),
                "expired"
            );
        }
        // Milliseconds with a fraction are still milliseconds.
        let token = forge(
            &key,
            HEADER,
            &format!(r#"{{"aws:channel-arn":"{ARN}","exp":1800000300000.5}}"#),
        );
        assert_eq!(
            verifier.verify_at(&token, now()).unwrap_err().code(),
            "exp_in_milliseconds"
        );
    }

    #[test]
    fn enforces_nbf_as_rfc_7519_says() {
        let (key, _, verifier) = setup();
        let token = |nbf: &str| {
            forge(
                &key,
                HEADER,
                &format!(r#"{{"aws:channel-arn":"{ARN}","exp":1800003600,"nbf":{nbf}}}"#),
            )
        };
        let ahead = token("1800003000");
        let err = verifier.verify_at(&ahead, now()).unwrap_err();
        assert_eq!(
            err,
            Rejection::NotYetValid {
                nbf: 1_800_003_000,
                wait: Duration::from_secs(3000)
            }
        );
        assert!(err.to_string().contains("50 min ahead"), "{err}");
        assert!(
            verifier
                .clone()
                .leeway(Duration::from_secs(3000))
                .verify_at(&ahead, now())
                .is_ok()
        );
        // Valid from nbf on, with a note; nbf is not an unknown claim.
        let verified = verifier.verify_at(&token("1800000000"), now()).unwrap();
        assert!(verified.unknown_claims().is_empty());
        assert!(
            verified.notes()[0].contains("`nbf`"),
            "{:?}",
            verified.notes()
        );
        // A fractional nbf is rounded up: never valid early.
        assert_eq!(
            verifier
                .verify_at(&token("1799999999.5"), now())
                .map(|_| ()),
            Ok(())
        );
        assert_eq!(
            verifier
                .verify_at(&token("1800000000.5"), now())
                .unwrap_err()
                .code(),
            "not_yet_valid"
        );
        let err = verifier.verify_at(&token("\"soon\""), now()).unwrap_err();
        assert!(
            matches!(&err, Rejection::InvalidClaim(e) if e.claim() == "nbf"),
            "{err}"
        );
    }

    #[test]
    fn says_how_long_ago_a_token_expired() {
        let (_, signer, verifier) = setup();
        let token = signer.sign_at(&claims(), now()).unwrap();
        let later = now() + Duration::from_secs(300 + 3725);
        let err = verifier.verify_at(token.as_str(), later).unwrap_err();
        assert_eq!(err.code(), "expired");
        assert!(err.to_string().contains("1 h 2 min 5 s ago"), "{err}");
        assert!(
            verifier
                .clone()
                .leeway(Duration::from_secs(4000))
                .verify_at(token.as_str(), later)
                .is_ok()
        );
        // exp == now is expired, as in every JWT library.
        assert!(
            verifier
                .verify_at(token.as_str(), now() + Duration::from_secs(300))
                .is_err()
        );
    }

    #[test]
    fn recognises_exp_in_milliseconds() {
        let (key, _, verifier) = setup();
        let token = forge(
            &key,
            HEADER,
            &format!(r#"{{"aws:channel-arn":"{ARN}","exp":1800000300000}}"#),
        );
        let err = verifier.verify_at(&token, now()).unwrap_err();
        assert_eq!(err.code(), "exp_in_milliseconds");
        assert!(err.to_string().contains("never expire"));
    }

    #[test]
    fn refuses_viewer_tokens_valid_for_over_ten_minutes() {
        let (key, _, verifier) = setup();
        let token = forge(
            &key,
            HEADER,
            &format!(r#"{{"aws:channel-arn":"{ARN}","aws:viewer-id":"v","exp":1800000900}}"#),
        );
        let err = verifier.verify_at(&token, now()).unwrap_err();
        assert_eq!(err.code(), "exp_too_far_ahead");
        assert!(err.to_string().contains("15 min"), "{err}");
        let token = forge(
            &key,
            HEADER,
            &format!(
                r#"{{"aws:channel-arn":"{ARN}","aws:single-use-uuid":"6a1a9c5e-0d3b-4c2f-9f4f-0b1f0e3c2a11","exp":1800000601}}"#
            ),
        );
        assert!(
            verifier
                .verify_at(&token, now())
                .unwrap_err()
                .to_string()
                .contains("aws:single-use-uuid")
        );
    }

    #[test]
    fn names_the_claim_at_fault() {
        let (key, _, verifier) = setup();
        for (payload, claim) in [
            (
                format!(
                    r#"{{"aws:channel-arn":"{ARN}","aws:viewer-id":"{}","exp":1800000060}}"#,
                    "x".repeat(41)
                ),
                names::VIEWER_ID,
            ),
            (
                format!(
                    r#"{{"aws:channel-arn":"{ARN}","aws:access-control-allow-origin":"https://a.com/path","exp":1800000060}}"#
                ),
                names::ALLOW_ORIGIN,
            ),
            (
                format!(
                    r#"{{"aws:channel-arn":"{ARN}","aws:maximum-resolution":"4K","exp":1800000060}}"#
                ),
                names::MAXIMUM_RESOLUTION,
            ),
            (
                r#"{"aws:channel-arn":"arn:aws:ivs:us-west-2:1:stream-key/x","exp":1800000060}"#
                    .to_owned(),
                names::CHANNEL_ARN,
            ),
            (format!(r#"{{"aws:channel-arn":"{ARN}"}}"#), names::EXP),
        ] {
            let err = verifier
                .verify_at(&forge(&key, HEADER, &payload), now())
                .unwrap_err();
            match &err {
                Rejection::InvalidClaim(e) => assert_eq!(e.claim(), claim, "{err}"),
                other => panic!("{payload}: {other}"),
            }
            assert!(err.to_string().contains(claim));
        }
    }

    #[test]
    fn refuses_a_token_for_another_channel() {
        let (key, signer, _) = setup();
        let other = ChannelArn::parse("arn:aws:ivs:us-west-2:123456789012:channel/other").unwrap();
        let verifier = Verifier::new([key.public_key()]).expect_channel(other);
        let token = signer.sign_at(&claims(), now()).unwrap();
        let err = verifier.verify_at(token.as_str(), now()).unwrap_err();
        assert_eq!(err.code(), "channel_mismatch");
        assert!(err.to_string().contains("channel/other"));
    }

    #[test]
    fn explains_a_der_signature() {
        let (key, _, verifier) = setup();
        let token = forge(&key, HEADER, &claims().to_json());
        let (input, _) = token.rsplit_once('.').unwrap();
        let der = [0x30u8; 103];
        let bad = format!("{input}.{}", URL_SAFE_NO_PAD.encode(der));
        assert!(
            verifier
                .verify_at(&bad, now())
                .unwrap_err()
                .to_string()
                .contains("DER")
        );
        // A 64-byte r||s under an ES384 header was made with a P-256 key.
        let p256 = format!("{input}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        let err = verifier.verify_at(&p256, now()).unwrap_err().to_string();
        assert!(err.contains("P-256"), "{err}");
        let p521 = format!("{input}.{}", URL_SAFE_NO_PAD.encode([7u8; 132]));
        let err = verifier.verify_at(&p521, now()).unwrap_err().to_string();
        assert!(err.contains("P-521"), "{err}");
    }

    #[test]
    fn verifies_tokens_of_retiring_keys() {
        let old = SigningKey::new(&PrivateKey::generate().unwrap()).unwrap();
        let shared = crate::keyset::SharedKeySet::new(KeySet::new(old));
        let signer = TokenSigner::from_shared(shared.clone());
        let before = signer.sign_at(&claims(), now()).unwrap();
        shared.rotate_to(SigningKey::new(&PrivateKey::generate().unwrap()).unwrap());
        let after = signer.sign_at(&claims(), now()).unwrap();
        let verifier = Verifier::for_key_set(&shared.snapshot());
        assert!(verifier.verify_at(before.as_str(), now()).is_ok());
        assert!(verifier.verify_at(after.as_str(), now()).is_ok());
        assert_ne!(before.fingerprint(), after.fingerprint());
    }
}
