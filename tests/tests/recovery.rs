//! The provider's recovery paths against the local cloud: STS `ExpiredToken` answered with a new
//! Entra token and one retry; the AADSTS codes of a stale assertion answered with one fresh
//! assertion; an identity-endpoint outage ridden out on the cached assertion (but not in its last
//! minute); a call from outside any Tokio runtime; and upstreams that redirect.

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use axum::http::{StatusCode, header};
use entra_federation::assertion::{self, Assertion, AssertionError, TokenFileSource};
use entra_federation::error::EntraError;
use entra_federation::error::NO_RUNTIME;
use entra_federation::error::{StsError, StsErrorCode};
use entra_federation::{EntraCredentialsProvider, Error};
use local_cloud::{Fault, LocalCloud, Registry, ids};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use system_tests::*;

fn fault(target: &str, status: u16, code: Option<&str>, count: Option<u32>) -> Fault {
    Fault {
        target: target.into(),
        status,
        code: code.map(str::to_string),
        count,
        retry_after: None,
        ..Default::default()
    }
}

fn with_env(cloud: &LocalCloud, key: &str, value: &str) -> EntraCredentialsProvider {
    let mut env = env_of(cloud);
    env.insert(key.into(), value.into());
    builder_from_env(&env).build().unwrap()
}

/// A provider on `clock`, configured from the cloud's environment.
fn clocked_provider(cloud: &LocalCloud, clock: &TokioTime) -> EntraCredentialsProvider {
    builder_from_env(&env_of(cloud))
        .time_source(clock.clone())
        .build()
        .unwrap()
}

// ---- STS ExpiredToken ----

#[tokio::test]
async fn sts_expired_token_gets_a_new_entra_token_and_retries_once() {
    let cloud = cloud().await;
    let provider = provider_from_env(&cloud);
    cloud.inject(fault(
        "sts:AssumeRoleWithWebIdentity",
        400,
        Some("ExpiredTokenException"),
        Some(1),
    ));
    let creds = provider
        .credentials()
        .await
        .expect("the retry with a new token succeeds");
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 2);
    assert_eq!(
        cloud.counter("entra_token"),
        2,
        "a new Entra token for the retry, not the cached one"
    );
    assert_eq!(
        cloud.counter("identity_endpoint"),
        1,
        "the cached assertion serves the second exchange"
    );
    let stats = provider.stats();
    assert_eq!(
        (stats.entra_exchanges, stats.sts_calls, stats.chain_failures),
        (2, 2, 0)
    );
}

#[tokio::test]
async fn sts_expired_token_twice_fails_after_the_one_retry() {
    let cloud = cloud().await;
    cloud.inject(fault(
        "sts:AssumeRoleWithWebIdentity",
        400,
        Some("ExpiredTokenException"),
        Some(2),
    ));
    let err = provider_from_env(&cloud).credentials().await.unwrap_err();
    let Error::Sts(StsError::Service(e)) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (e.status, &e.code, e.raw_code.as_str()),
        (400, &StsErrorCode::ExpiredToken, "ExpiredTokenException")
    );
    assert!(err.to_string().contains("check the host clock"), "{err}");
    assert_eq!(
        cloud.counter("sts:AssumeRoleWithWebIdentity"),
        2,
        "one retry only"
    );
    assert_eq!(cloud.counter("entra_token"), 2);
}

// ---- a stale assertion at Entra ----

/// The local cloud's Entra behind a proxy that answers the first calls from `script` (HTTP status
/// and AADSTS code, as Entra writes them) and forwards the rest. It records each request's
/// assertion by its `uti` claim (never the assertion itself).
struct EntraProxy {
    url: String,
    requests: Arc<AtomicUsize>,
    assertion_utis: Arc<Mutex<Vec<String>>>,
}

impl EntraProxy {
    async fn start(cloud: &LocalCloud, script: &[(u16, u32)]) -> Self {
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let requests = Arc::new(AtomicUsize::new(0));
        let assertion_utis = Arc::new(Mutex::new(Vec::new()));
        let upstream = cloud.http_url();
        let (r, u) = (requests.clone(), assertion_utis.clone());
        let app = axum::Router::new().route(
            "/{tenant}/oauth2/v2.0/token",
            axum::routing::post(
                move |axum::extract::Path(tenant): axum::extract::Path<String>,
                      axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>| {
                    let (script, r, u, upstream) =
                        (script.clone(), r.clone(), u.clone(), upstream.clone());
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        let assertion = form.get("client_assertion").cloned().unwrap_or_default();
                        let claims: serde_json::Value =
                            jsonwebtoken::dangerous::insecure_decode_claims(&assertion)
                                .unwrap_or_default();
                        u.lock()
                            .unwrap()
                            .push(claims["uti"].as_str().unwrap_or_default().to_string());
                        let scripted = script.lock().unwrap().pop_front();
                        if let Some((status, code)) = scripted {
                            let body = serde_json::json!({
                                "error": "invalid_client",
                                "error_description": format!("AADSTS{code}: Scripted rejection.\r\nTrace ID: t\r\nCorrelation ID: c"),
                                "error_codes": [code],
                                "trace_id": "t",
                                "correlation_id": "c",
                            });
                            return (
                                StatusCode::from_u16(status).unwrap(),
                                [(header::CONTENT_TYPE, "application/json".to_string())],
                                body.to_string().into_bytes(),
                            );
                        }
                        let resp = reqwest::Client::new()
                            .post(format!("{upstream}/{tenant}/oauth2/v2.0/token"))
                            .form(&form)
                            .send()
                            .await
                            .expect("the local Entra answers");
                        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                        let bytes = resp.bytes().await.expect("body").to_vec();
                        (
                            status,
                            [(header::CONTENT_TYPE, "application/json".to_string())],
                            bytes,
                        )
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            requests,
            assertion_utis,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn distinct_assertions(&self) -> usize {
        let utis = self.assertion_utis.lock().unwrap();
        assert!(
            utis.iter().all(|u| !u.is_empty()),
            "every request carried an assertion"
        );
        utis.iter().collect::<std::collections::HashSet<_>>().len()
    }
}

#[tokio::test]
async fn each_stale_assertion_code_fetches_one_fresh_assertion_and_succeeds() {
    for code in [700024, 500133, 50013] {
        let cloud = cloud().await;
        // invalid_client (700024) is a 401; invalid_grant (500133, 50013) a 400.
        let status = if code == 700024 { 401 } else { 400 };
        let proxy = EntraProxy::start(&cloud, &[(status, code)]).await;
        let provider = with_env(&cloud, "AZURE_AUTHORITY_HOST", &proxy.url);
        provider
            .credentials()
            .await
            .unwrap_or_else(|e| panic!("AADSTS{code}: {e}"));
        assert_eq!(
            cloud.counter("identity_endpoint"),
            2,
            "AADSTS{code}: one fresh assertion"
        );
        assert_eq!(proxy.requests(), 2, "AADSTS{code}: one more exchange");
        assert_eq!(
            proxy.distinct_assertions(),
            2,
            "AADSTS{code}: the retry carried the fresh assertion"
        );
        assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 1);
        let stats = provider.stats();
        assert_eq!((stats.assertion_fetches, stats.entra_exchanges), (2, 2));
    }
}

/// The provider's failure with Entra answering `answers` (status, AADSTS code) in turn through a
/// proxy; returns the failure's status and codes, and the proxy.
async fn entra_failure(
    cloud: &LocalCloud,
    answers: &[(u16, u32)],
) -> ((u16, Vec<u32>), EntraProxy) {
    let proxy = EntraProxy::start(cloud, answers).await;
    let err = with_env(cloud, "AZURE_AUTHORITY_HOST", &proxy.url)
        .credentials()
        .await
        .unwrap_err();
    let Error::Entra(EntraError::Rejected(r)) = &*err else {
        panic!("{err:?}")
    };
    ((r.status, r.codes.clone()), proxy)
}

#[tokio::test]
async fn a_fresh_assertion_is_fetched_once_not_in_a_loop() {
    let cloud = cloud().await;
    let (rejection, proxy) = entra_failure(&cloud, &[(401, 700024), (401, 700024)]).await;
    assert_eq!(rejection, (401, vec![700024]));
    assert_eq!(cloud.counter("identity_endpoint"), 2);
    assert_eq!(proxy.requests(), 2);
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 0);
}

#[tokio::test]
async fn other_entra_rejections_keep_the_assertion() {
    // A federated-credential mismatch is not fixed by another assertion.
    let cloud = cloud().await;
    let (rejection, proxy) = entra_failure(&cloud, &[(401, 700213)]).await;
    assert_eq!(rejection, (401, vec![700213]));
    assert_eq!(cloud.counter("identity_endpoint"), 1);
    assert_eq!(proxy.requests(), 1);
}

/// The real thing: Entra's clock has passed the cached assertion's expiry plus its five minutes of
/// skew while the provider's has not, so the provider still holds the assertion as fresh. Entra
/// answers AADSTS700024 and the provider fetches a fresh assertion.
#[tokio::test]
async fn an_assertion_entra_finds_expired_is_replaced_by_a_fresh_one() {
    let cloud_clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), cloud_clock).await;
    let provider = provider_from_env(&cloud); // on the system clock
    provider.web_identity_token().await.expect("first token");
    assert_eq!(cloud.counter("identity_endpoint"), 1);

    // The cloud's clock jumps 24 h (the assertion's lifetime) and 10 minutes ahead.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(24 * 3600 + 600)).await;
    tokio::time::resume();

    let token = provider
        .refresh_web_identity_token()
        .await
        .expect("a fresh assertion is exchanged");
    assert_eq!(cloud.counter("identity_endpoint"), 2, "one fresh assertion");
    assert_eq!(
        cloud.counter("entra_token"),
        3,
        "the first token, AADSTS700024, the retry"
    );
    assert_eq!(
        token.claims().aud.as_deref(),
        Some(format!("api://{}", ids::STS_APP_ID).as_str())
    );
    provider
        .credentials()
        .await
        .expect("STS takes the new token");
}

// ---- the cached assertion while the identity endpoint fails ----

/// The identity endpoint answers 500 from now on (the source's first call and three retries each time).
fn identity_endpoint_down(cloud: &LocalCloud) {
    cloud.inject(fault("identity_endpoint", 500, None, None));
}

#[tokio::test(start_paused = true)]
async fn an_identity_endpoint_outage_is_ridden_out_on_the_cached_assertion() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let provider = clocked_provider(&cloud, &clock);
    provider.credentials().await.expect("warm-up");
    identity_endpoint_down(&cloud);
    // 13 h on, the 24 h assertion is past its half-life refresh point but valid; the Entra token
    // and the credentials have expired.
    tokio::time::advance(Duration::from_secs(13 * 3600)).await;
    provider
        .credentials()
        .await
        .expect("new credentials through the cached assertion");
    assert_eq!(
        cloud.counter("identity_endpoint"),
        1 + 4,
        "the refresh of the assertion was tried, and failed"
    );
    assert_eq!(cloud.counter("entra_token"), 2);
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 2);
}

#[tokio::test(start_paused = true)]
async fn the_cached_assertion_is_not_used_in_its_last_minute() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let provider = clocked_provider(&cloud, &clock);
    provider.credentials().await.expect("warm-up");
    identity_endpoint_down(&cloud);

    // Two minutes before the assertion expires (the retries' backoff adds a few seconds): still
    // used.
    tokio::time::advance(Duration::from_secs(24 * 3600 - 120)).await;
    provider
        .credentials()
        .await
        .expect("the cached assertion has about two minutes left");
    assert_eq!(cloud.counter("identity_endpoint"), 1 + 4);
    assert_eq!(cloud.counter("entra_token"), 2);

    // Ninety seconds later it has less than a minute left: refused, and nothing goes to Entra.
    tokio::time::advance(Duration::from_secs(90)).await;
    let err = provider.refresh_web_identity_token().await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Assertion(AssertionError::Rejected { status: 500, .. })
        ),
        "{err:?}"
    );
    assert_eq!(cloud.counter("identity_endpoint"), 1 + 4 + 4);
    assert_eq!(cloud.counter("entra_token"), 2);
}

// ---- no Tokio runtime ----

/// Polls `f` to completion on this thread, outside any Tokio runtime (what `futures`'
/// `block_on` does).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Runs `f` on a new plain thread (no runtime context) and returns its result; a panic there
/// fails the test with its message.
async fn on_a_plain_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || std::thread::spawn(f).join())
        .await
        .expect("join")
        .unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("the call panicked outside a Tokio runtime: {msg}")
        })
}

/// The library's error inside the SDK's `CredentialsError`.
fn typed(e: &CredentialsError) -> &Error {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(typed) = s.downcast_ref::<Error>() {
            return typed;
        }
        source = s.source();
    }
    panic!("no entra_federation::Error in {e:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_tokio_runtime_each_hop_fails_with_a_clear_error_not_a_panic() {
    let cloud = cloud().await;

    // Through the SDK's trait and the typed API: the first hop (the identity endpoint) refuses.
    let (sdk, api) = (provider_from_env(&cloud), provider_from_env(&cloud));
    let (sdk_err, api_err) = on_a_plain_thread(move || {
        (
            block_on(sdk.provide_credentials()).unwrap_err(),
            block_on(api.credentials()).unwrap_err(),
        )
    })
    .await;
    for err in [typed(&sdk_err), &*api_err] {
        let Error::Assertion(AssertionError::Transport {
            source_kind,
            what: reason,
            ..
        }) = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(
            (*source_kind, *reason),
            ("Container Apps / App Service identity endpoint", NO_RUNTIME)
        );
    }
    assert_eq!(cloud.counter("identity_endpoint"), 0, "nothing was sent");

    // A source that needs no runtime: the Entra hop refuses.
    let c = Arc::new(cloud);
    let mi = c.state().registry().managed_identities[0].clone();
    let (minted, _) =
        local_cloud::identity::mint_mi_token(c.state(), &mi, assertion::TOKEN_EXCHANGE_RESOURCE)
            .unwrap();
    let custom = builder_from_env(&env_of(&c))
        .custom_assertion_source(assertion::from_fn(move || {
            let minted = minted.clone();
            async move { Ok(Assertion::from_jwt(minted)?) }
        }))
        .build()
        .unwrap();
    let err = on_a_plain_thread(move || block_on(custom.credentials()).unwrap_err()).await;
    assert!(
        matches!(&*err, Error::Entra(EntraError::Transport { what, .. }) if *what == NO_RUNTIME),
        "{err:?}"
    );
    assert_eq!(c.counter("entra_token"), 0);

    // STS on its own, outside a runtime: the unit test sts::tests::outside_a_runtime_nothing_is_sent.

    // The AKS token file needs no network: it is read.
    let file = c.state_dir().join("projected-token");
    c.write_projected_token(&file, "agents", "bedrock-agent")
        .unwrap();
    let read = on_a_plain_thread(move || {
        block_on(assertion::AssertionSource::fetch(&TokenFileSource::new(
            &file,
        )))
        .map(|a| a.claims().sub.clone())
        .map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(
        read,
        Ok(Some(
            "system:serviceaccount:agents:bedrock-agent".to_string()
        ))
    );
}

// ---- redirects ----

/// An upstream that answers every request with `status` and a `Location` on itself (`/trap`),
/// counting the requests and any that follow the redirect.
struct Redirector {
    url: String,
    requests: Arc<AtomicUsize>,
    followed: Arc<AtomicUsize>,
}

impl Redirector {
    async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (requests, followed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, f) = (requests.clone(), followed.clone());
        let location = format!("{url}trap");
        let app = axum::Router::new()
            .route(
                "/trap",
                axum::routing::any(move || {
                    let f = f.clone();
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        StatusCode::OK
                    }
                }),
            )
            .fallback(move || {
                let (r, location) = (r.clone(), location.clone());
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    (
                        StatusCode::from_u16(status).unwrap(),
                        [(header::LOCATION, location)],
                    )
                }
            });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            requests,
            followed,
        }
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.requests.load(Ordering::SeqCst),
            self.followed.load(Ordering::SeqCst),
        )
    }
}

#[tokio::test]
async fn an_entra_that_redirects_is_an_error_and_the_assertion_goes_nowhere_else() {
    // 307 would make a client that follows redirects re-POST the assertion to the new location.
    for status in [302, 307] {
        let cloud = cloud().await;
        let upstream = Redirector::start(status).await;
        let err = with_env(&cloud, "AZURE_AUTHORITY_HOST", &upstream.url)
            .credentials()
            .await
            .unwrap_err();
        let Error::Entra(EntraError::Rejected(r)) = &*err else {
            panic!("{status}: {err:?}")
        };
        assert_eq!(
            (r.status, r.error.as_str(), r.description.clone()),
            (
                status,
                "http_error",
                format!("no OAuth error body (HTTP {status})")
            )
        );
        assert!(!err.is_recoverable());
        assert_eq!(
            upstream.counts(),
            (1, 0),
            "{status}: one request, not retried, not followed"
        );
    }
}

#[tokio::test]
async fn an_sts_that_redirects_is_an_error() {
    let cloud = cloud().await;
    let upstream = Redirector::start(302).await;
    let err = with_env(&cloud, "AWS_ENDPOINT_URL_STS", &upstream.url)
        .credentials()
        .await
        .unwrap_err();
    let Error::Sts(StsError::Service(e)) = &*err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (e.status, e.raw_code.as_str(), &e.code),
        (302, "HTTP302", &StsErrorCode::Other("HTTP302".into()))
    );
    assert_eq!(upstream.counts(), (1, 0));
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 0);
}

#[tokio::test]
async fn an_identity_endpoint_that_redirects_is_an_error() {
    let cloud = cloud().await;
    let upstream = Redirector::start(302).await;
    let err = with_env(
        &cloud,
        "IDENTITY_ENDPOINT",
        &format!("{}msi/token", upstream.url),
    )
    .credentials()
    .await
    .unwrap_err();
    assert!(
        matches!(
            &*err,
            Error::Assertion(AssertionError::Rejected { status: 302, .. })
        ),
        "{err:?}"
    );
    assert_eq!(upstream.counts(), (1, 0), "not retried, not followed");
    assert_eq!(cloud.counter("entra_token"), 0);
}

/// The sidecar client and the token validator, like the provider's hops, answer a call made
/// outside a Tokio runtime with a typed error instead of a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_tokio_runtime_the_sidecar_client_and_the_validator_fail_clearly() {
    use entra_federation::sidecar::{SidecarClient, SidecarError};
    use entra_federation::validate::{
        KindPolicy, Policy, TokenValidator, ValidationError, ValidatorConfig,
    };
    let cloud = cloud().await;
    let (_dead, weather) = dead_endpoint();
    let sidecar =
        SidecarClient::new(start_sidecar(&cloud, true, &weather).await.parse().unwrap()).unwrap();
    let mut config = ValidatorConfig::new(
        ids::TENANT_ID,
        vec![ids::WEATHER_API_AUDIENCE.into()],
        Policy::new(
            [ids::AGENT_CLIENT_ID],
            KindPolicy::Require(ids::WEATHER_PERMISSION.into()),
            KindPolicy::Deny,
        ),
    );
    config.authority = format!("{}/", cloud.http_url()).parse().unwrap();
    let validator = TokenValidator::new(config).unwrap();
    // A well-formed token the validator would look up keys for.
    let token = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .expect("an agent token, inside the runtime");
    let raw = token
        .authorization_header()
        .expose_secret()
        .trim_start_matches("Bearer ")
        .to_string();
    let (health, validated) = on_a_plain_thread(move || {
        (
            block_on(sidecar.health()),
            block_on(validator.validate(&raw)).map(|_| ()),
        )
    })
    .await;
    match health {
        Err(SidecarError::Transport { what, .. }) => assert_eq!(what, NO_RUNTIME),
        other => panic!("expected a transport error naming the runtime: {other:?}"),
    }
    assert!(
        matches!(validated, Err(ValidationError::KeysUnavailable)),
        "{validated:?}"
    );
    assert_eq!(cloud.counter("entra_metadata"), 0, "nothing was sent");
}
