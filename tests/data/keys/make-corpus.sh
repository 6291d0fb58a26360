#!/usr/bin/env bash
# Makes the key corpus: P-384 keys written by the `openssl` CLI in the layouts
# users hand us (SEC1, PKCS#8, DER, explicit curve parameters, compressed
# points, no public key, encrypted) and re-wrapped the way environment
# variables, secret stores, YAML and web forms re-wrap them, plus keys of other
# kinds. The files are committed; tests/key_corpus.rs reads every one.
#
# MANIFEST, one line per file, tab-separated:
#   FILE  KIND(private|public)  OPENSSL(reads|refuses)  EXPECT
# OPENSSL is what `openssl pkey` says of the file, asked here. EXPECT is the
# IVS fingerprint (MD5 of the named-curve, uncompressed SubjectPublicKeyInfo,
# computed by openssl) when the file holds a P-384 key that openssl reads:
# such a file must be read, everywhere a key is taken. Otherwise EXPECT is
# `refused:` and words the refusal must contain (written below, by hand).
#
#   tests/data/keys/make-corpus.sh [OUT_DIR]   # default: this directory
set -euo pipefail
out=${1:-$(dirname "$0")}
command -v openssl >/dev/null || { echo "openssl is needed (apt-get install openssl)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
mkdir -p "$out"
cd "$out"
rm -f ./*.pem ./*.der ./*.b64 ./*.txt MANIFEST
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The keys, as the IVS docs make them.
openssl ecparam -name secp384r1 -genkey -noout -out sec1.pem
openssl ecparam -name secp384r1 -genkey -out "$work/with-params.pem"
cp "$work/with-params.pem" sec1-with-ec-parameters.pem
openssl pkey -in sec1.pem -out pkcs8.pem
openssl ec -in sec1.pem -outform DER -out sec1.der 2>/dev/null
openssl pkey -in sec1.pem -outform DER -out pkcs8.der
openssl ec -in sec1.pem -param_enc explicit -out sec1-explicit.pem 2>/dev/null
openssl pkey -in sec1-explicit.pem -out pkcs8-explicit.pem
openssl pkey -in sec1-explicit.pem -outform DER -out pkcs8-explicit.der
openssl ec -in sec1.pem -conv_form compressed -out sec1-compressed.pem 2>/dev/null
openssl ec -in sec1.pem -param_enc explicit -conv_form compressed -out sec1-explicit-compressed.pem 2>/dev/null
openssl ec -in sec1.pem -no_public -out sec1-no-public.pem 2>/dev/null
openssl pkcs8 -topk8 -in sec1.pem -v2 aes-256-cbc -passout pass:corpus -out pkcs8-encrypted.pem
openssl ec -in sec1.pem -aes128 -passout pass:corpus -out sec1-legacy-encrypted.pem 2>/dev/null
# Public keys.
openssl ec -in sec1.pem -pubout -out spki.pem 2>/dev/null
openssl ec -in sec1.pem -pubout -outform DER -out spki.der 2>/dev/null
openssl ec -in sec1.pem -pubout -conv_form compressed -out spki-compressed.pem 2>/dev/null
openssl ec -in sec1.pem -pubout -param_enc explicit -out spki-explicit.pem 2>/dev/null
# Keys of other kinds.
openssl ecparam -name prime256v1 -genkey -noout -out p256.pem
openssl ec -in p256.pem -param_enc explicit -out p256-explicit.pem 2>/dev/null
openssl ecparam -name secp521r1 -genkey -noout -out p521.pem
openssl ecparam -name secp256k1 -genkey -noout -out secp256k1.pem
openssl genpkey -algorithm ed25519 -out ed25519.pem
openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:1024 -out rsa.pem 2>/dev/null
openssl pkey -in rsa.pem -pubout -out rsa-public.pem

# Re-wrapped copies: the same bytes of key, other text around them.
python3 - <<'EOF'
import base64

def parts(path):
    lines = open(path).read().strip().splitlines()
    return lines[0], "".join(lines[1:-1]), lines[-1]

def write(name, text):
    with open(name, "w", newline="") as f:
        f.write(text)

def wrap(b64, width):
    return "\n".join(b64[i:i + width] for i in range(0, len(b64), width))

for src in ["sec1", "pkcs8", "spki", "pkcs8-explicit"]:
    begin, b64, end = parts(src + ".pem")
    write(f"{src}-one-line.pem", f"{begin}\n{b64}\n{end}\n")
    if src != "sec1":
        continue
    write(f"{src}-76-columns.pem", f"{begin}\n{wrap(b64, 76)}\n{end}\n")
    write(f"{src}-20-columns.pem", f"{begin}\n{wrap(b64, 20)}\n{end}\n")
    write(f"{src}-ragged-lines.pem", f"{begin}\n{b64[:64]}\n{b64[64:90]}\n{b64[90:]}\n{end}\n")
    write(f"{src}-crlf.pem", f"{begin}\r\n{wrap(b64, 64)}\r\n{end}\r\n".replace("\n", "\r\n").replace("\r\r", "\r"))
    write(f"{src}-bom.pem", f"\ufeff{begin}\n{wrap(b64, 64)}\n{end}\n")
    write(f"{src}-bom-crlf.pem", f"\ufeff{begin}\r\n" + wrap(b64, 64).replace("\n", "\r\n") + f"\r\n{end}\r\n")
    write(f"{src}-trailing-whitespace.pem", f"{begin}  \n" + "\n".join(l + " \t" for l in wrap(b64, 64).split("\n")) + f"\n{end} \n")
    write(f"{src}-spaces-in-base64.pem", f"{begin}\n" + " ".join(b64[i:i + 16] for i in range(0, len(b64), 16)) + f"\n{end}\n")
    write(f"{src}-tabs-between-lines.pem", f"{begin}\n" + "\t".join(wrap(b64, 64).split("\n")) + f"\n{end}\n")
    write(f"{src}-no-final-newline.pem", f"{begin}\n{wrap(b64, 64)}\n{end}")
    write(f"{src}-text-around.pem", f"Production playback key, do not share\n\n{begin}\n{wrap(b64, 64)}\n{end}\nrotated 2025-01-01\n")
    write(f"{src}-blank-line-after-begin.pem", f"{begin}\n\n{wrap(b64, 64)}\n{end}\n")
    # Layouts OpenSSL refuses: the reader must say what is wrong and how to fix it.
    write(f"{src}-literal-backslash-n.txt", f"{begin}\\n{wrap(b64, 64)}\\n{end}\\n".replace("\n", "\\n"))
    write(f"{src}-newlines-as-spaces.txt", f"{begin} {wrap(b64, 64).replace(chr(10), ' ')} {end}\n")
    write(f"{src}-indented.txt", "    " + f"{begin}\n{wrap(b64, 64)}\n{end}\n".replace("\n", "\n    ").rstrip() + "\n")
    write(f"{src}-cr-only.txt", f"{begin}\r{wrap(b64, 64)}\r{end}\r".replace("\n", "\r"))
    write(f"{src}-blank-line-in-body.txt", f"{begin}\n{b64[:64]}\n\n{b64[64:]}\n{end}\n")
    write(f"{src}-padding-stripped.txt", f"{begin}\n{wrap(b64.rstrip('='), 64)}\n{end}\n")
    write(f"{src}-not-base64.txt", f"{begin}\n{b64[:10]}!{b64[10:]}\n{end}\n")
    write(f"{src}-end-label-differs.txt", f"{begin}\n{wrap(b64, 64)}\n-----END PRIVATE KEY-----\n")
    write(f"{src}-lowercase-label.txt", f"{begin.lower()}\n{wrap(b64, 64)}\n{end.lower()}\n")
    write(f"{src}-no-end-line.txt", f"{begin}\n{wrap(b64, 64)}\n")
    write(f"{src}-base64-only.b64", f"{wrap(b64, 64)}\n")
EOF

# What the reader must say of files it refuses (the words a fix starts from).
declare -A refusal=(
  [pkcs8-encrypted.pem]="encrypted"
  [sec1-legacy-encrypted.pem]="encrypted"
  [p256.pem]="P-256"
  [p256-explicit.pem]="P-256"
  [p521.pem]="P-521"
  [secp256k1.pem]="secp256k1"
  [ed25519.pem]="Ed25519"
  [rsa.pem]="RSA"
  [rsa-public.pem]="RSA"
  [sec1-literal-backslash-n.txt]='literal `\n`'
  [sec1-newlines-as-spaces.txt]="own line"
  [sec1-indented.txt]="indented"
  [sec1-cr-only.txt]="CR"
  [sec1-blank-line-in-body.txt]="blank line"
  [sec1-padding-stripped.txt]="padding"
  [sec1-not-base64.txt]="not base64"
  [sec1-end-label-differs.txt]="END"
  [sec1-lowercase-label.txt]="upper case"
  [sec1-no-end-line.txt]="no END line"
  [sec1-base64-only.b64]="BEGIN"
)

fingerprint() { # file [-pubin] [DER] -> canonical IVS fingerprint, as openssl computes it
  local file=$1 pubin=${2:-} form=${3:-PEM}
  # shellcheck disable=SC2086
  openssl pkey $pubin -inform "$form" -in "$file" -pubout 2>/dev/null |
    openssl ec -pubin -param_enc named_curve -conv_form uncompressed -pubout -outform DER 2>/dev/null |
    md5sum | cut -c1-32 | sed 's/../&:/g; s/:$//'
}

printf '# FILE\tKIND\tOPENSSL\tEXPECT (made by make-corpus.sh)\n' >MANIFEST
for file in $(ls -1 ./*.pem ./*.der ./*.txt ./*.b64 | sed 's|^\./||' | sort); do
  kind=private pubin=
  case $file in spki*|rsa-public.pem) kind=public pubin=-pubin ;; esac
  form=PEM
  case $file in *.der) form=DER ;; esac
  # shellcheck disable=SC2086
  if openssl pkey $pubin -inform "$form" -in "$file" -noout -passin pass:wrong 2>/dev/null; then
    verdict=reads
  else
    verdict=refuses
  fi
  words=${refusal[$file]:-}
  case "$verdict:$file:$words" in
    reads:*.txt:* | reads:*.b64:*)
      echo "$file: openssl reads this layout, so the reader must too; move it out of the refused layouts" >&2
      exit 1 ;;
    reads:*:) expect=$(fingerprint "$file" "$pubin" "$form") ;;
    *:*:?*) expect="refused:$words" ;;
    *)
      echo "$file: openssl refuses it but no refusal words are given for it" >&2
      exit 1 ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$file" "$kind" "$verdict" "$expect" >>MANIFEST
done
cat MANIFEST
