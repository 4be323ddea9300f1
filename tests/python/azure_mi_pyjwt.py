"""azure-identity's ManagedIdentityCredential gets a token from the local cloud's Container Apps
identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER), and PyJWT verifies it with the keys the
local Entra publishes: RS256, v2 issuer, audience of the AzureADTokenExchange app."""
import json
import os
import urllib.request

import jwt
from azure.identity import ManagedIdentityCredential

TOKEN_EXCHANGE_APP = "fb60f99c-7a34-4190-8149-302f77469936"

cred = ManagedIdentityCredential()
token = cred.get_token("api://AzureADTokenExchange/.default").token

tenant = os.environ["TENANT_ID"]
base = os.environ["LOCAL_CLOUD_URL"]
with urllib.request.urlopen(f"{base}/{tenant}/v2.0/.well-known/openid-configuration") as r:
    metadata = json.load(r)

key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(token)
claims = jwt.decode(
    token,
    key.key,
    algorithms=["RS256"],
    audience=TOKEN_EXCHANGE_APP,
    issuer=metadata["issuer"],
    options={"require": ["exp", "iat", "iss", "aud", "sub"]},
)
# A token signed by another key must not verify.
forged = jwt.encode(dict(claims), "not-the-key", algorithm="HS256")
try:
    jwt.decode(forged, key.key, algorithms=["RS256"], audience=TOKEN_EXCHANGE_APP)
    raise SystemExit("a forged token verified")
except jwt.InvalidTokenError:
    pass
print(json.dumps({k: claims[k] for k in ("iss", "aud", "sub", "oid", "tid", "ver")}))
