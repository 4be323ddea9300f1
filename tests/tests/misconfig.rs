//! The tutorial's troubleshooting table, reproduced: each misconfiguration fails with the cloud's
//! own code and the library's fix.

use entra_federation::Error;
use entra_federation::error::{EntraError, TokenShapeError};
use entra_federation::error::{StsError, StsErrorCode};
use local_cloud::{LocalCloud, Registry, ids};
use system_tests::*;

async fn failure(edit: impl FnOnce(&mut Registry)) -> (std::sync::Arc<Error>, LocalCloud) {
    let cloud = cloud().await;
    cloud.edit_registry(edit);
    let err = provider_from_env(&cloud)
        .credentials()
        .await
        .expect_err("the misconfiguration must fail");
    (err, cloud)
}

#[tokio::test]
async fn intermediary_app_issuing_v2_tokens_is_caught_before_sts() {
    let (err, cloud) = failure(|r| {
        r.app_mut(ids::STS_APP_ID)
            .unwrap()
            .requested_access_token_version = Some(2)
    })
    .await;
    let Error::TokenShape(shape) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(
        shape,
        &TokenShapeError::NotV1 {
            iss: format!("https://login.microsoftonline.com/{}/v2.0", ids::TENANT_ID),
            ver: "2.0".into(),
            expected: format!("https://sts.windows.net/{}/", ids::TENANT_ID),
        }
    );
    assert!(
        err.to_string()
            .contains("set requestedAccessTokenVersion=1 on the intermediary app"),
        "{err}"
    );
    assert_eq!(
        cloud.counter("sts:AssumeRoleWithWebIdentity"),
        0,
        "caught before STS"
    );
}

#[tokio::test]
async fn federated_credential_subject_mismatch_is_aadsts700213() {
    let (err, _cloud) = failure(|r| {
        r.app_mut(ids::STS_APP_ID).unwrap().federated_credentials[0].subject =
            "00000000-1111-2222-3333-444444444444".into();
    })
    .await;
    let Error::Entra(EntraError::Rejected(rej)) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(rej.codes, vec![700213]);
    assert_eq!(rej.error, "invalid_client");
    assert!(rej.trace_id.is_some() && rej.correlation_id.is_some());
    let text = err.to_string();
    assert!(
        text.contains("AADSTS700213") && text.contains(ids::MI_OBJECT_ID),
        "{text}"
    );
    assert!(
        text.contains("Fix: the intermediary app's federated credential does not match"),
        "{text}"
    );
}

/// Federated-credential matching is case-sensitive: a subject that differs from the managed
/// identity's object id only in case is a different subject (AADSTS700213, 401).
#[tokio::test]
async fn federated_credential_subject_differing_only_in_case_is_aadsts700213() {
    let (err, _cloud) = failure(|r| {
        r.app_mut(ids::STS_APP_ID).unwrap().federated_credentials[0].subject =
            ids::MI_OBJECT_ID.to_uppercase();
    })
    .await;
    let Error::Entra(EntraError::Rejected(rej)) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (rej.status, rej.error.as_str(), rej.codes.as_slice()),
        (401, "invalid_client", &[700213][..])
    );
}

/// An app registered with `az ad app create` has no service principal until `az ad sp create`:
/// Entra refuses it as a client with AADSTS7000229 (invalid_client, 401), not as an unknown app.
#[tokio::test]
async fn intermediary_app_without_its_service_principal_is_aadsts7000229() {
    let (err, _cloud) = failure(|r| {
        r.app_mut(ids::STS_APP_ID)
            .unwrap()
            .service_principal_object_id = None;
    })
    .await;
    let Error::Entra(EntraError::Rejected(rej)) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (rej.status, rej.error.as_str(), rej.codes.as_slice()),
        (401, "invalid_client", &[7000229][..])
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "The client application {} is missing service principal in the tenant {}",
            ids::STS_APP_ID,
            ids::TENANT_ID
        )),
        "{text}"
    );
    assert!(
        text.contains("az ad sp create --id $STS_APP_ID"),
        "the library names the fix: {text}"
    );
}

#[tokio::test]
async fn trust_policy_sub_mismatch_is_access_denied() {
    let (err, _cloud) = failure(|r| {
        let role = r.role_mut(ids::ROLE_NAME).unwrap();
        let text = serde_json::to_string(&role.trust_policy)
            .unwrap()
            .replace(ids::STS_SP_OID, ids::MI_OBJECT_ID);
        role.trust_policy = serde_json::from_str(&text).unwrap();
    })
    .await;
    let Error::Sts(StsError::Service(e)) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!((e.status, &e.code), (403, &StsErrorCode::AccessDenied));
    assert_eq!(
        e.message,
        "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    );
    assert!(
        err.to_string()
            .contains(":sub = the intermediary app's service-principal object id"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_trailing_slash_on_the_oidc_provider_is_no_provider_found() {
    let (err, _cloud) = failure(|r| {
        r.oidc_providers[0].url = format!("https://sts.windows.net/{}", ids::TENANT_ID)
    })
    .await;
    let Error::Sts(StsError::Service(e)) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, StsErrorCode::InvalidIdentityToken);
    assert_eq!(
        e.message,
        format!(
            "No OpenIDConnect provider found in your account for https://sts.windows.net/{}/",
            ids::TENANT_ID
        )
    );
    assert!(err.to_string().contains("with the trailing slash"), "{err}");
}

#[tokio::test]
async fn audience_missing_from_the_client_id_list_is_incorrect_token_audience() {
    let (err, _cloud) =
        failure(|r| r.oidc_providers[0].client_ids = vec!["sts.amazonaws.com".into()]).await;
    let Error::Sts(StsError::Service(e)) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (e.status, &e.code, e.message.as_str()),
        (
            400,
            &StsErrorCode::InvalidIdentityToken,
            "Incorrect token audience"
        )
    );
    assert!(err.to_string().contains("client-ID list"), "{err}");
}

#[tokio::test]
async fn configured_audience_differing_from_the_token_is_caught_before_sts() {
    let cloud = cloud().await;
    let mut env = env_of(&cloud);
    env.insert("STS_APP_URI".into(), "api://some-other-app".into());
    env.insert(
        "ENTRA_FEDERATION_SCOPE".into(),
        format!("api://{}/.default", ids::STS_APP_ID),
    );
    let err = builder_from_env(&env)
        .build()
        .unwrap()
        .credentials()
        .await
        .unwrap_err();
    let Error::TokenShape(shape) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(
        shape,
        &TokenShapeError::WrongAudience {
            aud: format!("api://{}", ids::STS_APP_ID),
            expected: "api://some-other-app".into(),
        }
    );
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 0);
}

#[tokio::test]
async fn missing_identifier_uri_is_aadsts500011() {
    let (err, _cloud) =
        failure(|r| r.app_mut(ids::STS_APP_ID).unwrap().identifier_uris.clear()).await;
    let Error::Entra(EntraError::Rejected(rej)) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (rej.status, rej.error.as_str(), rej.codes.as_slice()),
        (400, "invalid_resource", &[500011][..])
    );
    assert!(err.to_string().contains("identifierUris"), "{err}");
}

#[tokio::test]
async fn managed_identity_not_attached_fails_at_the_identity_endpoint() {
    let (err, cloud) = failure(|r| r.managed_identities[0].attached = false).await;
    let Error::Assertion(entra_federation::assertion::AssertionError::Rejected {
        status,
        message,
        ..
    }) = &*err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (*status, message.as_str()),
        (400, "Unable to load the proper Managed Identity.")
    );
    assert_eq!(cloud.counter("entra_token"), 0);
}

#[tokio::test]
async fn the_raw_managed_identity_token_is_refused_by_sts_even_with_its_guid_registered() {
    // The tutorial's §3.1: a provider for the v2 issuer with the GUID as client id still refuses it.
    let cloud = cloud().await;
    cloud.edit_registry(|r| {
        r.oidc_providers.push(local_cloud::registry::OidcProvider {
            url: format!("https://login.microsoftonline.com/{}/v2.0", ids::TENANT_ID),
            client_ids: vec![local_cloud::registry::TOKEN_EXCHANGE_APP_ID.into()],
            thumbprints: vec![],
        })
    });
    let mi = cloud.state().registry().managed_identities[0].clone();
    let (raw, _) =
        local_cloud::identity::mint_mi_token(cloud.state(), &mi, "api://AzureADTokenExchange")
            .unwrap();
    let form = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        (
            "RoleArn",
            "arn:aws:iam::123456789012:role/BedrockInvokerFromAzure",
        ),
        ("RoleSessionName", "raw"),
        ("WebIdentityToken", raw.as_str()),
    ];
    let resp = reqwest::Client::new()
        .post(cloud.http_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("<Code>InvalidIdentityToken</Code>")
            && body.contains("Incorrect token audience"),
        "{body}"
    );
}
