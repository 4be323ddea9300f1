//! Issue 12 point 8: no upstream can make a client read more than 1 MiB (token endpoints, STS,
//! JWKS, the sidecar), whether the body announces its length or streams chunked.

use entra_federation::Error;
use entra_federation::sidecar::SidecarClient;
use entra_federation::validate::{KindPolicy, Policy, TokenValidator, ValidatorConfig};
use system_tests::*;

const LIMIT_TEXT: &str = "larger than 1048576 bytes";

/// A server answering every request with 200 and four MiB of JSON-looking bytes, with a
/// `Content-Length` or chunked.
async fn oversized(chunked: bool) -> String {
    use axum::body::Body;
    let app = axum::Router::new().fallback(move || async move {
        let chunk = vec![b'a'; 64 * 1024];
        let body = if chunked {
            let chunks = (0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
            Body::from_stream(futures::stream::iter(chunks))
        } else {
            Body::from(vec![b'a'; 4 << 20])
        };
        axum::response::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn says_too_large(what: &str, text: &str) {
    assert!(
        text.contains(LIMIT_TEXT),
        "{what}: the error names the size limit: {text}"
    );
}

#[tokio::test]
async fn the_identity_endpoint_cannot_send_more_than_a_mebibyte() {
    let cloud = cloud().await;
    for chunked in [false, true] {
        let url = oversized(chunked).await;
        let mut env = env_of(&cloud);
        env.insert("IDENTITY_ENDPOINT".into(), format!("{url}/msi/token"));
        let provider = builder_from_env(&env).build().unwrap();
        let e = provider.credentials().await.unwrap_err();
        assert!(matches!(&*e, Error::Assertion(_)), "{e}");
        says_too_large("identity endpoint", &e.to_string());
    }
}

#[tokio::test]
async fn entra_cannot_send_more_than_a_mebibyte() {
    let cloud = cloud().await;
    for chunked in [false, true] {
        let url = oversized(chunked).await;
        let mut env = env_of(&cloud);
        env.insert("AZURE_AUTHORITY_HOST".into(), format!("{url}/"));
        let provider = builder_from_env(&env).build().unwrap();
        let e = provider.web_identity_token().await.unwrap_err();
        assert!(matches!(&e, Error::Entra(_)), "{e}");
        says_too_large("entra", &e.to_string());
    }
}

#[tokio::test]
async fn sts_cannot_send_more_than_a_mebibyte() {
    let cloud = cloud().await;
    for chunked in [false, true] {
        let url = oversized(chunked).await;
        let mut env = env_of(&cloud);
        env.insert("AWS_ENDPOINT_URL_STS".into(), format!("{url}/"));
        let provider = builder_from_env(&env).build().unwrap();
        let e = provider.credentials().await.unwrap_err();
        assert!(matches!(&*e, Error::Sts(_)), "{e}");
        says_too_large("sts", &e.to_string());
    }
}

#[tokio::test]
async fn the_key_endpoints_cannot_send_more_than_a_mebibyte() {
    for chunked in [false, true] {
        let url = oversized(chunked).await;
        let mut config = ValidatorConfig::new(
            "contoso.onmicrosoft.com",
            vec!["api://weather".into()],
            Policy::new(
                Vec::<String>::new(),
                KindPolicy::Require("Weather.Read".into()),
                KindPolicy::Deny,
            ),
        );
        config.authority = url.parse().unwrap();
        let validator = TokenValidator::new(config).unwrap();
        let keys = validator.keys().refresh(false).await;
        assert!(keys.fetched_at.is_none());
        says_too_large(
            "jwks",
            &validator.keys().last_error().expect("the fetch failed"),
        );
    }
}

#[tokio::test]
async fn the_sidecar_cannot_send_more_than_a_mebibyte() {
    for chunked in [false, true] {
        let url = oversized(chunked).await;
        let sidecar = SidecarClient::new(url.parse().unwrap()).unwrap();
        let e = sidecar
            .autonomous_token("graph", "00000000-0000-0000-0000-000000000002")
            .await
            .unwrap_err();
        says_too_large("sidecar", &e.to_string());
    }
}
