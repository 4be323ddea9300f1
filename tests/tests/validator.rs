//! The downstream-token validator against the local Entra's published keys: what is accepted and
//! what is refused, with the right status and reason.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entra_federation::validate::{
    KindPolicy, Policy, TokenKind, TokenValidator, ValidationError, ValidatorConfig,
};
use local_cloud::{Fault, LocalCloud, ids};
use serde_json::{Value, json};
use system_tests::*;

const API: &str = "api://weather-api";

fn validator(cloud: &LocalCloud, app_only: KindPolicy, delegated: KindPolicy) -> TokenValidator {
    let mut config = ValidatorConfig::new(
        ids::TENANT_ID,
        vec![API.into()],
        Policy::new([ids::AGENT_CLIENT_ID], app_only, delegated)
            .with_expected_blueprint(ids::BLUEPRINT_APP_ID),
    );
    config.authority = format!("{}/", cloud.https_url()).parse().unwrap();
    config.root_ca = Some(cloud.ca_file().to_path_buf());
    TokenValidator::new(config).unwrap()
}

/// A configuration for `tenant` that accepts the agent's app-only tokens with `Weather.Read`.
fn app_only_config(tenant: &str) -> ValidatorConfig {
    ValidatorConfig::new(
        tenant,
        vec![API.into()],
        Policy::new(
            [ids::AGENT_CLIENT_ID],
            KindPolicy::Require("Weather.Read".into()),
            KindPolicy::Deny,
        ),
    )
}

fn default_validator(cloud: &LocalCloud) -> TokenValidator {
    validator(
        cloud,
        KindPolicy::Require("Weather.Read".into()),
        KindPolicy::Require("Weather.Read".into()),
    )
}

fn now() -> i64 {
    local_cloud::state::unix_seconds(std::time::SystemTime::now()) as i64
}

/// An autonomous agent token (v1), as the Agent ID flow mints it for the weather API.
fn app_claims() -> Value {
    let t = now();
    json!({
        "aud": API, "iss": format!("https://sts.windows.net/{}/", ids::TENANT_ID),
        "iat": t, "nbf": t, "exp": t + 3600,
        "appid": ids::AGENT_CLIENT_ID, "appidacr": "2", "idtyp": "app",
        "oid": ids::AGENT_SP_OID, "sub": ids::AGENT_SP_OID, "tid": ids::TENANT_ID, "ver": "1.0",
        "roles": ["Weather.Read"], "xms_par_app_azp": ids::BLUEPRINT_APP_ID, "xms_act_fct": "11", "xms_sub_fct": "11",
    })
}

fn user_claims() -> Value {
    let mut c = app_claims();
    c["idtyp"] = json!("user");
    c.as_object_mut().unwrap().remove("roles");
    c["scp"] = json!("Weather.Read");
    c["oid"] = json!("0b1c2d3e-0000-4000-8000-000000000001");
    c["upn"] = json!("dev@contoso.onmicrosoft.com");
    c
}

/// `claims` as a v2 token: `ver` 2.0 and the tenant's v2 issuer.
fn as_v2(claims: Value) -> Value {
    let claims = with(claims, "ver", json!("2.0"));
    with(
        claims,
        "iss",
        json!(format!(
            "https://login.microsoftonline.com/{}/v2.0",
            ids::TENANT_ID
        )),
    )
}

fn sign(cloud: &LocalCloud, claims: &Value) -> String {
    cloud
        .state()
        .tenant_keys
        .read()
        .unwrap()
        .sign(claims, claims["ver"] == "1.0")
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

async fn refused(v: &TokenValidator, token: &str) -> ValidationError {
    v.validate(token).await.expect_err("must be refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_agent_tokens_are_accepted() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    let ok = v
        .validate(&sign(&cloud, &app_claims()))
        .await
        .expect("autonomous v1 token");
    assert_eq!(
        (ok.kind, ok.claims.app_id()),
        (TokenKind::AppOnly, Some(ids::AGENT_CLIENT_ID))
    );
    let ok = v
        .validate(&sign(&cloud, &user_claims()))
        .await
        .expect("delegated token");
    assert_eq!(ok.kind, TokenKind::Delegated);
    let v2 = with(
        without(app_claims(), "appid"),
        "azp",
        json!(ids::AGENT_CLIENT_ID),
    );
    v.validate(&sign(&cloud, &as_v2(v2)))
        .await
        .expect("v2 token against v2 metadata");
    v.validate_header(Some(&format!("Bearer {}", sign(&cloud, &app_claims()))))
        .await
        .expect("from a header");
    assert_eq!(
        v.validate_header(None).await.unwrap_err(),
        ValidationError::Missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_unsigned_tokens_are_refused() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    let good = sign(&cloud, &app_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());

    // Bad signature: another payload under the original signature.
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with(app_claims(), "roles", json!(["Admin"]))),
        parts[2]
    );
    assert_eq!(refused(&v, &tampered).await, ValidationError::Signature);

    // The sample's hole: a real kid plus a `nonce` header must not skip the signature check.
    let forged_header = with(header.clone(), "nonce", json!("graph-style-nonce"));
    let other_key = local_cloud::keys::KeySet::generate()
        .unwrap()
        .sign(&app_claims(), true);
    let forged = format!(
        "{}.{}.{}",
        b64(&forged_header),
        parts[1],
        other_key.split('.').nth(2).unwrap()
    );
    assert_eq!(refused(&v, &forged).await, ValidationError::Signature);

    // alg none.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": header["kid"]})),
        parts[1]
    );
    assert!(
        matches!(refused(&v, &none).await, ValidationError::Malformed(m) if m.contains("unknown variant `none`")),
        "alg none is not an algorithm the header parser knows"
    );

    // HS256 "signed" with the public key (the classic algorithm-confusion attack).
    let jwks: Value = reqwest::Client::new()
        .get(format!(
            "{}/{}/discovery/keys",
            cloud.http_url(),
            ids::TENANT_ID
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = jwks["keys"][0]["n"].as_str().unwrap().as_bytes().to_vec();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = header["kid"].as_str().map(str::to_string);
    let hs = jsonwebtoken::encode(
        &h,
        &app_claims(),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        refused(&v, &hs).await,
        ValidationError::Algorithm("HS256".into())
    );
    for e in [
        ValidationError::Signature,
        ValidationError::Algorithm("HS256".into()),
    ] {
        assert_eq!(e.status(), 401);
        assert!(
            e.www_authenticate()
                .starts_with("Bearer error=\"invalid_token\"")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_kid_or_of_an_unknown_version_is_refused_before_any_key_fetch() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    let good = sign(&cloud, &app_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert!(header.as_object_mut().unwrap().remove("kid").is_some());
    let no_kid = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        parts[1],
        parts[2]
    );
    assert_eq!(refused(&v, &no_kid).await, ValidationError::NoKeyId);
    for ver in ["3.0", "1", "2.0.1", ""] {
        assert_eq!(
            refused(&v, &sign(&cloud, &with(app_claims(), "ver", json!(ver)))).await,
            ValidationError::Version(ver.into())
        );
    }
    assert_eq!(
        (cloud.counter("entra_metadata"), cloud.counter("entra_jwks")),
        (0, 0),
        "refused before any key was fetched"
    );
    for e in [
        ValidationError::NoKeyId,
        ValidationError::Version("3.0".into()),
    ] {
        assert_eq!(e.status(), 401);
        assert!(
            e.www_authenticate()
                .starts_with("Bearer error=\"invalid_token\""),
            "{e}"
        );
    }
    // With the keys loaded, the same refusals.
    v.validate(&good)
        .await
        .expect("a good token loads the keys");
    assert_eq!(refused(&v, &no_kid).await, ValidationError::NoKeyId);
    assert_eq!(
        refused(&v, &sign(&cloud, &with(app_claims(), "ver", json!("3.0")))).await,
        ValidationError::Version("3.0".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_is_refused_after_one_refresh_and_rotation_is_followed() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    v.validate(&sign(&cloud, &app_claims())).await.unwrap();
    let fetched = cloud.counter("entra_jwks");
    let stranger = local_cloud::keys::KeySet::generate().unwrap();
    let stranger_kid = stranger.current().kid.clone();
    let unknown = stranger.sign(&app_claims(), true);
    assert_eq!(
        refused(&v, &unknown).await,
        ValidationError::UnknownKey(stranger_kid.clone())
    );
    assert_eq!(
        cloud.counter("entra_jwks"),
        fetched + 2,
        "one refresh (v1 and v2 keys)"
    );
    assert_eq!(
        refused(&v, &stranger.sign(&app_claims(), true)).await,
        ValidationError::UnknownKey(stranger_kid)
    );
    assert_eq!(
        cloud.counter("entra_jwks"),
        fetched + 2,
        "at most one kid-miss refresh per 5 minutes"
    );

    // A real rotation: the new key is fetched once the limit allows and then accepted.
    let v = default_validator(&cloud);
    v.validate(&sign(&cloud, &app_claims())).await.unwrap();
    cloud.state().tenant_keys.write().unwrap().rotate().unwrap();
    let before = cloud.counter("entra_jwks");
    v.validate(&sign(&cloud, &app_claims()))
        .await
        .expect("the rotated key is fetched on the first miss");
    assert_eq!(
        cloud.counter("entra_jwks"),
        before + 2,
        "the new key came from a fetch (v1 and v2 keys)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_known_good_keys_survive_a_metadata_outage() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    v.validate(&sign(&cloud, &app_claims())).await.unwrap();
    cloud.inject(Fault {
        target: "entra_metadata".into(),
        status: 503,
        code: None,
        count: None,
        retry_after: None,
        ..Default::default()
    });
    // Force the periodic refresh path to run and fail.
    let loaded_at = v.keys().current().fetched_at;
    let before = cloud.counter("entra_metadata");
    let kept = v.keys().refresh(false).await;
    assert_eq!(
        cloud.counter("entra_metadata"),
        before + 1,
        "a fetch was attempted (and failed at the first metadata document)"
    );
    assert!(
        loaded_at.is_some() && kept.fetched_at == loaded_at,
        "the last good keys were kept"
    );
    v.validate(&sign(&cloud, &app_claims()))
        .await
        .expect("the last good keys still validate");
    let fresh = default_validator(&cloud);
    let before = cloud.counter("entra_metadata");
    assert_eq!(
        refused(&fresh, &sign(&cloud, &app_claims())).await,
        ValidationError::KeysUnavailable
    );
    // The first-use load failed; the refresh for the (so unknown) kid right after it is skipped,
    // since the failure is being backed off from.
    assert_eq!(
        cloud.counter("entra_metadata"),
        before + 1,
        "the keys were asked for once"
    );
    assert_eq!(ValidationError::KeysUnavailable.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_claims_are_refused_with_the_reason() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    let tid = ids::TENANT_ID;
    let t = now();
    let cases: Vec<(Value, ValidationError)> = vec![
        (
            with(
                app_claims(),
                "iss",
                json!("https://sts.windows.net/00000000-0000-0000-0000-000000000000/"),
            ),
            ValidationError::Issuer {
                iss: "https://sts.windows.net/00000000-0000-0000-0000-000000000000/".into(),
                expected: format!("https://sts.windows.net/{tid}/"),
            },
        ),
        (
            with(app_claims(), "ver", json!("2.0")),
            ValidationError::Issuer {
                iss: format!("https://sts.windows.net/{tid}/"),
                expected: format!("https://login.microsoftonline.com/{tid}/v2.0"),
            },
        ),
        (
            with(
                app_claims(),
                "tid",
                json!("00000000-0000-0000-0000-000000000000"),
            ),
            ValidationError::Tenant("00000000-0000-0000-0000-000000000000".into()),
        ),
        (
            with(app_claims(), "aud", json!("https://graph.microsoft.com")),
            ValidationError::Audience("https://graph.microsoft.com".into()),
        ),
        (
            with(app_claims(), "exp", json!(t - 400)),
            ValidationError::Expired,
        ),
        (
            with(app_claims(), "nbf", json!(t + 400)),
            ValidationError::NotYetValid,
        ),
        (
            with(
                app_claims(),
                "appid",
                json!("11111111-2222-3333-4444-555555555555"),
            ),
            ValidationError::AppNotAllowed("11111111-2222-3333-4444-555555555555".into()),
        ),
        (
            with(
                app_claims(),
                "xms_par_app_azp",
                json!("99999999-2222-3333-4444-555555555555"),
            ),
            ValidationError::Blueprint("99999999-2222-3333-4444-555555555555".into()),
        ),
        (
            with(app_claims(), "roles", json!(["Other.Role"])),
            ValidationError::Permission("Weather.Read".into()),
        ),
        (
            without(app_claims(), "exp"),
            ValidationError::MissingClaim("exp"),
        ),
        (
            without(app_claims(), "aud"),
            ValidationError::MissingClaim("aud"),
        ),
        (
            without(app_claims(), "iss"),
            ValidationError::MissingClaim("iss"),
        ),
        (
            without(app_claims(), "tid"),
            ValidationError::MissingClaim("tid"),
        ),
        (
            without(app_claims(), "ver"),
            ValidationError::MissingClaim("ver"),
        ),
    ];
    for (claims, expected) in cases {
        let status = expected.status();
        assert_eq!(refused(&v, &sign(&cloud, &claims)).await, expected);
        let forbidden = matches!(
            expected,
            ValidationError::AppNotAllowed(_)
                | ValidationError::Blueprint(_)
                | ValidationError::Permission(_)
        );
        assert_eq!(status, if forbidden { 403 } else { 401 }, "{expected}");
    }
    // Within the 5-minute skew is fine.
    v.validate(&sign(&cloud, &with(app_claims(), "exp", json!(t - 200))))
        .await
        .expect("inside the skew");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_token_must_be_authorised_explicitly() {
    let cloud = cloud().await;
    let app_only = validator(
        &cloud,
        KindPolicy::Require("Weather.Read".into()),
        KindPolicy::Deny,
    );
    assert_eq!(
        refused(&app_only, &sign(&cloud, &user_claims())).await,
        ValidationError::KindNotAllowed("delegated (user)")
    );
    let users_only = validator(
        &cloud,
        KindPolicy::Deny,
        KindPolicy::Require("Weather.Read".into()),
    );
    assert_eq!(
        refused(&users_only, &sign(&cloud, &app_claims())).await,
        ValidationError::KindNotAllowed("app-only")
    );
    assert_eq!(ValidationError::KindNotAllowed("app-only").status(), 403);
    let wrong_scope = with(user_claims(), "scp", json!("User.Read"));
    assert_eq!(
        refused(&users_only, &sign(&cloud, &wrong_scope)).await,
        ValidationError::Permission("Weather.Read".into())
    );
    // An `idtyp` that is neither app nor user is not guessed at (without one, see
    // tokens_without_idtyp_are_classified_by_scp).
    let device = with(user_claims(), "idtyp", json!("device"));
    assert_eq!(
        refused(&users_only, &sign(&cloud, &device)).await,
        ValidationError::MissingClaim("idtyp")
    );
}

#[tokio::test(start_paused = true)]
async fn requests_do_not_wait_on_the_periodic_refresh() {
    let clock = system_tests::TokioTime::new();
    let cloud = cloud_with(local_cloud::Registry::tutorial_default(), clock.clone()).await;
    let mut config = app_only_config(ids::TENANT_ID);
    config.authority = format!("{}/", cloud.http_url()).parse().unwrap();
    config.time_source = aws_smithy_async::time::SharedTimeSource::new(clock.clone());
    let v = TokenValidator::new(config).unwrap();
    let token = |cloud: &LocalCloud| {
        let t = local_cloud::state::unix_seconds(clock.now()) as i64;
        sign(
            cloud,
            &with(
                with(with(app_claims(), "iat", json!(t)), "nbf", json!(t)),
                "exp",
                json!(t + 3600),
            ),
        )
    };
    v.validate(&token(&cloud))
        .await
        .expect("first use loads the keys");
    let loaded_at = v.keys().current().fetched_at.expect("loaded");
    // Thirteen hours later the keys are due; the metadata endpoint now holds every call until the
    // test releases it.
    tokio::time::advance(std::time::Duration::from_secs(13 * 3600)).await;
    let hold = cloud.hold("entra_metadata");
    let before = cloud.counter("entra_metadata");
    for _ in 0..10 {
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            v.validate(&token(&cloud)),
        )
        .await
        .expect("a request waited on the periodic key refresh")
        .expect("validated with the current keys");
    }
    within(
        "the periodic refresh at the held metadata",
        hold.until_arrived(1),
    )
    .await;
    hold.release();
    // The refresh went out beside the requests; wait for it to swap the keys in (a condition
    // polled on the paused clock, at most two simulated minutes).
    for _ in 0..120 {
        if v.keys().current().fetched_at > Some(loaded_at) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    // One refresh, not one per request.
    assert_eq!(
        cloud.counter("entra_metadata"),
        before + 2,
        "v1 and v2 metadata, once"
    );
    assert!(
        v.keys().current().fetched_at > Some(loaded_at),
        "the periodic refresh completed and swapped the keys in"
    );
}

/// RFC 7235: the auth scheme is case-insensitive.
#[tokio::test]
async fn the_bearer_scheme_is_matched_case_insensitively() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    let token = sign(&cloud, &app_claims());
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        v.validate_header(Some(&format!("{scheme} {token}")))
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
    }
    assert!(matches!(
        v.validate_header(Some(&format!("Basic {token}"))).await,
        Err(ValidationError::Missing)
    ));
}

/// A tenant id configured in upper case still accepts the tenant's tokens: Entra writes the
/// GUID in lower case in `iss` and `tid`.
#[tokio::test]
async fn an_upper_case_tenant_id_accepts_the_tenants_tokens() {
    let cloud = cloud().await;
    let mut config = ValidatorConfig::new(
        &ids::TENANT_ID.to_uppercase(),
        vec![API.into()],
        Policy::new(
            [ids::AGENT_CLIENT_ID],
            KindPolicy::Require("Weather.Read".into()),
            KindPolicy::Require("Weather.Read".into()),
        )
        .with_expected_blueprint(ids::BLUEPRINT_APP_ID),
    );
    config.authority = format!("{}/", cloud.https_url()).parse().unwrap();
    config.root_ca = Some(cloud.ca_file().to_path_buf());
    let v = TokenValidator::new(config).unwrap();
    v.validate(&sign(&cloud, &app_claims()))
        .await
        .expect("v1 token of the tenant");
    v.validate(&sign(&cloud, &as_v2(app_claims())))
        .await
        .expect("v2 token of the tenant");
}

/// The `error_description` is an RFC 7230 quoted-string: `"` and `\` are escaped, so what a client
/// unescapes is the error's text.
#[test]
fn www_authenticate_is_a_well_formed_quoted_string() {
    let e = ValidationError::Tenant(r#"a\"b\\c"#.into());
    let header = e.www_authenticate();
    let quoted = header
        .split_once("error_description=\"")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{header}"));
    let mut unescaped = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => unescaped.push(chars.next().expect("an escaped character")),
            '"' => panic!("an unescaped quote ends the string early: {header}"),
            c => unescaped.push(c),
        }
    }
    assert_eq!(unescaped, e.to_string());
}

/// Entra emits `idtyp` only where the API asks for it as an optional claim. Without it, a token
/// is classified as Microsoft.Identity.Web does: `scp` present → delegated, else app-only, which
/// then needs its app role.
#[tokio::test]
async fn tokens_without_idtyp_are_classified_by_scp() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    let app = v
        .validate(&sign(&cloud, &without(app_claims(), "idtyp")))
        .await
        .expect("an app-only token with its role");
    assert_eq!(app.kind, TokenKind::AppOnly);
    let user = v
        .validate(&sign(&cloud, &without(user_claims(), "idtyp")))
        .await
        .expect("a delegated token with its scope");
    assert_eq!(user.kind, TokenKind::Delegated);
    let roleless = without(without(app_claims(), "idtyp"), "roles");
    let refused = v
        .validate(&sign(&cloud, &roleless))
        .await
        .expect_err("app-only without the role");
    assert_eq!(refused.status(), 403, "{refused}");
}

/// The tenant is joined into the metadata URLs: the same rule as the provider's.
#[test]
fn a_tenant_that_is_neither_a_guid_nor_a_domain_is_refused() {
    for tenant in [r"\\evil.example", "http:evil.example", "a/b"] {
        let config = app_only_config(tenant);
        match TokenValidator::new(config) {
            Err(entra_federation::ConfigError::Invalid { name, .. }) => {
                assert_eq!(name, "TENANT_ID", "{tenant}")
            }
            Err(other) => panic!("{tenant}: {other}"),
            Ok(_) => panic!("{tenant} accepted"),
        }
    }
}

/// Metadata that points `jwks_uri` at another host (someone on the path serving their own keys)
/// is refused: keys are fetched only from the authority's own origin.
#[tokio::test]
async fn keys_are_fetched_only_from_the_authoritys_origin() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cloud = cloud().await;
    let elsewhere_hits = Arc::new(AtomicUsize::new(0));
    // "Elsewhere": another origin (localhost, not 127.0.0.1), counting what reaches it.
    let elsewhere = {
        let hits = elsewhere_hits.clone();
        let app = axum::Router::new().fallback(move || {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"keys": []}))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://localhost:{port}/keys")
    };
    let authority = {
        let jwks = elsewhere.clone();
        let app = axum::Router::new().fallback(move || {
            let jwks = jwks.clone();
            async move {
                axum::Json(json!({
                    "issuer": format!("https://sts.windows.net/{}/", ids::TENANT_ID),
                    "jwks_uri": jwks,
                }))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    };
    let mut config = app_only_config(ids::TENANT_ID);
    config.authority = authority.parse().unwrap();
    let v = TokenValidator::new(config).unwrap();
    let refused = v
        .validate(&sign(&cloud, &app_claims()))
        .await
        .expect_err("keys from another origin");
    assert!(
        matches!(refused, ValidationError::KeysUnavailable),
        "{refused:?}"
    );
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "nothing was fetched from the other origin"
    );
}

/// The authority the keys come from must be https (loopback excepted, for the local cloud).
#[test]
fn a_plain_http_authority_is_refused() {
    let mut config = app_only_config(ids::TENANT_ID);
    config.authority = "http://login.example.com/".parse().unwrap();
    match TokenValidator::new(config) {
        Err(entra_federation::ConfigError::Endpoint(e)) => {
            assert!(e.to_string().contains("AZURE_AUTHORITY_HOST"), "{e}")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("plain http accepted"),
    }
}

/// An authority that starts publishing an empty key set (a broken deployment, a hostile path)
/// must not wipe out the good keys: an empty set is a failed refresh.
#[tokio::test]
async fn an_empty_key_set_never_replaces_good_keys() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cloud = cloud().await;
    let real_keys: Value = reqwest::get(format!(
        "{}/{}/discovery/keys",
        cloud.http_url(),
        ids::TENANT_ID
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // The authority: metadata pointing at its own /keys, which serves the tenant's real keys for
    // the first load (v1 and v2) and an empty set afterwards.
    let key_fetches = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = {
        let (base, fetches) = (base.clone(), key_fetches.clone());
        axum::Router::new()
            .route(
                "/keys",
                axum::routing::get(move || {
                    let (real, fetches) = (real_keys.clone(), fetches.clone());
                    async move {
                        if fetches.fetch_add(1, Ordering::SeqCst) < 2 {
                            axum::Json(real)
                        } else {
                            axum::Json(json!({"keys": []}))
                        }
                    }
                }),
            )
            .fallback(move || {
                let base = base.clone();
                async move {
                    axum::Json(json!({
                        "issuer": format!("https://sts.windows.net/{}/", ids::TENANT_ID),
                        "jwks_uri": format!("{base}/keys"),
                    }))
                }
            })
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = app_only_config(ids::TENANT_ID);
    config.authority = format!("{base}/").parse().unwrap();
    let v = TokenValidator::new(config).unwrap();
    let good = sign(&cloud, &app_claims());
    v.validate(&good).await.expect("the first load");
    // A token naming an unknown key makes the validator refresh: the authority now publishes
    // nothing.
    let mut unknown: Vec<String> = good.split('.').map(str::to_string).collect();
    unknown[0] = URL_SAFE_NO_PAD
        .encode(json!({"alg": "RS256", "typ": "JWT", "kid": "no-such-key"}).to_string());
    let refused = v
        .validate(&unknown.join("."))
        .await
        .expect_err("unknown key");
    assert!(
        matches!(refused, ValidationError::UnknownKey(_)),
        "{refused:?}"
    );
    assert!(
        key_fetches.load(Ordering::SeqCst) > 2,
        "the refresh was attempted"
    );
    v.validate(&good)
        .await
        .expect("the good keys are still there");
}

/// Point 15: while the keys cannot be fetched, requests are answered 503 at once from a backoff,
/// not each with a new round of fetches; once the backoff ends, a fetch is tried again.
#[tokio::test(start_paused = true)]
async fn a_failing_key_fetch_is_backed_off_and_answered_quickly() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cloud = cloud().await;
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = {
        let hits = hits.clone();
        axum::Router::new().fallback(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }
        })
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = app_only_config(ids::TENANT_ID);
    config.authority = format!("{base}/").parse().unwrap();
    // The backoff runs on the validator's time source: Tokio's (paused) clock here.
    config.time_source = aws_smithy_async::time::SharedTimeSource::new(TokioTime::new());
    let v = TokenValidator::new(config).unwrap();
    let token = sign(&cloud, &app_claims());
    assert!(matches!(
        refused(&v, &token).await,
        ValidationError::KeysUnavailable
    ));
    let after_first = hits.load(Ordering::SeqCst);
    assert!(after_first >= 1);
    for _ in 0..50 {
        assert!(matches!(
            refused(&v, &token).await,
            ValidationError::KeysUnavailable
        ));
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        after_first,
        "no fetch while backing off"
    );
    assert!(v.keys().last_error().unwrap().contains("503"));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    refused(&v, &token).await;
    assert!(hits.load(Ordering::SeqCst) > after_first, "tried again");
}

/// An authority in front of the local cloud whose v2 metadata names `v2_issuer`.
async fn authority_naming_v2_issuer(cloud: &LocalCloud, v2_issuer: &str) -> String {
    let real = cloud.https_url();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(cloud.ca_file()).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = {
        let (base, issuer) = (base.clone(), v2_issuer.to_string());
        axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (real, http, base, issuer) =
                (real.clone(), http.clone(), base.clone(), issuer.clone());
            async move {
                let path = uri.path().to_string();
                let mut doc: Value = http
                    .get(format!("{real}{path}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if path.ends_with("openid-configuration") {
                    let jwks = doc["jwks_uri"].as_str().unwrap().replace(&real, &base);
                    doc["jwks_uri"] = json!(jwks);
                    if path.contains("/v2.0/") {
                        doc["issuer"] = json!(issuer);
                    }
                }
                axum::Json(doc)
            }
        })
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("{base}/")
}

fn v2_app_token(cloud: &LocalCloud, iss: Option<&str>) -> String {
    let v2 = as_v2(with(
        without(app_claims(), "appid"),
        "azp",
        json!(ids::AGENT_CLIENT_ID),
    ));
    let claims = match iss {
        Some(iss) => with(v2, "iss", json!(iss)),
        None => v2,
    };
    sign(cloud, &claims)
}

/// Point 16: the v2 issuer is the one the authority's metadata names, so a sovereign cloud's
/// tokens (`login.microsoftonline.us`) validate; the public cloud's issuer is then refused.
#[tokio::test]
async fn the_v2_issuer_comes_from_the_authoritys_metadata() {
    let cloud = cloud().await;
    let gov = format!("https://login.microsoftonline.us/{}/v2.0", ids::TENANT_ID);
    let mut config = app_only_config(ids::TENANT_ID);
    config.authority = authority_naming_v2_issuer(&cloud, &gov)
        .await
        .parse()
        .unwrap();
    let v = TokenValidator::new(config).unwrap();
    v.validate(&v2_app_token(&cloud, Some(&gov)))
        .await
        .expect("the sovereign cloud's v2 issuer");
    assert!(matches!(
        refused(&v, &v2_app_token(&cloud, None)).await,
        ValidationError::Issuer { .. }
    ));
}

/// Review finding: metadata naming an issuer that is not this tenant's (or not https) is a
/// failed key fetch, not a new issuer to accept.
#[tokio::test]
async fn a_metadata_issuer_of_another_tenant_is_refused() {
    let cloud = cloud().await;
    for issuer in [
        "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0".to_string(),
        format!("http://login.microsoftonline.com/{}/v2.0", ids::TENANT_ID),
    ] {
        let mut config = app_only_config(ids::TENANT_ID);
        config.authority = authority_naming_v2_issuer(&cloud, &issuer)
            .await
            .parse()
            .unwrap();
        let v = TokenValidator::new(config).unwrap();
        assert_eq!(
            refused(&v, &v2_app_token(&cloud, Some(&issuer))).await,
            ValidationError::KeysUnavailable,
            "{issuer}"
        );
        assert!(
            v.keys().last_error().unwrap().contains("issuer"),
            "{:?}",
            v.keys().last_error()
        );
    }
}

/// Point 17: the API configured by its App ID URI (`api://<client id>`) accepts tokens for its
/// client id (v2) too, and the other way round, as Microsoft.Identity.Web does.
#[tokio::test]
async fn both_forms_of_the_apis_audience_are_accepted() {
    let cloud = cloud().await;
    let (uri, client_id) = (ids::WEATHER_API_AUDIENCE, ids::WEATHER_API_APP_ID);
    assert_eq!(uri, format!("api://{client_id}"));
    for (configured, carried) in [(uri, client_id), (client_id, uri)] {
        let mut config = app_only_config(ids::TENANT_ID);
        config.audiences = vec![configured.to_string()];
        config.authority = format!("{}/", cloud.https_url()).parse().unwrap();
        config.root_ca = Some(cloud.ca_file().to_path_buf());
        let v = TokenValidator::new(config).unwrap();
        v.validate(&sign(&cloud, &with(app_claims(), "aud", json!(carried))))
            .await
            .unwrap_or_else(|e| panic!("configured {configured}, token for {carried}: {e}"));
        assert!(matches!(
            refused(
                &v,
                &sign(&cloud, &with(app_claims(), "aud", json!("api://other")))
            )
            .await,
            ValidationError::Audience(_)
        ));
    }
}

// ---- The verified-token cache (issue 13 point 3) ----

/// A repeated token is answered from the cache, and the policy still decides: a token the policy
/// refuses is refused again, from the cache too.
#[tokio::test]
async fn a_repeated_token_is_answered_from_the_verified_cache_under_the_policy() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    let token = sign(&cloud, &app_claims());
    let first = v.validate(&token).await.unwrap();
    let again = v.validate(&token).await.unwrap();
    assert_eq!(v.verified_cache_hits(), 1);
    assert_eq!(first.claims, again.claims);
    let stranger = sign(
        &cloud,
        &with(
            app_claims(),
            "appid",
            json!("00000000-0000-0000-0000-00000000dead"),
        ),
    );
    let refusal = refused(&v, &stranger).await;
    assert!(
        matches!(refusal, ValidationError::AppNotAllowed(_)),
        "{refusal}"
    );
    assert_eq!(
        refused(&v, &stranger).await,
        refusal,
        "the same answer again"
    );
    assert_eq!(
        v.verified_cache_hits(),
        1,
        "a token the policy refuses is never kept (it would take an agent's place)"
    );
}

/// A cached token ends with its `exp` (plus the allowed skew), as an uncached one does.
#[tokio::test(start_paused = true)]
async fn a_cached_token_ends_with_its_exp() {
    let clock = system_tests::TokioTime::new();
    let cloud = cloud_with(local_cloud::Registry::tutorial_default(), clock.clone()).await;
    let mut config = app_only_config(ids::TENANT_ID);
    config.authority = format!("{}/", cloud.https_url()).parse().unwrap();
    config.root_ca = Some(cloud.ca_file().to_path_buf());
    config.time_source = aws_smithy_async::time::SharedTimeSource::new(clock.clone());
    let v = TokenValidator::new(config).unwrap();
    let t = local_cloud::state::unix_seconds(clock.now()) as i64;
    let token = sign(
        &cloud,
        &with(with(app_claims(), "iat", json!(t)), "exp", json!(t + 600)),
    );
    v.validate(&token).await.unwrap();
    v.validate(&token).await.unwrap();
    assert_eq!(v.verified_cache_hits(), 1);
    tokio::time::sleep(std::time::Duration::from_secs(600 + 300 + 2)).await;
    assert_eq!(refused(&v, &token).await, ValidationError::Expired);
    assert_eq!(v.verified_cache_hits(), 1);
}

/// A refetch that publishes the same key (the periodic refresh, a refresh for another kid)
/// keeps the tokens it verified.
#[tokio::test]
async fn a_refetch_that_publishes_the_same_key_keeps_its_verified_tokens() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    let token = sign(&cloud, &app_claims());
    v.validate(&token).await.unwrap();
    let fetched = cloud.counter("entra_jwks");
    v.keys().refresh(false).await;
    assert!(
        cloud.counter("entra_jwks") > fetched,
        "the keys were fetched again"
    );
    v.validate(&token).await.unwrap();
    assert_eq!(
        v.verified_cache_hits(),
        1,
        "the unchanged key still vouches for the token it verified"
    );
}

/// A cached token ends with the key that verified it: once the authority no longer publishes
/// that key, the token is refused.
#[tokio::test]
async fn a_cached_token_ends_with_the_key_that_verified_it() {
    let cloud = cloud().await;
    let v = default_validator(&cloud);
    let token = sign(&cloud, &app_claims());
    v.validate(&token).await.unwrap();
    for _ in 0..3 {
        cloud.state().tenant_keys.write().unwrap().rotate().unwrap();
    }
    v.keys().refresh(false).await;
    assert!(
        matches!(refused(&v, &token).await, ValidationError::UnknownKey(_)),
        "the retired key's token is refused"
    );
    assert_eq!(v.verified_cache_hits(), 0);
}
