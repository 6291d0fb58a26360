"""Verify tokens made by the ivs-playback-auth CLI with PyJWT + cryptography.

Input: a JSON-lines file, one object per token:
  {"name": ..., "public_key": PATH, "token": ..., "claims": {...}, "ttl": N}
where "claims" is what the CLI says it signed (its --json output).

For each token: the header must be exactly {"alg":"ES384","typ":"JWT"} (bytes),
the signature the raw 96-byte r||s, PyJWT must verify it (ES384, exp required)
and decode exactly the expected claims, and exp must be Unix seconds within
the requested TTL. Then the token is tampered with and verified against a
foreign key: PyJWT must refuse both. Exits non-zero on the first failure.
"""

import base64
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization

HEADER = b'{"alg":"ES384","typ":"JWT"}'


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fail(name: str, why: str) -> None:
    print(f"FAIL {name}: {why}", file=sys.stderr)
    sys.exit(1)


def main(path: str) -> None:
    foreign = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    checked = 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            case = json.loads(line)
            name, token = case["name"], case["token"]
            with open(case["public_key"], "rb") as f:
                public_key = f.read()
            key = serialization.load_pem_public_key(public_key)
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
                fail(name, "public key is not P-384")

            header_b64, payload_b64, signature_b64 = token.split(".")
            if "=" in token:
                fail(name, "token has base64 padding")
            if b64url_decode(header_b64) != HEADER:
                fail(name, f"header is {b64url_decode(header_b64)!r}")
            if len(b64url_decode(signature_b64)) != 96:
                fail(name, "signature is not raw 96-byte r||s")

            now = int(time.time())
            decoded = jwt.decode(
                token, public_key, algorithms=["ES384"], options={"require": ["exp"]}
            )
            if decoded != case["claims"]:
                fail(name, f"claims {decoded} != {case['claims']}")
            exp = decoded["exp"]
            if not isinstance(exp, int) or not (now < exp <= now + case["ttl"] + 5):
                fail(name, f"exp {exp} is not Unix seconds within ttl {case['ttl']} of {now}")

            payload = json.loads(b64url_decode(payload_b64))
            payload["aws:channel-arn"] = payload["aws:channel-arn"][:-1] + "X"
            tampered = ".".join([header_b64, b64url_encode(json.dumps(payload).encode()), signature_b64])
            for bad, key_pem, what in ((tampered, public_key, "tampered"), (token, foreign, "foreign key")):
                try:
                    jwt.decode(bad, key_pem, algorithms=["ES384"])
                except jwt.InvalidSignatureError:
                    pass
                else:
                    fail(name, f"PyJWT accepted the {what} token")
            checked += 1
            print(f"ok   {name}")
    if checked == 0:
        fail(path, "no tokens to check")
    print(f"PyJWT {jwt.__version__} verified {checked} tokens")


if __name__ == "__main__":
    main(sys.argv[1])
