//! Every key file of the corpus in `tests/data/keys/` (made by `openssl`,
//! see its `make-corpus.sh`) read by the library: each P-384 key that
//! OpenSSL reads is read, with the fingerprint OpenSSL computed; each file
//! refused says why in the words the manifest asks for.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use ivs_playback_auth::{PrivateKey, PublicKey};

struct Entry {
    file: String,
    public: bool,
    openssl_reads: bool,
    expect: Result<String, String>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keys")
}

fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 4, "MANIFEST line {line:?}");
            Entry {
                file: cols[0].to_owned(),
                public: cols[1] == "public",
                openssl_reads: cols[2] == "reads",
                expect: match cols[3].strip_prefix("refused:") {
                    Some(words) => Err(words.to_owned()),
                    None => Ok(cols[3].to_owned()),
                },
            }
        })
        .collect()
}

#[test]
fn the_corpus_holds_every_layout_kind() {
    let entries = manifest();
    let read = entries.iter().filter(|e| e.expect.is_ok()).count();
    let refused = entries.len() - read;
    assert!(read >= 25, "only {read} readable files");
    assert!(refused >= 15, "only {refused} refused files");
    // Every file the manifest names is there, and every file there is named.
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !["MANIFEST", "make-corpus.sh", ".gitattributes"].contains(&n.as_str()))
        .collect();
    on_disk.sort();
    let mut named: Vec<String> = entries.iter().map(|e| e.file.clone()).collect();
    named.sort();
    assert_eq!(on_disk, named);
}

#[test]
fn reads_every_p384_key_file_that_openssl_reads() {
    for entry in manifest() {
        let Ok(want) = &entry.expect else { continue };
        assert!(entry.openssl_reads, "{}", entry.file);
        let path = corpus_dir().join(&entry.file);
        let public = PublicKey::read_file(&path).unwrap_or_else(|e| panic!("{}: {e}", entry.file));
        assert_eq!(&public.fingerprint().to_string(), want, "{}", entry.file);
        if !entry.public {
            let private =
                PrivateKey::read_file(&path).unwrap_or_else(|e| panic!("{}: {e}", entry.file));
            assert_eq!(&private.fingerprint().to_string(), want, "{}", entry.file);
        }
    }
}

#[test]
fn refuses_the_others_naming_the_problem_and_the_file() {
    for entry in manifest() {
        let Err(words) = &entry.expect else { continue };
        let path = corpus_dir().join(&entry.file);
        let err = if entry.public {
            PublicKey::read_file(&path).unwrap_err()
        } else {
            PrivateKey::read_file(&path).unwrap_err()
        }
        .to_string();
        assert!(err.contains(words.as_str()), "{}: {err}", entry.file);
        assert!(err.contains(&entry.file), "{}: {err}", entry.file);
        assert!(!err.contains('\n'), "{}: {err}", entry.file);
        // Asked for its public half (`keys fingerprint`, `verify
        // --public-key`), a private key file is refused for the same reason.
        if !entry.public {
            let err = PublicKey::read_file(&path).unwrap_err().to_string();
            assert!(
                err.contains(words.as_str()),
                "{} as public: {err}",
                entry.file
            );
        }
    }
}

#[test]
fn a_public_key_read_from_any_layout_is_canonical() {
    // Explicit parameters and compressed points are read, and the key is
    // written back (and fingerprinted) as named curve, uncompressed: what
    // `openssl ec -pubout` writes and what IVS is given.
    let dir = corpus_dir();
    let canonical = std::fs::read_to_string(dir.join("spki.pem")).unwrap();
    for file in [
        "spki-explicit.pem",
        "spki-compressed.pem",
        "spki.der",
        "sec1-explicit.pem",
    ] {
        let key = PublicKey::read_file(dir.join(file)).unwrap();
        assert_eq!(key.to_pem(), canonical, "{file}");
    }
}
