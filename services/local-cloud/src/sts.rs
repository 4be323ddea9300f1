//! AWS STS (Query protocol, XML): `AssumeRoleWithWebIdentity`, validated the way AWS documents
//! (provider by exact `iss`, signature through the issuer's JWKS, `exp` + 5 min, `aud` in the
//! client-ID list, trust-policy conditions, duration bound); and `GetCallerIdentity`, SigV4-verified.

use crate::policy::{Decision, Request, decide};
use crate::sigv4::{self, AuthError};
use crate::state::unix_seconds;
use crate::state::{CloudState, IssuedCredentials, guid, iso8601, random_id};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// IAM's allowance beyond `exp` for clock skew.
const EXP_SKEW_SECS: u64 = 300;
/// The oldest web identity token (by `iat`) STS takes. AWS refuses old tokens ("Token too old",
/// recorded for one 441,398 s old) without publishing the limit; a day is this emulation's choice
/// (docs/local-cloud.md): far beyond any Entra token's lifetime, so only a stale token file hits it.
const MAX_TOKEN_AGE_SECS: u64 = 24 * 3600;

struct StsFault {
    status: u16,
    code: String,
    message: String,
}

fn fault(status: u16, code: &str, message: impl Into<String>) -> StsFault {
    StsFault {
        status,
        code: code.into(),
        message: message.into(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error_response(e: StsFault) -> Response {
    let request_id = guid();
    let kind = if e.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{NS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        xml_escape(&e.code),
        xml_escape(&e.message)
    );
    xml(e.status, body, &request_id)
}

fn xml(status: u16, body: String, request_id: &str) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body,
    )
        .into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    r.headers_mut().insert(
        "x-amzn-requestid",
        HeaderValue::from_str(request_id).expect("guid"),
    );
    r
}

/// `POST /` or `GET /?Action=…`.
pub async fn handle(
    State(s): State<Arc<CloudState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params: HashMap<String, String> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    if method == Method::POST {
        match serde_urlencoded::from_bytes::<HashMap<String, String>>(&body) {
            Ok(form) => params.extend(form),
            Err(_) => {
                return error_response(fault(
                    400,
                    "MalformedQueryString",
                    "The request body is not application/x-www-form-urlencoded.",
                ));
            }
        }
    }
    let action = params.get("Action").cloned().unwrap_or_default();
    let counter = format!("sts:{action}");
    let injected = match s.door(&counter, "text/xml").await {
        Ok(f) => f,
        Err(canned) => return canned,
    };
    if let Some(f) = injected {
        let code = f.code.clone().unwrap_or_else(|| {
            if f.status >= 500 {
                "ServiceUnavailable".into()
            } else {
                "Throttling".into()
            }
        });
        let message = if code == "Throttling" {
            "Rate exceeded"
        } else {
            "Injected failure."
        };
        return error_response(fault(f.status, &code, message));
    }
    if params.get("Version").map(String::as_str) != Some("2011-06-15") {
        return error_response(fault(
            400,
            "InvalidParameterValue",
            "Version must be 2011-06-15.",
        ));
    }
    let result = match action.as_str() {
        "AssumeRoleWithWebIdentity" => assume_role_with_web_identity(&s, &params).await,
        "GetCallerIdentity" => get_caller_identity(&s, &method, &uri, &headers, &body),
        "" => Err(fault(400, "MissingAction", "Missing Action")),
        other => Err(fault(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    };
    match result {
        Ok(r) => r,
        Err(e) => error_response(e),
    }
}

fn validation(field: &str, constraint: &str, value: Option<&str>) -> StsFault {
    let shown = value
        .map(|v| format!("'{v}'"))
        .unwrap_or_else(|| "null".into());
    fault(
        400,
        "ValidationError",
        format!(
            "1 validation error detected: Value {shown} at '{field}' failed to satisfy constraint: {constraint}"
        ),
    )
}

async fn assume_role_with_web_identity(
    s: &CloudState,
    p: &HashMap<String, String>,
) -> Result<Response, StsFault> {
    let role_arn = p
        .get("RoleArn")
        .ok_or_else(|| validation("roleArn", "Member must not be null", None))?;
    if !(20..=2048).contains(&role_arn.len()) {
        return Err(validation(
            "roleArn",
            "Member must have length greater than or equal to 20",
            Some(role_arn),
        ));
    }
    let session = p
        .get("RoleSessionName")
        .ok_or_else(|| validation("roleSessionName", "Member must not be null", None))?;
    if !crate::sts::valid_session_name(session) {
        return Err(validation(
            "roleSessionName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            Some(session),
        ));
    }
    let token = p
        .get("WebIdentityToken")
        .ok_or_else(|| validation("webIdentityToken", "Member must not be null", None))?;
    if !(4..=20000).contains(&token.len()) {
        return Err(validation(
            "webIdentityToken",
            "Member must have length less than or equal to 20000",
            None,
        ));
    }
    let duration: u64 = match p.get("DurationSeconds") {
        None => 3600,
        Some(d) => match d.parse::<u64>() {
            Ok(n) if (900..=43200).contains(&n) => n,
            _ => {
                return Err(validation(
                    "durationSeconds",
                    "Member must have value greater than or equal to 900 and less than or equal to 43200",
                    Some(d),
                ));
            }
        },
    };
    let (session_policies, packed_policy_size) = session_policies(s, p)?;

    // 1. A JWT.
    let invalid = |m: &str| fault(400, "InvalidIdentityToken", m);
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("The web identity token that was passed could not be validated by AWS. Get a new identity token from the identity provider and then retry the request."))?;
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| invalid("The web identity token that was passed could not be validated by AWS. Get a new identity token from the identity provider and then retry the request."))?;
    let iss = claims["iss"].as_str().unwrap_or_default().to_string();
    // 2. The provider, by exact issuer.
    let (provider_url, client_ids, provider_arn) = {
        let reg = s.registry();
        let provider = reg
            .oidc_providers
            .iter()
            .find(|pr| pr.url == iss)
            .ok_or_else(|| {
                invalid(&format!(
                    "No OpenIDConnect provider found in your account for {iss}"
                ))
            })?;
        (
            provider.url.clone(),
            provider.client_ids.clone(),
            reg.provider_arn(&provider.url),
        )
    };
    // 3-4. Keys from the issuer's metadata; an allowed algorithm; the signature.
    if !matches!(
        header.alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::ES256
            | Algorithm::ES384
    ) {
        return Err(invalid(
            "The web identity token's signing algorithm is not supported.",
        ));
    }
    let kid = header.kid.clone().unwrap_or_default();
    let jwk = issuer_key(s, &iss, &kid).await?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|_| invalid("Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements"))?;
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|_| invalid("The web identity token that was passed could not be validated by AWS. Get a new identity token from the identity provider and then retry the request."))?;
    // 5. Expiry, with IAM's five minutes of skew.
    let now = unix_seconds(s.clock.now());
    let exp = claims["exp"].as_u64().ok_or_else(|| {
        invalid("The web identity token has no valid exp claim. Timestamps must be integers.")
    })?;
    if exp + EXP_SKEW_SECS <= now {
        // Worded as recorded (tests/recorded/sts/expired-token-exception.json).
        return Err(fault(
            400,
            "ExpiredTokenException",
            format!(
                "Token expired: current date/time {now} must be before the expiration date/time {exp}"
            ),
        ));
    }
    // A token issued too long ago is refused whatever its `exp` (recorded: "Token too old:
    // 441398"; the limit is not published, see MAX_TOKEN_AGE_SECS).
    if let Some(iat) = claims["iat"].as_u64()
        && now.saturating_sub(iat) > MAX_TOKEN_AGE_SECS
    {
        return Err(fault(
            400,
            "ExpiredTokenException",
            format!("Token too old: {}", now - iat),
        ));
    }
    // 6. Audience in the client-ID list. Observed, not documented (tutorial §3.1, protocols.md §7):
    // STS refuses Entra v2 managed-identity tokens with "Incorrect token audience" even when their
    // GUID audience is registered. Matching `azp` over `aud` when `azp` is present (AWS's documented
    // rule for Google) reproduces it, so that is what this emulation does.
    let auds: Vec<String> = match (&claims["azp"], &claims["aud"]) {
        (Value::String(azp), _) => vec![azp.clone()],
        (_, Value::String(a)) => vec![a.clone()],
        (_, Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    };
    let Some(aud) = auds.iter().find(|a| client_ids.contains(a)).cloned() else {
        return Err(invalid("Incorrect token audience"));
    };
    let sub = claims["sub"].as_str().unwrap_or_default().to_string();
    // 7. The role's trust policy.
    let (role_name, max_duration, account) = {
        let reg = s.registry();
        let denied = || {
            fault(
                403,
                "AccessDenied",
                "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            )
        };
        let role = reg.role_by_arn(role_arn).ok_or_else(denied)?;
        let host = provider_url.trim_start_matches("https://");
        let context: HashMap<String, String> = [
            (format!("{host}:aud").to_ascii_lowercase(), aud.clone()),
            (format!("{host}:sub").to_ascii_lowercase(), sub.clone()),
            ("sts:rolesessionname".to_string(), session.clone()),
        ]
        .into_iter()
        .collect();
        let req = Request {
            action: "sts:AssumeRoleWithWebIdentity",
            resource: None,
            federated: Some(&provider_arn),
            context: &context,
        };
        if decide(&[&role.trust_policy], &req) != Decision::Allow {
            return Err(denied());
        }
        (
            role.name.clone(),
            role.max_session_duration as u64,
            reg.aws_account_id.clone(),
        )
    };
    // 8. Duration within the role's maximum.
    if duration > max_duration {
        return Err(fault(
            400,
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }
    let duration = s
        .registry()
        .lifetimes
        .sts_credentials_override
        .unwrap_or(duration);
    // Which tokens clients present (a file rewritten by a refresher shows up as new ones).
    if let Some(uti) = claims["uti"].as_str()
        && s.seen_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uti.to_string())
    {
        s.count("sts:distinct_web_identity_tokens");
    }
    let access_key_id = format!("ASIA{}", random_id(16));
    let secret =
        base64::engine::general_purpose::STANDARD.encode(crate::keys::random_bytes::<30>());
    let session_token =
        base64::engine::general_purpose::STANDARD.encode(crate::keys::random_bytes::<240>());
    let expires_at = s.issuing_now("sts") + Duration::from_secs(duration);
    let role_id = format!("AROA{}", random_id(17));
    let assumed_role_id = format!("{role_id}:{session}");
    let arn = format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}");
    s.credentials
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            access_key_id.clone(),
            IssuedCredentials {
                secret_access_key: secret.clone(),
                session_token: session_token.clone(),
                expires_at,
                role_name: role_name.clone(),
                session_name: session.clone(),
                assumed_role_id: assumed_role_id.clone(),
                session_policies,
            },
        );
    let request_id = guid();
    let body = format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"{NS}\">
  <AssumeRoleWithWebIdentityResult>
    <Audience>{aud}</Audience>
    <AssumedRoleUser>
      <AssumedRoleId>{assumed_role_id}</AssumedRoleId>
      <Arn>{arn}</Arn>
    </AssumedRoleUser>
    <Provider>{provider}</Provider>
    <Credentials>
      <AccessKeyId>{access_key_id}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{session_token}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>{sub}</SubjectFromWebIdentityToken>{packed}
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>{request_id}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
",
        aud = xml_escape(&aud),
        assumed_role_id = xml_escape(&assumed_role_id),
        arn = xml_escape(&arn),
        provider = xml_escape(&provider_arn),
        expiration = iso8601(expires_at),
        sub = xml_escape(&sub),
        packed = packed_policy_size
            .map(|n| format!("\n    <PackedPolicySize>{n}</PackedPolicySize>"))
            .unwrap_or_default(),
    );
    Ok(xml(200, body, &request_id))
}

/// The key `kid` of `iss`, from the issuer's OpenID metadata and JWKS (cached; refetched on an
/// unknown `kid`), as IAM fetches them.
async fn issuer_key(
    s: &CloudState,
    iss: &str,
    kid: &str,
) -> Result<jsonwebtoken::jwk::Jwk, StsFault> {
    let find = |jwks: &Value| -> Option<jsonwebtoken::jwk::Jwk> {
        jwks["keys"]
            .as_array()?
            .iter()
            .find(|k| k["kid"] == kid)
            .and_then(|k| serde_json::from_value(k.clone()).ok())
    };
    if let Some(jwks) = s
        .sts_jwks_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(iss)
        && let Some(k) = find(jwks)
    {
        return Ok(k);
    }
    let unreachable = || {
        fault(
            400,
            "IDPCommunicationError",
            "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
        )
    };
    let no_key = || {
        fault(
            400,
            "InvalidIdentityToken",
            "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
        )
    };
    let discovery = local_discovery_url(s, iss).ok_or_else(no_key)?;
    let metadata: Value = fetch_json(s, &discovery).await.ok_or_else(unreachable)?;
    if metadata["issuer"].as_str() != Some(iss) {
        return Err(no_key());
    }
    let jwks_uri = metadata["jwks_uri"]
        .as_str()
        .ok_or_else(no_key)?
        .to_string();
    let jwks = fetch_json(s, &jwks_uri).await.ok_or_else(unreachable)?;
    let key = find(&jwks);
    s.sts_jwks_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(iss.to_string(), jwks);
    key.ok_or_else(no_key)
}

/// Where this machine serves an issuer's metadata: Entra's v1 and v2 issuers of the tenant map to
/// the local Entra (IAM would fetch `<iss>/.well-known/openid-configuration` on the internet).
fn local_discovery_url(s: &CloudState, iss: &str) -> Option<String> {
    let reg = s.registry();
    let base = s.base(false);
    if iss == reg.v1_issuer() {
        Some(format!(
            "{base}/{}/.well-known/openid-configuration",
            reg.tenant_id
        ))
    } else if iss == reg.v2_issuer() {
        Some(format!(
            "{base}/{}/v2.0/.well-known/openid-configuration",
            reg.tenant_id
        ))
    } else {
        None
    }
}

async fn fetch_json(s: &CloudState, url: &str) -> Option<Value> {
    let resp = s.http.get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

fn get_caller_identity(
    s: &CloudState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, StsFault> {
    let caller = sigv4::verify(s, method, uri, headers, body, "sts").map_err(|e| match e {
        AuthError::Missing => fault(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ),
        AuthError::Incomplete(m) => fault(400, "IncompleteSignature", m),
        AuthError::UnknownKey => fault(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ),
        // 403, as recorded (pulumi/pulumi-aws#3866: "StatusCode: 403 … api error ExpiredToken").
        AuthError::Expired => fault(
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
        ),
        AuthError::Signature(m) => fault(403, "SignatureDoesNotMatch", m),
    })?;
    // The credential scope must name this endpoint's region (or us-east-1, the global
    // endpoint's signing region).
    {
        let reg = s.registry();
        if caller.region != reg.aws_region && caller.region != "us-east-1" {
            return Err(fault(
                403,
                "SignatureDoesNotMatch",
                "Credential should be scoped to a valid region. ",
            ));
        }
    }
    let account = s.registry().aws_account_id.clone();
    let c = &caller.credentials;
    let request_id = guid();
    let body = format!(
        "<GetCallerIdentityResponse xmlns=\"{NS}\">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::{account}:assumed-role/{role}/{session}</Arn>
    <UserId>{user_id}</UserId>
    <Account>{account}</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>{request_id}</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
",
        role = xml_escape(&c.role_name),
        session = xml_escape(&c.session_name),
        user_id = xml_escape(&c.assumed_role_id),
    );
    Ok(xml(200, body, &request_id))
}

/// The session policies of a request: the inline `Policy` and the documents of
/// `PolicyArns.member.N.arn` (at most 10, looked up among the account's managed policies), and
/// the `PackedPolicySize` to report when any was given. AWS packs (compresses) the inline policy
/// and the ARNs together ("the session policies and session tags combined") and does not publish
/// how. This emulation counts their characters together against a budget of 4,096, so that what
/// the plaintext limits allow fits with ARNs of ordinary length (a 2,048-character policy and ten
/// ARNs), while a long policy together with long ARN paths does not; beyond 100 % it refuses in
/// AWS's wording.
fn session_policies(
    s: &CloudState,
    p: &HashMap<String, String>,
) -> Result<(Vec<crate::policy::PolicyDocument>, Option<u64>), StsFault> {
    let mut docs = Vec::new();
    let (mut inline_chars, mut arn_chars) = (0usize, 0usize);
    if let Some(policy) = p.get("Policy") {
        if !(1..=2048).contains(&policy.chars().count()) {
            return Err(validation(
                "policy",
                "Member must have length less than or equal to 2048",
                Some(policy),
            ));
        }
        let doc = serde_json::from_str::<crate::policy::PolicyDocument>(policy).map_err(|e| {
            fault(
                400,
                "MalformedPolicyDocument",
                format!("The policy is not in the valid JSON format. ({e})"),
            )
        })?;
        doc.validate_permission().map_err(|e| {
            fault(
                400,
                "MalformedPolicyDocument",
                format!("The local cloud does not evaluate this policy: {e}"),
            )
        })?;
        // Characters, as AWS counts them (not UTF-8 bytes).
        inline_chars = policy.chars().count();
        docs.push(doc);
    }
    let arns: Vec<&String> = (1..)
        .map_while(|i| p.get(&format!("PolicyArns.member.{i}.arn")))
        .collect();
    if arns.len() > 10 {
        return Err(validation(
            "policyArns",
            "Member must have length less than or equal to 10",
            None,
        ));
    }
    for arn in &arns {
        let reg = s.registry();
        let managed = reg
            .managed_policies
            .iter()
            .find(|m| &m.arn == *arn)
            .ok_or_else(|| {
                fault(
                    400,
                    "MalformedPolicyDocument",
                    format!("Policy {arn} does not exist or is not attachable."),
                )
            })?;
        arn_chars += arn.chars().count();
        docs.push(managed.document.clone());
    }
    if docs.is_empty() {
        return Ok((docs, None));
    }
    const PACKED_BUDGET: usize = 4096;
    let percent = ((inline_chars + arn_chars) * 100).div_ceil(PACKED_BUDGET) as u64;
    if percent > 100 {
        return Err(fault(
            400,
            "PackedPolicyTooLarge",
            format!(
                "Packed policy consumes {percent}% of allotted space, please use smaller policy."
            ),
        ));
    }
    Ok((docs, Some(percent)))
}

/// `RoleSessionName` as the STS API reference constrains it: 2 to 64 characters matching
/// `[\w+=,.@-]*`.
pub(crate) fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}
