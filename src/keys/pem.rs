//! PEM key files, read as OpenSSL's `PEM_read_bio` reads them, and the
//! layouts it refuses explained.
//!
//! Keys that travel through environment variables, secret stores, YAML and
//! web forms arrive re-wrapped, so a strict RFC 7468 reader refuses files that
//! every OpenSSL tool reads. What OpenSSL reads, this reads (the corpus in
//! `tests/data/keys/`, made by `openssl` itself, holds both sides):
//!
//! - text before the BEGIN line and after the END line;
//! - a UTF-8 byte-order mark; CRLF line ends; trailing whitespace on a line;
//! - base64 lines of any length (one long line included), ragged, with spaces
//!   or tabs inside;
//! - one blank line right after the BEGIN line (an empty header section);
//! - `EC PARAMETERS` blocks before the key (`openssl ecparam -genkey`).
//!
//! What OpenSSL refuses is refused with the reason and the fix: literal `\n`
//! sequences, line breaks turned into spaces, an indented BEGIN line,
//! CR-only line ends, blank lines in the body, stripped `=` padding,
//! characters outside base64, a differing END label, lower-case labels, a
//! missing END line, bare base64 without BEGIN/END lines, and header lines.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::asn1;
use crate::error::{KeyError, KeyErrorKind};

/// One decoded PEM block (the body is zeroed when dropped: it may be a
/// private key).
pub(super) struct Block {
    pub(super) label: String,
    pub(super) der: Zeroizing<Vec<u8>>,
}

fn malformed(detail: String) -> KeyError {
    KeyError::new(KeyErrorKind::Malformed, detail)
}

/// Decodes the first PEM block of `text` that is not `EC PARAMETERS`.
/// `wanted` names what the caller expects ("a private key").
pub(super) fn decode(text: &str, wanted: &str) -> Result<Block, KeyError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // OpenSSL reads lines ending in `\n` and strips trailing whitespace (CR
    // included) from each.
    let lines: Vec<&str> = text.split('\n').map(str::trim_end).collect();
    let mut at = 0;
    loop {
        let Some(begin) = (at..lines.len()).find(|&i| begin_label(lines[i]).is_some()) else {
            return Err(diagnose(text, wanted));
        };
        let label = begin_label(lines[begin]).unwrap_or_default();
        let end_line = format!("-----END {label}-----");
        let Some(end) = (begin + 1..lines.len()).find(|&i| lines[i].starts_with("-----END "))
        else {
            return Err(malformed(format!(
                "the PEM block `{label}` has no END line (`{end_line}`): the file is cut short; copy the whole key"
            )));
        };
        if lines[end] != end_line {
            return Err(malformed(format!(
                "the PEM block begins `-----BEGIN {label}-----` but ends `{}`; the BEGIN and END labels must be the same",
                lines[end]
            )));
        }
        if label == "EC PARAMETERS" {
            at = end + 1;
            continue;
        }
        if label == "ENCRYPTED PRIVATE KEY" {
            return Err(super::encrypted());
        }
        let der = body(label, &lines[begin + 1..end], begin + 2)?;
        return Ok(Block {
            label: label.to_owned(),
            der,
        });
    }
}

/// The label of a BEGIN line that starts at column 1, as OpenSSL needs it.
fn begin_label(line: &str) -> Option<&str> {
    line.strip_prefix("-----BEGIN ")?
        .strip_suffix("-----")
        .filter(|l| !l.is_empty() && !l.contains("-----"))
}

/// Decodes the base64 lines between BEGIN and END. `first_line` is the
/// 1-based line number of `lines[0]`, for messages.
fn body(label: &str, lines: &[&str], first_line: usize) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let mut b64 = Zeroizing::new(String::new());
    for (i, line) in lines.iter().enumerate() {
        let number = first_line + i;
        if line.contains(':') {
            if line.starts_with("Proc-Type:") && line.contains("ENCRYPTED") {
                return Err(super::encrypted());
            }
            return Err(malformed(format!(
                "line {number} of the PEM block `{label}` is a header (`{line}`); a key file has none: delete that line and the blank line after it"
            )));
        }
        if line.trim().is_empty() {
            // OpenSSL takes one blank line right after BEGIN as an empty
            // header section, and refuses any other.
            if i == 0 {
                continue;
            }
            return Err(malformed(format!(
                "line {number} of the PEM block `{label}` is a blank line; delete blank lines between BEGIN and END"
            )));
        }
        for c in line.chars().filter(|c| *c != ' ' && *c != '\t') {
            if !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')) {
                let hint = if c == '-' || c == '_' {
                    " (`-` and `_` are base64url; PEM uses standard base64 with `+` and `/`)"
                } else {
                    ""
                };
                return Err(malformed(format!(
                    "line {number} of the PEM block `{label}` has `{}`, which is not base64{hint}; the key was altered in transit: copy it again",
                    c.escape_debug()
                )));
            }
            b64.push(c);
        }
    }
    if b64.is_empty() {
        return Err(malformed(format!("the PEM block `{label}` is empty")));
    }
    if !b64.len().is_multiple_of(4) {
        return Err(malformed(format!(
            "the base64 of the PEM block `{label}` is {} characters, not a multiple of 4: its `=` padding was stripped or the key was cut short; copy the whole key again",
            b64.len()
        )));
    }
    STANDARD.decode(b64.as_bytes()).map(Zeroizing::new).map_err(|_| {
        malformed(format!(
            "the base64 of the PEM block `{label}` is garbled (an `=` inside the text?); copy the key again"
        ))
    })
}

/// Why text with no readable BEGIN line was refused, with the fix.
fn diagnose(text: &str, wanted: &str) -> KeyError {
    if let Some(pos) = text.find("-----BEGIN ") {
        if text.contains("\\n") {
            return malformed(
                "the key has literal `\\n` sequences where line breaks belong (as an environment variable or a JSON string carries them); turn them into line breaks, e.g. `printf '%b\\n' \"$KEY\" > key.pem`".to_owned(),
            );
        }
        if text.contains('\r') && !text.contains('\n') {
            return malformed(
                "the file ends its lines with CR alone (classic Mac OS); convert them to line feeds: `tr '\\r' '\\n' < key.pem > fixed.pem`".to_owned(),
            );
        }
        let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
        let before = &text[line_start..pos];
        if !before.is_empty() && before.trim().is_empty() {
            return malformed(
                "the BEGIN line is indented (as in a YAML block); PEM lines start at column 1: remove the indentation, e.g. `sed 's/^[[:space:]]*//' key.pem > fixed.pem`".to_owned(),
            );
        }
        let line = text[pos..].lines().next().unwrap_or_default();
        let label = line["-----BEGIN ".len()..]
            .split("-----")
            .next()
            .unwrap_or_default();
        return malformed(format!(
            "the `-----BEGIN {label}-----` line, the base64 and the `-----END {label}-----` line must each be on their own line (the line breaks were probably turned into spaces by a web form or a YAML folded string); put them back, or export the key again with `openssl pkey -in KEY -out key.pem`"
        ));
    }
    if let Some(pos) = text.to_ascii_uppercase().find("-----BEGIN ") {
        let line = text[pos..].lines().next().unwrap_or_default();
        return malformed(format!(
            "the PEM BEGIN and END lines must be upper case: `{}`, not `{line}`",
            line.to_ascii_uppercase()
        ));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.is_empty()
        && let Ok(der) = STANDARD.decode(compact.as_bytes())
    {
        let der = Zeroizing::new(der);
        let label = if asn1::is_spki_shaped(&der) {
            "PUBLIC KEY"
        } else if matches!(asn1::pkcs8(&der), asn1::Pkcs8::Plain { .. }) {
            "PRIVATE KEY"
        } else {
            "EC PRIVATE KEY"
        };
        return malformed(format!(
            "this is base64 without its PEM BEGIN and END lines; put `-----BEGIN {label}-----` on a line before it and `-----END {label}-----` on a line after it"
        ));
    }
    malformed(format!(
        "no PEM block (`-----BEGIN ...-----`) found; expected {wanted} in PEM or DER"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64: &str = "MAMCAQE=";

    fn pem(body: &str) -> String {
        format!("-----BEGIN X-----\n{body}\n-----END X-----\n")
    }

    #[test]
    fn reads_what_openssl_reads() {
        for text in [
            pem(B64),
            format!("\u{feff}{}", pem(B64)),
            pem(B64).replace('\n', "\r\n"),
            pem("MAMC\nAQE="),
            pem("MA MC\tAQ E="),
            pem("MAMCAQE=   "),
            format!("junk\n{}more junk", pem(B64)),
            format!("-----BEGIN X-----\n\n{B64}\n-----END X-----"),
        ] {
            let block = decode(&text, "a key").unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(block.label, "X");
            assert_eq!(block.der.as_slice(), [0x30, 3, 2, 1, 1]);
        }
    }

    #[test]
    fn names_what_is_wrong_and_the_fix() {
        for (text, words) in [
            (pem("MAMCAQE").to_owned(), "padding"),
            (pem("MAMC\n\nAQE="), "blank line"),
            (pem("MAMC!QE="), "not base64"),
            (pem("MAMC_QE="), "base64url"),
            (pem("Comment: x\n\nMAMCAQE="), "header"),
            (pem(B64).replace('\n', "\\n"), "literal `\\n`"),
            (pem(B64).replace('\n', " "), "own line"),
            (pem(B64).replace('\n', "\r"), "CR alone"),
            (format!("  {}", pem(B64)), "indented"),
            (pem(B64).to_lowercase(), "upper case"),
            ("-----BEGIN X-----\nMAMCAQE=\n".to_owned(), "no END line"),
            (
                "-----BEGIN X-----\nMAMCAQE=\n-----END Y-----\n".to_owned(),
                "must be the same",
            ),
            (format!("{B64}\n"), "without its PEM BEGIN and END lines"),
            ("hello".to_owned(), "no PEM block"),
        ] {
            let err = decode(&text, "a key")
                .err()
                .unwrap_or_else(|| panic!("{text:?} was read"));
            assert_eq!(err.kind(), KeyErrorKind::Malformed);
            assert!(err.to_string().contains(words), "{text:?}: {err}");
        }
    }
}
