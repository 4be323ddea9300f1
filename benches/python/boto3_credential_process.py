"""Our path as boto3 sees it: a profile whose credential_process is `token-refresher
credential-process` (scripts/bench writes the profile to AWS_CONFIG_FILE); done when boto3 holds
its first usable AWS credentials. The same boto3 start and import as the tutorial's side."""

import boto3

creds = boto3.Session(profile_name="entra").get_credentials().get_frozen_credentials()
assert creds.access_key and creds.token
