"""The tutorial's token-refresher, once: the managed-identity assertion from the identity endpoint,
exchanged at Entra for the intermediary app's v1 token, written atomically to
AWS_WEB_IDENTITY_TOKEN_FILE. Standard library only, as the tutorial's refresh.py is (its loop and
sleep left out: this is one iteration, for the cold-start comparison)."""

import json
import os
import ssl
import urllib.parse
import urllib.request

env = os.environ
ctx = ssl.create_default_context(cafile=env.get("ENTRA_FEDERATION_CA_FILE"))

query = urllib.parse.urlencode(
    {"api-version": "2019-08-01", "resource": "api://AzureADTokenExchange"}
)
req = urllib.request.Request(
    f"{env['IDENTITY_ENDPOINT']}?{query}",
    headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
)
with urllib.request.urlopen(req, timeout=10) as r:
    assertion = json.load(r)["access_token"]

authority = env.get("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/").rstrip("/")
form = urllib.parse.urlencode(
    {
        "grant_type": "client_credentials",
        "client_id": env["STS_APP_ID"],
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "scope": f"{env['STS_APP_URI']}/.default",
    }
).encode()
url = f"{authority}/{env['TENANT_ID']}/oauth2/v2.0/token"
with urllib.request.urlopen(url, form, timeout=10, context=ctx) as r:
    token = json.load(r)["access_token"]

path = env["AWS_WEB_IDENTITY_TOKEN_FILE"]
tmp = path + ".tmp"
with open(tmp, "w") as f:
    f.write(token)
os.replace(tmp, path)
