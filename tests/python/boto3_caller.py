"""boto3 with whatever credential source the environment configures (web-identity token file,
a credential_process profile, or the container-credentials endpoint) calls get_caller_identity
and prints what it saw.

Either CALLS times, PACE seconds apart; or, with WATCH_FILE and REWRITES, until it has called on
REWRITES + 1 distinct contents of WATCH_FILE (polled; the run gives up after DEADLINE seconds,
default 60), so that the calls follow the rewrites whatever the machine's speed."""
import json
import os
import time

import boto3

session = boto3.Session(profile_name=os.environ.get("PROFILE") or None)
arns = []


def call():
    # A fresh client each time: credentials come from the session's provider, which refreshes
    # (re-reading the token file) as it sees fit.
    sts = session.client("sts", region_name=os.environ["AWS_REGION"])
    arns.append(sts.get_caller_identity()["Arn"])


watch = os.environ.get("WATCH_FILE")
if watch:
    # A call counts when the file held the same token before and after it: boto3 then presented
    # that token. Wait for a new token between counted calls.
    rewrites = int(os.environ["REWRITES"])
    deadline = time.monotonic() + float(os.environ.get("DEADLINE", "60"))

    def read():
        with open(watch) as f:
            return f.read()

    counted = []
    while len(counted) < rewrites + 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(counted)} calls on distinct tokens before the deadline")
        before = read()
        if counted and before == counted[-1]:
            time.sleep(0.05)
            continue
        call()
        if read() == before:
            counted.append(before)
else:
    calls = int(os.environ.get("CALLS", "1"))
    pace = float(os.environ.get("PACE", "0"))
    for i in range(calls):
        call()
        if i + 1 < calls:
            time.sleep(pace)
print(json.dumps({"arns": arns, "method": session.get_credentials().method}))
