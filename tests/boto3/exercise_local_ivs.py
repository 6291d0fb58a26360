"""Drive the local IVS with boto3, an independent client, over HTTP.

Usage: exercise_local_ivs.py PATH_TO_BINARY

Starts `ivs-playback-auth local-ivs` on 127.0.0.1:0 with a verified credential
(so botocore's own SigV4 signer is checked by our re-signing), exercises every
implemented operation and error, checks response shapes against the model
botocore loaded, plays tokens signed by PyJWT (an independent signer), injects
faults, then stops the server. Exits non-zero on the first failure.
"""

import base64
import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import boto3
import jwt
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

KEY, SECRET, ACCOUNT, REGION = "AKIDBOTO3TEST", "boto3-secret", "111122223333", "us-west-2"
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def expect_error(code, status, fn, **kwargs):
    try:
        fn(**kwargs)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        got_status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        check(got == code and got_status == status, f"{fn.__name__}: expected {code}/{status}, got {got}/{got_status}")
        return e
    raise AssertionError(f"{fn.__name__} should have failed with {code}")


def shape_check(client, operation, response):
    """Every member of the response is in the operation's output shape, with its type."""
    model = client.meta.service_model.operation_model(operation).output_shape

    def walk(shape, value, path):
        kinds = {"string": str, "boolean": bool, "integer": int, "long": int, "map": dict, "structure": dict, "list": list}
        want = kinds.get(shape.type_name)
        if want is not None:
            check(isinstance(value, want), f"{operation}: {path} is {type(value).__name__}, model says {shape.type_name}")
        if shape.type_name == "structure":
            for k, v in value.items():
                check(k in shape.members, f"{operation}: {path}.{k} is not in the model")
                walk(shape.members[k], v, f"{path}.{k}")
        elif shape.type_name == "list":
            for i, v in enumerate(value):
                walk(shape.member, v, f"{path}[{i}]")
        elif shape.type_name == "map":
            for k, v in value.items():
                walk(shape.value, v, f"{path}.{k}")
        if shape.type_name == "string" and getattr(shape, "enum", None):
            # IVS documents preset "" for BASIC and STANDARD channels, outside the enum.
            documented_empty = shape.name == "TranscodePreset" and value == ""
            check(value in shape.enum or documented_empty, f"{operation}: {path}={value} not in {shape.enum}")

    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    if model is not None:
        walk(model, body, operation)


def pem_public(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def fingerprint(private_key):
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ":".join(f"{b:02x}" for b in hashlib.md5(der).digest())


def get(url, origin=None):
    request = urllib.request.Request(url, headers={"Origin": origin} if origin else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.status


def post_json(url, body):
    """A test-control POST: (status, parsed body), errors included."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def main(binary):
    server = subprocess.Popen(
        [binary, "local-ivs", "--listen", "127.0.0.1:0", "--test-controls", "--credential", f"{KEY}:{SECRET}:{ACCOUNT}",
         "--missing-bucket", "gone-bucket"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = server.stdout.readline().strip()
        check(endpoint.startswith("http://127.0.0.1:"), f"endpoint line: {endpoint!r}")
        run(endpoint)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"boto3 {boto3.__version__}: {checks} checks passed against the local IVS")


def run(endpoint):
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    ivs = boto3.client("ivs", region_name=REGION, endpoint_url=endpoint, aws_access_key_id=KEY,
                       aws_secret_access_key=SECRET, config=config)

    # Channels.
    out = ivs.create_channel(name="boto3-main", authorized=True, tags={"team": "video"})
    shape_check(ivs, "CreateChannel", out)
    channel = out["channel"]
    arn = channel["arn"]
    check(arn.startswith(f"arn:aws:ivs:{REGION}:{ACCOUNT}:channel/"), arn)
    check(channel["authorized"] is True and channel["latencyMode"] == "LOW" and channel["type"] == "STANDARD", channel)
    check(out["streamKey"]["channelArn"] == arn, out["streamKey"])
    shape_check(ivs, "GetChannel", ivs.get_channel(arn=arn))
    out = ivs.update_channel(arn=arn, name="boto3-renamed", latencyMode="NORMAL")
    shape_check(ivs, "UpdateChannel", out)
    check(out["channel"]["name"] == "boto3-renamed" and out["channel"]["latencyMode"] == "NORMAL", out)
    for i in range(5):
        ivs.create_channel(name=f"boto3-{i}")
    pages = list(ivs.get_paginator("list_channels").paginate(PaginationConfig={"PageSize": 2}))
    check(len(pages) == 3, f"{len(pages)} pages of channels")
    for page in pages:
        shape_check(ivs, "ListChannels", page)
        for summary in page["channels"]:
            check("playbackUrl" not in summary, "ChannelSummary has no playbackUrl")
    names = [c["name"] for p in pages for c in p["channels"]]
    check(len(names) == 6 and len(set(names)) == 6, names)
    check([c["arn"] for c in ivs.list_channels(filterByName="boto3-renamed")["channels"]] == [arn], "filterByName")
    expect_error("ConflictException", 409, ivs.list_channels, filterByName="a", filterByRecordingConfigurationArn="")
    missing = f"arn:aws:ivs:{REGION}:{ACCOUNT}:channel/missing1234"
    out = ivs.batch_get_channel(arns=[arn, missing])
    shape_check(ivs, "BatchGetChannel", out)
    check(len(out["channels"]) == 1 and out["errors"][0]["arn"] == missing, out["errors"])
    expect_error("ResourceNotFoundException", 404, ivs.get_channel, arn=missing)
    expect_error("ValidationException", 400, ivs.get_channel, arn="arn:aws:ivs:us-west-2:1:stream-key/x")
    expect_error("ValidationException", 400, ivs.create_channel, name="no spaces allowed")
    expect_error("ValidationException", 400, ivs.list_channels, nextToken="garbage")

    # Stream keys.
    keys = ivs.list_stream_keys(channelArn=arn)
    shape_check(ivs, "ListStreamKeys", keys)
    key_arn = keys["streamKeys"][0]["arn"]
    shape_check(ivs, "GetStreamKey", ivs.get_stream_key(arn=key_arn))
    expect_error("ServiceQuotaExceededException", 402, ivs.create_stream_key, channelArn=arn)
    ivs.delete_stream_key(arn=key_arn)
    out = ivs.create_stream_key(channelArn=arn, tags={"k": "v"})
    shape_check(ivs, "CreateStreamKey", out)
    key_arn = out["streamKey"]["arn"]
    missing_key = f"arn:aws:ivs:{REGION}:{ACCOUNT}:stream-key/missing1234"
    out = ivs.batch_get_stream_key(arns=[key_arn, missing_key, key_arn])
    shape_check(ivs, "BatchGetStreamKey", out)
    check([k["arn"] for k in out["streamKeys"]] == [key_arn] and out["streamKeys"][0]["value"].startswith("sk_"), out)
    check([e["arn"] for e in out["errors"]] == [missing_key] and out["errors"][0]["code"] == "ResourceNotFoundException", out)
    # botocore checks minimum lengths itself: `raw` lets the server answer.
    raw = boto3.client("ivs", region_name=REGION, endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                       config=config.merge(Config(parameter_validation=False)))
    expect_error("ValidationException", 400, raw.batch_get_stream_key, arns=[])

    # Playback key pairs.
    private_keys = [ec.generate_private_key(ec.SECP384R1()) for _ in range(4)]
    pair_arns = []
    for pk in private_keys[:3]:
        out = ivs.import_playback_key_pair(publicKeyMaterial=pem_public(pk), name="boto3")
        shape_check(ivs, "ImportPlaybackKeyPair", out)
        check(out["keyPair"]["fingerprint"] == fingerprint(pk), "fingerprint = MD5 of DER SPKI")
        pair_arns.append(out["keyPair"]["arn"])
    expect_error("ServiceQuotaExceededException", 402, ivs.import_playback_key_pair, publicKeyMaterial=pem_public(private_keys[3]))
    expect_error("ConflictException", 409, ivs.import_playback_key_pair, publicKeyMaterial=pem_public(private_keys[0]))
    p256 = ec.generate_private_key(ec.SECP256R1())
    expect_error("ValidationException", 400, ivs.import_playback_key_pair, publicKeyMaterial=pem_public(p256))
    expect_error("ValidationException", 400, ivs.import_playback_key_pair, publicKeyMaterial="garbage")
    shape_check(ivs, "GetPlaybackKeyPair", ivs.get_playback_key_pair(arn=pair_arns[0]))
    listed = list(ivs.get_paginator("list_playback_key_pairs").paginate(PaginationConfig={"PageSize": 1}))
    summaries = [k for p in listed for k in p["keyPairs"]]
    check([k["arn"] for k in summaries] == pair_arns, "key pairs listed in order")
    check(all("fingerprint" not in k for k in summaries), "summaries carry no fingerprint")
    out = ivs.delete_playback_key_pair(arn=pair_arns[2])
    check(out["ResponseMetadata"]["HTTPStatusCode"] == 200, "DeletePlaybackKeyPair answers 200")
    expect_error("ResourceNotFoundException", 404, ivs.delete_playback_key_pair, arn=pair_arns[2])

    recording_arn, policy_arn = recording_configurations(ivs, raw), restriction_policies(ivs, raw)
    references(ivs, recording_arn, policy_arn)

    # Tags, on every taggable resource type.
    for resource in (arn, pair_arns[0], key_arn, recording_arn, policy_arn):
        ivs.tag_resource(resourceArn=resource, tags={"a": "1", "b": "2"})
        ivs.untag_resource(resourceArn=resource, tagKeys=["a"])
        tags = ivs.list_tags_for_resource(resourceArn=resource)
        shape_check(ivs, "ListTagsForResource", tags)
        check(tags["tags"].get("b") == "2" and "a" not in tags["tags"], tags)
        expect_error("ValidationException", 400, ivs.tag_resource, resourceArn=resource, tags={"aws:x": "1"})
    expect_error("ResourceNotFoundException", 404, ivs.list_tags_for_resource, resourceArn=missing)
    expect_error("ResourceNotFoundException", 404, ivs.tag_resource,
                 resourceArn=f"arn:aws:ivs:{REGION}:{ACCOUNT}:playback-restriction-policy/missing1234", tags={"a": "1"})

    # Playback with tokens signed by PyJWT.
    url = ivs.get_channel(arn=arn)["channel"]["playbackUrl"]
    signer = private_keys[0].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def token(**claims):
        body = {"aws:channel-arn": arn, "exp": int(time.time()) + 300}
        body.update(claims)
        return jwt.encode(body, signer, algorithm="ES384", headers={"typ": "JWT"})

    status, body = get(f"{url}?token={token()}")
    check(status == 200 and body.startswith("#EXTM3U"), f"PyJWT token plays: {status} {body[:200]}")
    status, body = get(f"{url}?token={token(exp=int(time.time()) - 10)}")
    refusal = json.loads(body)[0]
    check(status == 403 and refusal["error_code"] == "invalid_playback_auth_token" and "expired" in refusal["error"], body)
    status, body = get(f"{url}?token={token(**{'aws:viewer-id': 'v1'})}")
    check(status == 200, body)
    ivs.start_viewer_session_revocation(channelArn=arn, viewerId="v1")
    status, body = get(f"{url}?token={token(**{'aws:viewer-id': 'v1'})}")
    check(status == 403 and "revoked" in json.loads(body)[0]["error"], body)
    out = ivs.batch_start_viewer_session_revocation(viewerSessions=[
        {"channelArn": arn, "viewerId": "v2"}, {"channelArn": missing, "viewerId": "v3"}])
    shape_check(ivs, "BatchStartViewerSessionRevocation", out)
    check(len(out["errors"]) == 1 and out["errors"][0]["viewerId"] == "v3", out["errors"])
    status, body = get(f"{url}?token={token(**{'aws:access-control-allow-origin': 'https://a.example.com'})}", "https://b.example.com")
    check(status == 403 and "origin" in json.loads(body)[0]["error"], body)

    # SigV4: botocore's signature passed every call above; a wrong secret does not.
    wrong = boto3.client("ivs", region_name=REGION, endpoint_url=endpoint, aws_access_key_id=KEY,
                         aws_secret_access_key="wrong", config=config)
    expect_error("InvalidSignatureException", 403, wrong.list_channels)

    # Faults.
    check(post(f"{endpoint}/_local/faults", {"operation": "ListChannels", "count": 1, "error": "ThrottlingException"}) == 200, "fault")
    expect_error("ThrottlingException", 429, ivs.list_channels)
    post(f"{endpoint}/_local/faults", {"operation": "GetChannel", "error": "ServiceUnavailable"})
    expect_error("ServiceUnavailable", 503, ivs.get_channel, arn=arn)
    post(f"{endpoint}/_local/faults", {"operation": "ListChannels", "drop": True})
    try:
        ivs.list_channels()
        raise AssertionError("a dropped connection should fail")
    except (ConnectionClosedError, EndpointConnectionError, ClientError) as e:
        check(not isinstance(e, ClientError), f"dropped connection: {e}")
    ivs.list_channels()

    streams(ivs, endpoint)

    # Deleting: a live channel is stopped first (409 otherwise).
    expect_error("ConflictException", 409, ivs.delete_channel, arn=arn)
    ivs.stop_stream(channelArn=arn)
    ivs.delete_channel(arn=arn)
    expect_error("ResourceNotFoundException", 404, ivs.get_channel, arn=arn)


def recording_configurations(ivs, raw):
    """CreateRecordingConfiguration and its kin; answers the ARN of one that is ACTIVE."""
    out = ivs.create_recording_configuration(
        name="boto3-archive", destinationConfiguration={"s3": {"bucketName": "boto3-recordings"}},
        thumbnailConfiguration={"recordingMode": "INTERVAL", "targetIntervalSeconds": 30, "resolution": "SD",
                                "storage": ["SEQUENTIAL", "LATEST"]},
        renditionConfiguration={"renditionSelection": "CUSTOM", "renditions": ["HD", "SD"]},
        recordingReconnectWindowSeconds=60, tags={"team": "video"})
    shape_check(ivs, "CreateRecordingConfiguration", out)
    config = out["recordingConfiguration"]
    arn = config["arn"]
    check(arn.startswith(f"arn:aws:ivs:{REGION}:{ACCOUNT}:recording-configuration/"), arn)
    check(config["state"] == "CREATING", config)
    out = ivs.get_recording_configuration(arn=arn)
    shape_check(ivs, "GetRecordingConfiguration", out)
    config = out["recordingConfiguration"]
    check(config["state"] == "ACTIVE" and config["tags"] == {"team": "video"}, config)
    check(config["thumbnailConfiguration"]["targetIntervalSeconds"] == 30, config)
    check(config["renditionConfiguration"]["renditions"] == ["HD", "SD"], config)
    check(config["recordingReconnectWindowSeconds"] == 60, config)
    plain = ivs.create_recording_configuration(destinationConfiguration={"s3": {"bucketName": "boto3-plain"}})
    thumbs = ivs.get_recording_configuration(arn=plain["recordingConfiguration"]["arn"])["recordingConfiguration"]["thumbnailConfiguration"]
    check(thumbs == {"recordingMode": "INTERVAL", "targetIntervalSeconds": 60, "storage": ["SEQUENTIAL"]}, thumbs)
    failed = ivs.create_recording_configuration(destinationConfiguration={"s3": {"bucketName": "gone-bucket"}})
    failed_arn = failed["recordingConfiguration"]["arn"]
    check(ivs.get_recording_configuration(arn=failed_arn)["recordingConfiguration"]["state"] == "CREATE_FAILED",
          "a missing bucket ends in CREATE_FAILED")
    pages = list(ivs.get_paginator("list_recording_configurations").paginate(PaginationConfig={"PageSize": 2}))
    for page in pages:
        shape_check(ivs, "ListRecordingConfigurations", page)
    listed = [c["arn"] for p in pages for c in p["recordingConfigurations"]]
    check(len(pages) == 2 and listed == [arn, plain["recordingConfiguration"]["arn"], failed_arn], listed)
    for bucket in ("Upper-Case", "ab", "-dash", "a..b", "10.0.0.1"):
        expect_error("ValidationException", 400, raw.create_recording_configuration,
                     destinationConfiguration={"s3": {"bucketName": bucket}})
    expect_error("ValidationException", 400, raw.create_recording_configuration, destinationConfiguration={})
    expect_error("ValidationException", 400, raw.create_recording_configuration,
                 destinationConfiguration={"s3": {"bucketName": "ok-bucket"}},
                 renditionConfiguration={"renditionSelection": "CUSTOM"})
    expect_error("ValidationException", 400, raw.create_recording_configuration,
                 destinationConfiguration={"s3": {"bucketName": "ok-bucket"}},
                 thumbnailConfiguration={"targetIntervalSeconds": 61})
    out = ivs.delete_recording_configuration(arn=failed_arn)
    check(out["ResponseMetadata"]["HTTPStatusCode"] == 204, "DeleteRecordingConfiguration answers 204")
    expect_error("ResourceNotFoundException", 404, ivs.get_recording_configuration, arn=failed_arn)
    expect_error("ResourceNotFoundException", 404, ivs.delete_recording_configuration, arn=failed_arn)
    return arn


def restriction_policies(ivs, raw):
    """The five playback-restriction-policy operations; answers the ARN of one."""
    out = ivs.create_playback_restriction_policy(
        name="boto3-policy", allowedCountries=["US", "CA"], allowedOrigins=["https://www.example.com"],
        enableStrictOriginEnforcement=True, tags={"team": "video"})
    shape_check(ivs, "CreatePlaybackRestrictionPolicy", out)
    arn = out["playbackRestrictionPolicy"]["arn"]
    check(arn.startswith(f"arn:aws:ivs:{REGION}:{ACCOUNT}:playback-restriction-policy/"), arn)
    out = ivs.update_playback_restriction_policy(arn=arn, allowedCountries=["DE"], enableStrictOriginEnforcement=False)
    shape_check(ivs, "UpdatePlaybackRestrictionPolicy", out)
    policy = out["playbackRestrictionPolicy"]
    check(policy["allowedCountries"] == ["DE"] and policy["allowedOrigins"] == ["https://www.example.com"], policy)
    check(policy["enableStrictOriginEnforcement"] is False and policy["name"] == "boto3-policy", policy)
    out = ivs.get_playback_restriction_policy(arn=arn)
    shape_check(ivs, "GetPlaybackRestrictionPolicy", out)
    check(out["playbackRestrictionPolicy"] == policy, out)
    other = ivs.create_playback_restriction_policy()["playbackRestrictionPolicy"]
    check(other["allowedCountries"] == [] and other["allowedOrigins"] == [], other)
    # botocore has no paginator for this operation: page by hand.
    pages = [ivs.list_playback_restriction_policies()]
    while "nextToken" in pages[-1]:
        pages.append(ivs.list_playback_restriction_policies(nextToken=pages[-1]["nextToken"]))
    for page in pages:
        shape_check(ivs, "ListPlaybackRestrictionPolicies", page)
    check([p["arn"] for page in pages for p in page["playbackRestrictionPolicies"]] == [arn, other["arn"]],
          "policies listed one a page (the model's default), in order")
    for countries, origins in ((["XK"], []), (["us"], []), (["USA"], []), ([], ["example.com"]), ([], ["https://a.example.com/x"])):
        e = expect_error("ValidationException", 400, raw.create_playback_restriction_policy,
                         allowedCountries=countries, allowedOrigins=origins)
        message = e.response.get("exceptionMessage", "")
        check("allowedCountries" in message or "allowedOrigins" in message, f"the error names the member: {e.response}")
        expect_error("ValidationException", 400, raw.update_playback_restriction_policy,
                     arn=arn, allowedCountries=countries, allowedOrigins=origins)
    ivs.delete_playback_restriction_policy(arn=other["arn"])
    for op in (ivs.get_playback_restriction_policy, ivs.delete_playback_restriction_policy, ivs.update_playback_restriction_policy):
        expect_error("ResourceNotFoundException", 404, op, arn=other["arn"])
    return arn


def references(ivs, recording_arn, policy_arn):
    """A channel names only what exists; what a channel names cannot be deleted."""
    missing_recording = f"arn:aws:ivs:{REGION}:{ACCOUNT}:recording-configuration/missing1234"
    missing_policy = f"arn:aws:ivs:{REGION}:{ACCOUNT}:playback-restriction-policy/missing1234"
    expect_error("ResourceNotFoundException", 404, ivs.create_channel, recordingConfigurationArn=missing_recording)
    expect_error("ResourceNotFoundException", 404, ivs.create_channel, playbackRestrictionPolicyArn=missing_policy)
    channel = ivs.create_channel(name="boto3-recorded", recordingConfigurationArn=recording_arn,
                                 playbackRestrictionPolicyArn=policy_arn)["channel"]
    got = ivs.get_channel(arn=channel["arn"])["channel"]
    check(got["recordingConfigurationArn"] == recording_arn and got["playbackRestrictionPolicyArn"] == policy_arn, got)
    expect_error("ResourceNotFoundException", 404, ivs.update_channel, arn=channel["arn"],
                 recordingConfigurationArn=missing_recording)
    expect_error("ConflictException", 409, ivs.delete_recording_configuration, arn=recording_arn)
    expect_error("ConflictException", 409, ivs.delete_playback_restriction_policy, arn=policy_arn)
    filtered = ivs.list_channels(filterByRecordingConfigurationArn=recording_arn)["channels"]
    check([c["arn"] for c in filtered] == [channel["arn"]], filtered)
    ivs.update_channel(arn=channel["arn"], recordingConfigurationArn="", playbackRestrictionPolicyArn="")
    spare = ivs.create_recording_configuration(destinationConfiguration={"s3": {"bucketName": "boto3-spare"}})
    ivs.delete_recording_configuration(arn=spare["recordingConfiguration"]["arn"])
    ivs.stop_stream(channelArn=channel["arn"])
    ivs.delete_channel(arn=channel["arn"])


def put_metadata(ivs, arn, url, missing):
    """PutMetadata on a live channel: 204, and the payload in the segment being made, in each rendition, as
    IVS carries it (an ID3 PRIV frame owned by metadata.live-video.net); IVS's refusals."""
    payload = json.dumps({"from": "boto3", "text": "é"})
    before = time.time()
    out = ivs.put_metadata(channelArn=arn, metadata=payload)
    after = time.time()
    check(out["ResponseMetadata"]["HTTPStatusCode"] == 204, out)
    shape_check(ivs, "PutMetadata", out)
    # The frame: "PRIV", its size (syncsafe; one byte suffices below 128), no flags, owner, NUL, payload.
    frame = b"PRIV" + bytes([0, 0, 0, 24 + len(payload.encode())]) + b"\0\0metadata.live-video.net\0" + payload.encode()
    # The payload goes into the segment being made (2 s each) when the call arrives.
    candidates = range(int(before // 2), int(after // 2) + 1)
    variants = [line for line in get(url)[1].splitlines() if line.startswith("http")]
    check(len(variants) == 2, variants)
    for variant in variants:
        deadline = time.time() + 20
        while True:
            listed = [int(line.rsplit("/", 1)[1][:-3]) for line in get(variant)[1].splitlines() if line.endswith(".ts")]
            if max(listed) >= candidates[-1]:
                break
            check(time.time() < deadline, f"segment {candidates[-1]} never listed in {variant}")
            time.sleep(0.1)
        carrying = []
        for n in candidates:
            with urllib.request.urlopen(variant.replace("playlist.m3u8", f"{n}.ts"), timeout=10) as r:
                if frame in r.read():
                    carrying.append(n)
        check(len(carrying) == 1, f"{variant}: the payload is in segments {carrying} of {list(candidates)}")
    e = expect_error("ValidationException", 400, ivs.put_metadata, channelArn=arn, metadata="é" * 513)
    check("1026 bytes" in e.response.get("exceptionMessage", ""), e.response)
    expect_error("ResourceNotFoundException", 404, ivs.put_metadata, channelArn=missing, metadata="{}")


def streams(ivs, endpoint):
    """GetStream, ListStreams, StopStream, GetStreamSession, ListStreamSessions, PutMetadata, the test
    control that starts a stream, and the edge's answer for an offline channel."""
    created = ivs.create_channel(name="boto3-streams")
    arn, url = created["channel"]["arn"], created["channel"]["playbackUrl"]
    stream_key = created["streamKey"]["value"]
    missing = arn.rsplit("/", 1)[0] + "/doesNotExist"

    # Live from its creation (the local IVS's default: there is no broadcaster).
    out = ivs.get_stream(channelArn=arn)
    shape_check(ivs, "GetStream", out)
    first = out["stream"]
    check(first["state"] == "LIVE" and first["health"] == "HEALTHY" and first["playbackUrl"] == url, first)
    check(first["streamId"].startswith("st-") and len(first["streamId"]) == 26, first["streamId"])
    out = ivs.list_streams(filterBy={"health": "HEALTHY"})
    shape_check(ivs, "ListStreams", out)
    check(arn in [s["channelArn"] for s in out["streams"]], out["streams"])
    check(ivs.list_streams(filterBy={"health": "STARVING"})["streams"] == [], "no starving stream")
    check(get(url)[0] == 200, "a live public channel plays")
    put_metadata(ivs, arn, url, missing)

    # Stopped: ChannelNotBroadcasting, and the edge answers 404 as for an offline channel.
    out = ivs.stop_stream(channelArn=arn)
    shape_check(ivs, "StopStream", out)
    expect_error("ChannelNotBroadcasting", 404, ivs.get_stream, channelArn=arn)
    expect_error("ChannelNotBroadcasting", 404, ivs.stop_stream, channelArn=arn)
    expect_error("ChannelNotBroadcasting", 404, ivs.put_metadata, channelArn=arn, metadata="{}")
    status, body = get(url)
    check(status == 404 and json.loads(body)[0]["error_code"] == "not_found", f"offline: {status} {body}")

    # A broadcaster connects with the stream key (test control); a second one is refused.
    status, started = post_json(f"{endpoint}/_local/streams/start", {"streamKey": stream_key})
    check(status == 200 and started["channelArn"] == arn, started)
    status, again = post_json(f"{endpoint}/_local/streams/start", {"streamKey": stream_key})
    check(status == 409, again)
    status, unknown = post_json(f"{endpoint}/_local/streams/start", {"streamKey": "sk_us-west-2_nope"})
    check(status == 404 and "exceptionMessage" in unknown, unknown)
    check(get(url)[0] == 200, "plays again")

    # Sessions: newest first, paged; each keeps its channel and times.
    page = ivs.list_stream_sessions(channelArn=arn, maxResults=1)
    shape_check(ivs, "ListStreamSessions", page)
    check(page["streamSessions"][0]["streamId"] == started["streamId"], page)
    check("endTime" not in page["streamSessions"][0], "the live session has no end")
    rest = ivs.list_stream_sessions(channelArn=arn, nextToken=page["nextToken"])
    check([s["streamId"] for s in rest["streamSessions"]] == [first["streamId"]], rest)
    out = ivs.get_stream_session(channelArn=arn, streamId=first["streamId"])
    shape_check(ivs, "GetStreamSession", out)
    session = out["streamSession"]
    check(session["endTime"] >= session["startTime"] and session["channel"]["arn"] == arn, session)
    check([e["name"] for e in session["truncatedEvents"]][-1] == "Session Ended", session["truncatedEvents"])
    latest = ivs.get_stream_session(channelArn=arn)["streamSession"]
    check(latest["streamId"] == started["streamId"], latest)

    # Errors.
    for fn in (ivs.get_stream, ivs.stop_stream, ivs.get_stream_session, ivs.list_stream_sessions):
        expect_error("ResourceNotFoundException", 404, fn, channelArn=missing)
    expect_error("ResourceNotFoundException", 404, ivs.get_stream_session, channelArn=arn,
                 streamId="st-" + "A" * 23)
    expect_error("ValidationException", 400, ivs.get_stream_session, channelArn=arn, streamId="xx-" + "A" * 23)
    expect_error("ValidationException", 400, ivs.list_streams, filterBy={"health": "SICK"})
    expect_error("ConflictException", 409, ivs.delete_channel, arn=arn)
    ivs.stop_stream(channelArn=arn)
    ivs.delete_channel(arn=arn)
    expect_error("ResourceNotFoundException", 404, ivs.list_stream_sessions, channelArn=arn)


if __name__ == "__main__":
    main(sys.argv[1])
