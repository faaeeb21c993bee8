"""Seed the test S3 server (moto, started with INITIAL_NO_AUTH_ACTION_COUNT=3): three
unauthenticated IAM calls create a user allowed s3:* and its access key; from then on
the server checks every request's signature. With that key, create the bucket (second
argument), then write the key (test-only) as JSON to the file named by the first. The
server is at ENDPOINT, its certificate signed by CA_FILE.

Usage: s3_seed.py KEY_FILE BUCKET ENDPOINT CA_FILE"""

import json
import os
import sys

import boto3

KEY_FILE, BUCKET, ENDPOINT, CA_FILE = sys.argv[1:5]
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def main() -> None:
    os.umask(0o077)  # the key file is for root only
    iam = boto3.client(
        "iam",
        endpoint_url=ENDPOINT,
        verify=CA_FILE,
        region_name="us-east-1",
        aws_access_key_id="test-only-bootstrap",  # test-only value
        aws_secret_access_key="test-only-bootstrap",  # test-only value
    )
    iam.create_user(UserName="morpheus-backup")
    iam.put_user_policy(
        UserName="morpheus-backup", PolicyName="s3", PolicyDocument=json.dumps(POLICY)
    )
    key = iam.create_access_key(UserName="morpheus-backup")["AccessKey"]
    s3 = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        verify=CA_FILE,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    s3.create_bucket(Bucket=BUCKET)
    with open(KEY_FILE, "w", encoding="utf-8") as out:
        json.dump(
            {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]},
            out,
        )


if __name__ == "__main__":
    main()
