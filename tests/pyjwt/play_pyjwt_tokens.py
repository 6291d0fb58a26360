"""Tokens PyJWT makes itself, as integrations write them, played against the local IVS.

Usage: play_pyjwt_tokens.py PATH_TO_BINARY

Starts `ivs-playback-auth local-ivs` on 127.0.0.1:0, makes a private channel and imports a
P-384 key with boto3 (tests/boto3/requirements.txt, installed beside PyJWT by .ci/run), then
plays tokens PyJWT signs in the shapes other signers use: `exp` from `time.time() + 300`
(a fraction), `exp` as a float with `.0`, a `kid` header set to the key-pair ARN, `typ` in
lower case, `nbf` passed and ahead. Each must play or be refused as RFC 7519 says, in the
edge's JSON shape; the CLI's `verify` must accept the same tokens with a note saying what IVS
does not promise. Exits non-zero on the first failure.
"""

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import boto3
import jwt
from botocore.config import Config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

REGION = "us-west-2"
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("content-type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type"), e.read().decode()


def refusal(status, content_type, body, want_status, words):
    check(status == want_status, f"expected {want_status}, got {status}: {body}")
    check(content_type == "application/json", f"content type {content_type}: {body}")
    answer = json.loads(body)[0]
    check(answer["type"] == "error" and words in answer["error"], f"expected {words!r}: {body}")


def main(binary):
    server = subprocess.Popen(
        [binary, "local-ivs", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True
    )
    try:
        endpoint = server.stdout.readline().strip()
        check(endpoint.startswith("http://127.0.0.1:"), f"endpoint line: {endpoint!r}")
        run(binary, endpoint)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"PyJWT {jwt.__version__}: {checks} checks passed, its own tokens against the local IVS")


def run(binary, endpoint):
    ivs = boto3.client(
        "ivs", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="AKIDPYJWT",
        aws_secret_access_key="pyjwt", config=Config(retries={"total_max_attempts": 1}),
    )
    key = ec.generate_private_key(ec.SECP384R1())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_arn = ivs.import_playback_key_pair(publicKeyMaterial=public_pem)["keyPair"]["arn"]
    channel = ivs.create_channel(name="pyjwt", authorized=True)["channel"]
    arn, url = channel["arn"], channel["playbackUrl"]

    def token(headers=None, **claims):
        body = {"aws:channel-arn": arn, "exp": time.time() + 300}
        body.update(claims)
        return jwt.encode(body, private_pem, algorithm="ES384", headers=headers)

    plays = {
        "exp = time.time() + 300": token(),
        "exp as a float with .0": token(exp=float(int(time.time()) + 300)),
        "kid = the key-pair ARN": token(headers={"kid": key_arn}),
        "kid naming no key": token(headers={"kid": "some-other-key"}),
        "typ in lower case": token(headers={"typ": "jwt"}),
        "nbf a minute ago, fractional": token(nbf=time.time() - 60.5),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as public_file:
        public_file.write(public_pem)
        public_file.flush()
        for name, t in plays.items():
            # PyJWT itself accepts what it made: the cases are valid JWTs.
            jwt.decode(t, public_pem, algorithms=["ES384"])
            status, _, body = get(f"{url}?token={t}")
            check(status == 200 and body.startswith("#EXTM3U"), f"{name}: {status} {body[:300]}")
            # `verify` accepts it and says what IVS does not promise.
            out = subprocess.run(
                [binary, "verify", "--json", "--public-key", public_file.name, f"{url}?token={t}#t=10"],
                capture_output=True, text=True,
            )
            check(out.returncode == 0, f"{name}: verify: {out.stdout} {out.stderr}")
            check(json.loads(out.stdout)["notes"], f"{name}: verify gave no note: {out.stdout}")
            print(f"ok   plays: {name}")

    ahead = token(nbf=time.time() + 3600, exp=time.time() + 7200)
    try:
        jwt.decode(ahead, public_pem, algorithms=["ES384"])
        check(False, "PyJWT accepted a token before its nbf")
    except jwt.ImmatureSignatureError:
        pass
    refusal(*get(f"{url}?token={ahead}"), 403, "not valid yet")
    print("ok   refused: nbf an hour ahead")
    t = token()
    refusal(*get(f"{url}?token={t}&token={t}"), 403, "2 `token`")
    print("ok   refused: the token parameter twice, in the edge's JSON")
    late = token(exp=time.time() - 0.5)
    refusal(*get(f"{url}?token={late}"), 403, "expired")
    print("ok   refused: exp half a second ago")


if __name__ == "__main__":
    main(sys.argv[1])
