"""PutMetadata through boto3, for tests/browser/play.mjs: an independent IVS client sends the
timed metadata the IVS Web Player must then show.

Usage: put_metadata.py ENDPOINT ACCESS_KEY:SECRET CHANNEL_ARN TEXT [COUNT]

Sends COUNT (default 1) PutMetadata calls back to back with TEXT, without retries (a throttled call
must show as throttled), and prints one JSON line per call: {"sent_ms", "answered_ms", "status",
"code"} (code null on success), times in Unix milliseconds. The region is the ARN's.
"""

import json
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main(endpoint, credential, channel_arn, text, count=1):
    key, secret = credential.split(":", 1)
    ivs = boto3.client(
        "ivs",
        endpoint_url=endpoint,
        region_name=channel_arn.split(":")[3],
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    for _ in range(int(count)):
        sent = time.time() * 1000
        try:
            out = ivs.put_metadata(channelArn=channel_arn, metadata=text)
            status, code = out["ResponseMetadata"]["HTTPStatusCode"], None
        except ClientError as e:
            status, code = e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]
        print(json.dumps({"sent_ms": sent, "answered_ms": time.time() * 1000, "status": status, "code": code}),
              flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
