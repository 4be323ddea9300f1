//! Wire-level checks of the emulations against the documented shapes (protocols.md §1–§4).

use local_cloud::{LocalCloud, ids};
use serde_json::Value;

async fn cloud() -> LocalCloud {
    LocalCloud::builder().start().await.unwrap()
}

fn tid() -> &'static str {
    ids::TENANT_ID
}

#[tokio::test]
async fn openid_metadata_v1_and_v2_and_jwks() {
    let c = cloud().await;
    let http = reqwest::Client::new();
    let v1: Value = http
        .get(format!(
            "{}/{}/.well-known/openid-configuration",
            c.http_url(),
            tid()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["issuer"], format!("https://sts.windows.net/{}/", tid()));
    // Entra's v1 tenant metadata points at the keys of `common`.
    assert_eq!(
        v1["jwks_uri"],
        format!("{}/common/discovery/keys", c.http_url())
    );
    let v2: Value = http
        .get(format!(
            "{}/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration",
            c.http_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v2["issuer"],
        format!("https://login.microsoftonline.com/{}/v2.0", tid())
    );
    assert_eq!(
        v2["token_endpoint"],
        format!("{}/{}/oauth2/v2.0/token", c.http_url(), tid())
    );
    let keys: Value = http
        .get(v2["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let k = &keys["keys"][0];
    assert_eq!(
        (k["kty"].as_str(), k["use"].as_str(), k["e"].as_str()),
        (Some("RSA"), Some("sig"), Some("AQAB"))
    );
    assert_eq!(k["issuer"], v2["issuer"]);
    assert_eq!(k["kid"], k["x5t"]);
    assert!(k["x5c"][0].as_str().is_some_and(|c| c.len() > 500));
    let v1keys: Value = http
        .get(v1["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v1keys["keys"][0].get("issuer").is_none());
    let common_v2: Value = http
        .get(format!("{}/common/discovery/v2.0/keys", c.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &common_v2["keys"][0]["kid"],
            &common_v2["keys"][0]["issuer"]
        ),
        (
            &k["kid"],
            &serde_json::json!("https://login.microsoftonline.com/{tenantid}/v2.0")
        ),
        "common serves the same keys with the templated issuer"
    );
    let unknown = http
        .get(format!(
            "{}/nobody.example/v2.0/.well-known/openid-configuration",
            c.http_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error_codes"][0], 90002);
}

#[tokio::test]
async fn token_endpoint_errors_have_entras_shape() {
    let c = cloud().await;
    let url = format!("{}/{}/oauth2/v2.0/token", c.http_url(), tid());
    let http = reqwest::Client::new();
    // (form, HTTP status, `error`, AADSTS code)
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str, u64);
    let cases: &[Case] = &[
        (
            &[
                ("grant_type", "client_credentials"),
                ("scope", "api://x/.default"),
            ],
            400,
            "invalid_request",
            900144,
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "00000000-0000-0000-0000-000000000000"),
                ("scope", "api://x/.default"),
            ],
            400,
            "unauthorized_client",
            700016,
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("client_id", ids::STS_APP_ID),
                ("scope", "api://x/.default"),
            ],
            401,
            "invalid_client",
            7000218,
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("client_id", ids::STS_APP_ID),
                ("scope", "api://x/.default"),
                ("client_secret", "s"),
            ],
            401,
            "invalid_client",
            7000215,
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("client_id", ids::STS_APP_ID),
                ("scope", "api://x/.default"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", "not-a-jwt"),
            ],
            401,
            "invalid_client",
            50027,
        ),
        (
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", ids::STS_APP_ID),
            ],
            400,
            "unsupported_grant_type",
            70003,
        ),
    ];
    for (form, status, error, code) in cases {
        let r = http
            .post(&url)
            .header("client-request-id", "4f0b7a7e-1111-2222-3333-444455556666")
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), *status, "{form:?}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(
            (b["error"].as_str(), b["error_codes"][0].as_u64()),
            (Some(*error), Some(*code)),
            "{form:?}"
        );
        let d = b["error_description"].as_str().unwrap();
        assert!(
            d.starts_with(&format!("AADSTS{code}: "))
                && d.contains("\r\nTrace ID: ")
                && d.contains("\r\nCorrelation ID: 4f0b7a7e-1111-2222-3333-444455556666"),
            "{d}"
        );
        assert_eq!(b["correlation_id"], "4f0b7a7e-1111-2222-3333-444455556666");
        assert!(
            b["timestamp"].as_str().unwrap().ends_with('Z') && b["trace_id"].as_str().is_some()
        );
    }
}

#[tokio::test]
async fn expired_and_foreign_assertions_are_refused() {
    let c = cloud().await;
    let url = format!("{}/{}/oauth2/v2.0/token", c.http_url(), tid());
    let mi = c.state().registry().managed_identities[0].clone();
    let (good, _) =
        local_cloud::identity::mint_mi_token(c.state(), &mi, "api://AzureADTokenExchange").unwrap();
    // Same claims signed by a key Entra never published.
    let other = local_cloud::keys::KeySet::generate().unwrap();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&good).unwrap();
    let forged = other.sign(&claims, false);
    let mut expired_claims = claims.clone();
    expired_claims["exp"] = serde_json::json!(1_000_000_000u64);
    let expired = c
        .state()
        .tenant_keys
        .read()
        .unwrap()
        .sign(&expired_claims, false);
    let scope = format!("api://{}/.default", ids::STS_APP_ID);
    for (assertion, status, code) in [
        (forged.as_str(), 401, 700027),
        // Recorded as 401 Unauthorized (Azure/azure-sdk-for-go#18176).
        (expired.as_str(), 401, 700024),
    ] {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", ids::STS_APP_ID),
            ("scope", scope.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ];
        let r = reqwest::Client::new()
            .post(&url)
            .form(&form)
            .send()
            .await
            .unwrap();
        let http_status = r.status().as_u16();
        let b: Value = r.json().await.unwrap();
        assert_eq!(
            (http_status, &b["error"], &b["error_codes"][0]),
            (
                status,
                &serde_json::json!("invalid_client"),
                &serde_json::json!(code)
            ),
            "{b}"
        );
    }
}

#[tokio::test]
async fn sts_validation_errors_and_unsigned_get_caller_identity() {
    let c = cloud().await;
    let http = reqwest::Client::new();
    let post = |form: Vec<(&'static str, String)>| http.post(c.http_url()).form(&form).send();
    let r = post(vec![
        ("Action", "AssumeRoleWithWebIdentity".into()),
        ("Version", "2011-06-15".into()),
        (
            "RoleArn",
            "arn:aws:iam::123456789012:role/BedrockInvokerFromAzure".into(),
        ),
        ("RoleSessionName", "has space".into()),
        ("WebIdentityToken", "abcd".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<Code>ValidationError</Code>") && body.contains("roleSessionName"),
        "{body}"
    );
    let r = post(vec![
        ("Action", "AssumeRoleWithWebIdentity".into()),
        ("Version", "2011-06-15".into()),
        (
            "RoleArn",
            "arn:aws:iam::123456789012:role/BedrockInvokerFromAzure".into(),
        ),
        ("RoleSessionName", "s1".into()),
        ("WebIdentityToken", "not-a-jwt".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("<Code>InvalidIdentityToken</Code>"), "{body}");
    let r = post(vec![
        ("Action", "GetCallerIdentity".into()),
        ("Version", "2011-06-15".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<Code>MissingAuthenticationToken</Code>")
    );
    let r = post(vec![
        ("Action", "GetSessionToken".into()),
        ("Version", "2011-06-15".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<Code>InvalidAction</Code>")
            && body.contains("Could not find operation GetSessionToken for version 2011-06-15"),
        "{body}"
    );
}

#[tokio::test]
async fn identity_endpoints_validate_like_azure() {
    let c = cloud().await;
    let http = reqwest::Client::new();
    let imds = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://AzureADTokenExchange",
        c.http_url()
    );
    let r = http.get(&imds).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_request_102");
    let ok: Value = http
        .get(&imds)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in [
        "access_token",
        "expires_in",
        "expires_on",
        "not_before",
        "resource",
        "token_type",
    ] {
        assert!(
            ok[field].is_string(),
            "IMDS sends {field} as a string: {ok}"
        );
    }
    let aca = format!(
        "{}/msi/token?api-version=2019-08-01&resource=api://AzureADTokenExchange",
        c.http_url()
    );
    let ok: Value = http
        .get(&aca)
        .header("X-IDENTITY-HEADER", c.identity_header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ok["expires_on"].is_string() && ok["client_id"] == ids::MI_CLIENT_ID);
    let r = http
        .get(&aca)
        .header("X-IDENTITY-HEADER", c.identity_header())
        .query(&[("client_id", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Unable to load the proper Managed Identity."
    );
}

/// The control routes cannot be driven by a web page in the developer's browser: a non-loopback
/// `Host` (DNS rebinding) is refused, and state changes need a JSON body, which a simple
/// cross-site POST cannot send.
#[tokio::test]
async fn control_routes_refuse_cross_site_requests() {
    let c = LocalCloud::builder().start().await.unwrap();
    let http = reqwest::Client::new();
    let rotate = format!("{}/_local/rotate-keys", c.http_url());
    let kid_before = c.state().tenant_keys.read().unwrap().current().kid.clone();

    let rebound = http
        .post(&rotate)
        .header("host", "evil.example")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403, "a non-loopback Host");
    let rebound_get = http
        .get(format!("{}/_local/registry", c.http_url()))
        .header("host", "evil.example:4000")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound_get.status(), 403, "reads too");

    for (content_type, body) in [
        ("application/x-www-form-urlencoded", "a=b"),
        ("text/plain", "{}"),
        ("multipart/form-data; boundary=x", "--x--"),
    ] {
        let simple = http
            .post(&rotate)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(simple.status(), 415, "{content_type}");
    }
    let no_type = http.post(&rotate).send().await.unwrap();
    assert_eq!(no_type.status(), 415, "no content type");
    assert_eq!(
        c.state().tenant_keys.read().unwrap().current().kid,
        kid_before,
        "none of them rotated the keys"
    );

    for host in [
        format!("127.0.0.1:{}", c.http_url().rsplit(':').next().unwrap()),
        "localhost".to_string(),
        "[::1]:4000".to_string(),
    ] {
        let ok = http
            .post(&rotate)
            .header("host", &host)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{host}");
    }
}

fn claims_of(token: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap()
}

async fn mi_token(c: &LocalCloud, resource: &str) -> String {
    let r: Value = reqwest::Client::new()
        .get(format!(
            "{}/msi/token?api-version=2019-08-01&resource={resource}",
            c.http_url()
        ))
        .header("X-IDENTITY-HEADER", c.identity_header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().expect("a token").to_string()
}

async fn intermediary_token(c: &LocalCloud) -> Value {
    let assertion = mi_token(c, "api://AzureADTokenExchange").await;
    let r: Value = reqwest::Client::new()
        .post(format!("{}/{}/oauth2/v2.0/token", c.http_url(), tid()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", ids::STS_APP_ID),
            ("scope", &format!("api://{}/.default", ids::STS_APP_ID)),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    claims_of(r["access_token"].as_str().expect("a token"))
}

/// Tokens carry the claims Entra emits for their kind: `idtyp` is an optional claim (in tokens for
/// a customer's app only when that app requests it), `xms_mirid` is on managed-identity tokens for
/// Microsoft's resources and not on tokens for a customer's app.
#[tokio::test]
async fn tokens_carry_only_the_claims_entra_emits_for_their_kind() {
    let c = cloud().await;
    let for_exchange = claims_of(&mi_token(&c, "api://AzureADTokenExchange").await);
    assert_eq!(
        for_exchange["xms_mirid"],
        serde_json::json!(c.state().registry().managed_identities[0].resource_id),
        "a managed-identity token for a Microsoft resource names the identity's resource id"
    );
    let for_our_app = claims_of(&mi_token(&c, &format!("api://{}", ids::STS_APP_ID)).await);
    assert!(
        for_our_app.get("xms_mirid").is_none() && for_our_app.get("idtyp").is_none(),
        "no xms_mirid or idtyp on a token for a customer's app: {for_our_app}"
    );
    let v1 = intermediary_token(&c).await;
    assert_eq!(v1["ver"], "1.0");
    assert!(v1.get("idtyp").is_none(), "idtyp is optional: {v1}");
    c.edit_registry(|r| {
        r.app_mut(ids::STS_APP_ID)
            .unwrap()
            .optional_claims
            .push("idtyp".into())
    });
    assert_eq!(
        intermediary_token(&c).await["idtyp"],
        "app",
        "requested as an optional claim"
    );
}

/// IMDS without a selector: the system-assigned identity, else the only user-assigned one; with
/// several user-assigned identities and no system-assigned one it cannot choose and says so.
#[tokio::test]
async fn imds_picks_the_only_user_assigned_identity_and_refuses_to_guess_among_several() {
    let c = cloud().await;
    let user_assigned = |name: &str, n: u8| local_cloud::registry::ManagedIdentity {
        name: name.into(),
        object_id: format!("00000000-0000-4000-8000-0000000000{n:02}"),
        client_id: format!("10000000-0000-4000-8000-0000000000{n:02}"),
        resource_id: format!(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        ),
        system_assigned: false,
        attached: true,
    };
    c.edit_registry(|r| {
        r.managed_identities = vec![user_assigned("only", 1)];
    });
    let imds = || {
        reqwest::Client::new()
            .get(format!(
                "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://AzureADTokenExchange",
                c.http_url()
            ))
            .header("Metadata", "true")
            .send()
    };
    let ok: Value = imds().await.unwrap().json().await.unwrap();
    let claims = claims_of(ok["access_token"].as_str().expect("a token"));
    assert_eq!(claims["oid"], "00000000-0000-4000-8000-000000000001");
    c.edit_registry(|r| r.managed_identities.push(user_assigned("second", 2)));
    let refused = imds().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "invalid_request", "error_description": "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"})
    );
}
