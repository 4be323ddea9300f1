//! Managed-identity assertion sources against the local cloud: the IMDS retry table, the
//! Container Apps header rotation and identity selection, the AKS token file, a caller's closure.

use aws_credential_types::provider::ProvideCredentials;

use entra_federation::assertion::{
    self, AppServiceSource, Assertion, AssertionError, AssertionSource, HeaderValueSource,
    ImdsSource, ManagedIdentity, TokenFileSource,
};
use local_cloud::{Fault, LocalCloud, Registry, ids};
use std::sync::Arc;
use std::time::Duration;
use system_tests::*;

fn imds(cloud: &LocalCloud, id: ManagedIdentity) -> ImdsSource {
    let url = format!("{}/metadata/identity/oauth2/token", cloud.http_url())
        .parse()
        .unwrap();
    // Its retry window is measured on its time source: Tokio's (paused) clock here.
    ImdsSource::new(url)
        .unwrap()
        .with_managed_identity(id)
        .with_time_source(TokioTime::new())
}

fn imds_fault(status: u16, count: Option<u32>, retry_after: Option<u64>) -> Fault {
    Fault {
        target: "imds".into(),
        status,
        code: None,
        count,
        retry_after,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn imds_410_is_retried_for_at_least_70_seconds() {
    let cloud = cloud().await;
    cloud.inject(imds_fault(410, None, None));
    let started = tokio::time::Instant::now();
    let err = imds(&cloud, ManagedIdentity::SystemAssigned)
        .fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(err, AssertionError::Rejected { status: 410, .. }),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(70),
        "gave up after {:?}",
        started.elapsed()
    );
    // Five retries take 31-62 s (2 s doubling, half jitter), so a sixth follows inside the 70 s
    // window, and a seventh only if the sixth came before 70 s: seven or eight calls in all.
    assert!(
        (7..=8).contains(&cloud.counter("imds")),
        "{}",
        cloud.counter("imds")
    );
}

#[tokio::test(start_paused = true)]
async fn imds_404_410_and_5xx_are_retried_until_it_answers() {
    let cloud = cloud().await;
    cloud.inject(imds_fault(404, Some(1), None));
    cloud.inject(imds_fault(410, Some(1), None));
    cloud.inject(imds_fault(500, Some(1), None));
    let a = imds(&cloud, ManagedIdentity::SystemAssigned)
        .fetch()
        .await
        .expect("fourth call answers");
    assert_eq!(a.claims().sub.as_deref(), Some(ids::MI_OBJECT_ID));
    assert_eq!(cloud.counter("imds"), 4);
}

#[tokio::test(start_paused = true)]
async fn imds_429_honours_retry_after() {
    let cloud = cloud().await;
    cloud.inject(imds_fault(429, Some(1), Some(17)));
    let started = tokio::time::Instant::now();
    imds(&cloud, ManagedIdentity::SystemAssigned)
        .fetch()
        .await
        .expect("answers after the throttle");
    assert!(
        started.elapsed() >= Duration::from_secs(17),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cloud.counter("imds"), 2);
}

#[tokio::test(start_paused = true)]
async fn imds_other_4xx_are_never_retried() {
    let cloud = cloud().await;
    let err = imds(&cloud, ManagedIdentity::ClientId("not-assigned".into()))
        .fetch()
        .await
        .unwrap_err();
    let AssertionError::Rejected {
        status,
        code,
        message,
        hint,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (*status, code.as_deref(), message.as_str()),
        (400, Some("invalid_request"), "Identity not found")
    );
    assert!(hint.contains("no managed identity"), "{hint}");
    assert_eq!(cloud.counter("imds"), 1);
}

#[tokio::test]
async fn imds_selects_user_assigned_identities_by_each_selector() {
    let cloud = cloud().await;
    let mi = cloud.state().registry().managed_identities[0].clone();
    for id in [
        ManagedIdentity::ClientId(mi.client_id.clone()),
        ManagedIdentity::ObjectId(mi.object_id.clone()),
        ManagedIdentity::ResourceId(mi.resource_id.clone()),
    ] {
        let a = imds(&cloud, id.clone())
            .fetch()
            .await
            .unwrap_or_else(|e| panic!("{id:?}: {e}"));
        assert_eq!(a.claims().oid.as_deref(), Some(ids::MI_OBJECT_ID));
    }
}

fn app_service(
    cloud: &LocalCloud,
    header: HeaderValueSource,
    id: ManagedIdentity,
) -> AppServiceSource {
    let url = format!("{}/msi/token", cloud.http_url()).parse().unwrap();
    AppServiceSource::new(url, header)
        .unwrap()
        .with_managed_identity(id)
}

#[tokio::test]
async fn identity_header_is_read_on_every_request_so_rotation_is_followed() {
    let cloud = Arc::new(cloud().await);
    let c = cloud.clone();
    let source = app_service(
        &cloud,
        HeaderValueSource::Fn(Arc::new(move || Some(c.identity_header()))),
        ManagedIdentity::SystemAssigned,
    );
    source.fetch().await.expect("first header");
    let stale = cloud.identity_header();
    cloud
        .state()
        .identity_header
        .write()
        .unwrap()
        .clone_from(&"ROTATED0000000000000000000000000".to_string());
    source.fetch().await.expect("the rotated header is read");
    assert_eq!(cloud.counter("identity_endpoint"), 2);

    let fixed = app_service(
        &cloud,
        HeaderValueSource::Fn(Arc::new(move || Some(stale.clone()))),
        ManagedIdentity::SystemAssigned,
    );
    let err = fixed.fetch().await.unwrap_err();
    assert!(
        matches!(&err, AssertionError::Rejected { status: 403, .. }),
        "{err}"
    );
    assert_eq!(
        cloud.counter("identity_endpoint"),
        3,
        "a 403 is not retried"
    );
    assert!(
        err.to_string()
            .contains("read it from the environment on every request"),
        "{err}"
    );
}

#[tokio::test]
async fn container_apps_user_assigned_selection_uses_mi_res_id_and_principal_id() {
    let mut registry = Registry::tutorial_default();
    let mut user = registry.managed_identities[0].clone();
    user.system_assigned = false;
    user.object_id = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b".into();
    user.client_id = "6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c".into();
    user.resource_id = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agent".into();
    registry.managed_identities.push(user.clone());
    let cloud = cloud_with(
        registry,
        aws_smithy_async::time::SharedTimeSource::default(),
    )
    .await;
    let c = Arc::new(cloud);
    for id in [
        ManagedIdentity::ResourceId(user.resource_id.clone()),
        ManagedIdentity::ObjectId(user.object_id.clone()),
        ManagedIdentity::ClientId(user.client_id.clone()),
    ] {
        let h = c.clone();
        let a = app_service(
            &c,
            HeaderValueSource::Fn(Arc::new(move || Some(h.identity_header()))),
            id,
        )
        .fetch()
        .await
        .unwrap();
        assert_eq!(a.claims().oid.as_deref(), Some(user.object_id.as_str()));
    }
    let h = c.clone();
    let a = app_service(
        &c,
        HeaderValueSource::Fn(Arc::new(move || Some(h.identity_header()))),
        ManagedIdentity::SystemAssigned,
    )
    .fetch()
    .await
    .unwrap();
    assert_eq!(a.claims().oid.as_deref(), Some(ids::MI_OBJECT_ID));
}

/// AKS: kubelet rewrites the projected token; a token read once expires. The provider re-reads the
/// file for every exchange, so after two hours (the first token long expired) it still works.
#[tokio::test(start_paused = true)]
async fn aks_token_file_is_re_read_on_every_exchange() {
    let clock = TokioTime::new();
    let mut registry = Registry::tutorial_default();
    let issuer = registry.aks_issuers[0].clone();
    registry
        .app_mut(ids::STS_APP_ID)
        .unwrap()
        .federated_credentials
        .push(local_cloud::registry::FederatedCredential {
            name: "aks".into(),
            issuer,
            subject: "system:serviceaccount:agents:bedrock-agent".into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
        });
    let cloud = cloud_with(registry, clock.clone()).await;
    let file = cloud.state_dir().join("azure-identity-token");
    cloud
        .write_projected_token(&file, "agents", "bedrock-agent")
        .unwrap();
    let mut env = env_of(&cloud);
    env.retain(|k, _| !k.starts_with("IDENTITY_") && k != "STS_APP_ID");
    env.insert(
        "AZURE_FEDERATED_TOKEN_FILE".into(),
        file.display().to_string(),
    );
    env.insert("AZURE_CLIENT_ID".into(), ids::STS_APP_ID.into());
    let provider = builder_from_env(&env)
        .time_source(clock.clone())
        .build()
        .unwrap();
    let first = provider
        .web_identity_token()
        .await
        .expect("exchange with the projected token");
    assert_eq!(
        first.claims().iss.as_deref(),
        Some(format!("https://sts.windows.net/{}/", ids::TENANT_ID).as_str())
    );

    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    cloud
        .write_projected_token(&file, "agents", "bedrock-agent")
        .unwrap(); // kubelet's rotation
    provider
        .provide_credentials()
        .await
        .expect("the rotated file is read");
    // The file is not cached: each of the two exchanges read it.
    let stats = provider.stats();
    assert_eq!((stats.assertion_fetches, stats.entra_exchanges), (2, 2));
    assert_eq!(cloud.counter("entra_token"), 2);

    let source = TokenFileSource::new(&file);
    let a = source.fetch().await.unwrap();
    cloud
        .write_projected_token(&file, "agents", "other-sa")
        .unwrap();
    let b = source.fetch().await.unwrap();
    assert_ne!(
        a.claims().sub,
        b.claims().sub,
        "each fetch reads the file anew"
    );
    std::fs::write(&file, "").unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(&err, AssertionError::TokenFile { path, what, .. } if *path == file.display().to_string() && *what == "the file is empty"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{err}"
    );
    // A missing file: the I/O error itself is the cause.
    std::fs::remove_file(&file).unwrap();
    let err = source.fetch().await.unwrap_err();
    let cause = std::error::Error::source(&err).expect("the I/O error");
    let io = cause
        .downcast_ref::<std::io::Error>()
        .expect("an std::io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test]
async fn a_caller_supplied_source_drives_the_chain() {
    let cloud = Arc::new(cloud().await);
    let c = cloud.clone();
    let source = assertion::from_fn(move || {
        let c = c.clone();
        async move {
            let mi = c.state().registry().managed_identities[0].clone();
            let (token, _) =
                local_cloud::identity::mint_mi_token(c.state(), &mi, "api://AzureADTokenExchange")
                    .ok_or("mint failed")?;
            Ok(Assertion::from_jwt(token)?)
        }
    });
    let provider = builder_from_env(&env_of(&cloud))
        .custom_assertion_source(source)
        .build()
        .unwrap();
    provider
        .provide_credentials()
        .await
        .expect("credentials from the caller's assertion");
    assert_eq!(
        cloud.counter("identity_endpoint"),
        0,
        "the custom source replaced detection"
    );
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 1);
}
