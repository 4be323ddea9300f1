"""boto3 exchanges the library's v1 web-identity token with assume_role_with_web_identity against
the local STS (AWS_ENDPOINT_URL_STS), then calls get_caller_identity signed with the result."""
import json
import os

import boto3
from botocore import UNSIGNED
from botocore.config import Config

region = os.environ["AWS_REGION"]
anonymous = boto3.client("sts", region_name=region, config=Config(signature_version=UNSIGNED))
assumed = anonymous.assume_role_with_web_identity(
    RoleArn=os.environ["AWS_ROLE_ARN"],
    RoleSessionName="boto3-peer",
    WebIdentityToken=os.environ["WEB_IDENTITY_TOKEN"],
)
c = assumed["Credentials"]
signed = boto3.client(
    "sts",
    region_name=region,
    aws_access_key_id=c["AccessKeyId"],
    aws_secret_access_key=c["SecretAccessKey"],
    aws_session_token=c["SessionToken"],
)
me = signed.get_caller_identity()
# A wrong secret is refused with AWS's own code.
bad = boto3.client(
    "sts",
    region_name=region,
    aws_access_key_id=c["AccessKeyId"],
    # Another first character (a secret that already began with "x" stayed right: 1 run in ~60).
    aws_secret_access_key=("y" if c["SecretAccessKey"][0] == "x" else "x") + c["SecretAccessKey"][1:],
    aws_session_token=c["SessionToken"],
)
try:
    bad.get_caller_identity()
    raise SystemExit("a wrong secret was accepted")
except bad.exceptions.ClientError as e:
    bad_code = e.response["Error"]["Code"]
print(json.dumps({
    "arn": me["Arn"],
    "account": me["Account"],
    "subject": assumed["SubjectFromWebIdentityToken"],
    "audience": assumed["Audience"],
    "provider": assumed["Provider"],
    "bad_secret_code": bad_code,
}))
