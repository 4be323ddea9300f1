"""boto3 with whatever credential source the environment configures (web-identity token file,
a credential_process profile, or the container-credentials endpoint) calls get_caller_identity
CALLS times, PACE seconds apart, and prints what it saw."""
import json
import os
import time

import boto3

session = boto3.Session(profile_name=os.environ.get("PROFILE") or None)
calls = int(os.environ.get("CALLS", "1"))
pace = float(os.environ.get("PACE", "0"))
arns = []
for i in range(calls):
    # A fresh client each time: credentials come from the session's provider, which refreshes
    # (re-reading the token file) as it sees fit.
    sts = session.client("sts", region_name=os.environ["AWS_REGION"])
    arns.append(sts.get_caller_identity()["Arn"])
    if i + 1 < calls:
        time.sleep(pace)
print(json.dumps({"arns": arns, "method": session.get_credentials().method}))
