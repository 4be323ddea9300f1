"""The tutorial's agent side: boto3 reads AWS_WEB_IDENTITY_TOKEN_FILE and calls STS
AssumeRoleWithWebIdentity; done when it holds its first usable AWS credentials."""

import boto3

creds = boto3.Session().get_credentials().get_frozen_credentials()
assert creds.access_key and creds.token
