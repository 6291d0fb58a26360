//! Private and public P-384 keys from arbitrary bytes (PEM of every label
//! OpenSSL writes, or DER): no panic, and a key that is read writes back to
//! a form that reads as the same key.
#![no_main]

use ivs_playback_auth::{PrivateKey, PublicKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = std::str::from_utf8(data).ok();
    let mut privates = vec![
        PrivateKey::from_pem_or_der(data),
        PrivateKey::from_der(data),
    ];
    let mut publics = vec![PublicKey::from_pem_or_der(data), PublicKey::from_der(data)];
    if let Some(text) = text {
        privates.push(PrivateKey::from_pem(text));
        publics.push(PublicKey::from_pem(text));
    }
    for key in privates.into_iter().flatten() {
        let der = key.to_pkcs8_der().expect("a key read writes as PKCS#8");
        let again = PrivateKey::from_der(&der).expect("its PKCS#8 reads back");
        assert_eq!(again.fingerprint(), key.fingerprint());
        let pem = key.to_pkcs8_pem().expect("a key read writes as PEM");
        let again = PrivateKey::from_pem(&pem).expect("its PEM reads back");
        assert_eq!(again.fingerprint(), key.fingerprint());
    }
    for key in publics.into_iter().flatten() {
        let again = PublicKey::from_der(key.to_der()).expect("its SPKI reads back");
        assert_eq!(again.fingerprint(), key.fingerprint());
        let again = PublicKey::from_pem(&key.to_pem()).expect("its PEM reads back");
        assert_eq!(again.fingerprint(), key.fingerprint());
    }
});
