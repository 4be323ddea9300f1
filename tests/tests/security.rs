//! No token, assertion, secret key, session token or identity header in any log line (captured at
//! TRACE from every crate, `log` records included), `Debug` output or error message.

use aws_credential_types::provider::ProvideCredentials;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use system_tests::*;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let c = Captured::default();
            let writer = c.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish()
                .try_init()
                .expect("the only subscriber of this test binary");
            c
        })
        .clone()
}

fn assert_clean(text: &str, secrets: &[String]) {
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !text.contains(s.as_str()),
            "a secret leaked:\n{}",
            excerpt(text, s)
        );
    }
    // Every JWT starts with a base64url JSON header: `eyJ`.
    assert!(
        !text.contains("eyJ"),
        "something JWT-shaped leaked:\n{}",
        excerpt(text, "eyJ")
    );
}

fn excerpt(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    text[i.saturating_sub(300)..(i + 80).min(text.len())].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_debug_and_errors_carry_no_secret() {
    let logs = capture();
    let cloud = cloud().await;
    let provider = provider_from_env(&cloud);
    let creds = provider.provide_credentials().await.unwrap();
    let token = provider.web_identity_token().await.unwrap();
    let sts = sts_client(&cloud, provider.clone());
    sts.get_caller_identity().send().await.unwrap();

    // The failure paths, whose errors quote what the clouds said.
    cloud.edit_registry(|r| {
        r.app_mut(local_cloud::ids::STS_APP_ID)
            .unwrap()
            .federated_credentials[0]
            .subject = "someone-else".into()
    });
    let entra_err = provider_from_env(&cloud).credentials().await.unwrap_err();
    cloud.edit_registry(|r| *r = local_cloud::Registry::tutorial_default());
    cloud.edit_registry(|r| r.oidc_providers.clear());
    let sts_err = provider_from_env(&cloud).credentials().await.unwrap_err();
    cloud.edit_registry(|r| *r = local_cloud::Registry::tutorial_default());
    let mut env = env_of(&cloud);
    let wrong_header = "wrong-header-value".to_string();
    env.insert("IDENTITY_HEADER".into(), wrong_header.clone());
    let header_err = builder_from_env(&env)
        .build()
        .unwrap()
        .credentials()
        .await
        .unwrap_err();
    // The platform rotates the header: the old value now fails, the new one works.
    let old_header = cloud.identity_header();
    let stale = builder_from_env(&env_of(&cloud)).build().unwrap();
    let new_header = rotate_identity_header(&cloud).await;
    assert!(new_header != old_header, "the header rotated");
    let rotated_err = stale.credentials().await.unwrap_err();
    provider_from_env(&cloud)
        .credentials()
        .await
        .expect("the rotated header works");

    // Each failure is the one meant (the cloud's own words are quoted in it).
    use entra_federation::Error;
    use entra_federation::assertion::AssertionError;
    use entra_federation::error::EntraError;
    use entra_federation::error::{StsError, StsErrorCode};
    assert!(
        matches!(&*entra_err, Error::Entra(EntraError::Rejected(r)) if r.codes == [700213]),
        "{entra_err:?}"
    );
    assert!(
        matches!(&*sts_err, Error::Sts(StsError::Service(e)) if e.code == StsErrorCode::InvalidIdentityToken),
        "{sts_err:?}"
    );
    for err in [&header_err, &rotated_err] {
        assert!(
            matches!(
                &**err,
                Error::Assertion(AssertionError::Rejected { status: 403, .. })
            ),
            "{err:?}"
        );
    }

    let mut text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    for shown in [
        format!("{provider:?}"),
        format!("{creds:?}"),
        format!("{token:?}"),
        format!("{entra_err} {entra_err:?}"),
        format!("{sts_err} {sts_err:?}"),
        format!("{header_err} {header_err:?}"),
        format!("{rotated_err} {rotated_err:?}"),
    ] {
        text.push_str(&shown);
    }
    assert!(
        text.contains("iss=https://sts.windows.net/"),
        "claim summaries are logged"
    );
    assert!(
        text.contains("AADSTS700213") && text.contains("No OpenIDConnect provider"),
        "the errors are in the text searched"
    );
    assert!(
        text.lines().count() > 50,
        "trace logs were captured: {} lines",
        text.lines().count()
    );
    // The detector itself fires on a leak.
    assert!(std::panic::catch_unwind(|| assert_clean("token=eyJhbGciOi", &[])).is_err());
    assert!(
        std::panic::catch_unwind(|| assert_clean("key=abcdefgh12", &["abcdefgh12".into()]))
            .is_err()
    );
    let secrets = vec![
        token.token().expose_secret().to_string(),
        creds.secret_access_key().to_string(),
        creds.session_token().unwrap().to_string(),
        // The identity headers: the wrong one sent, the one in force before the rotation (sent
        // after it, and refused), and the one after.
        wrong_header,
        old_header,
        new_header,
    ];
    assert_clean(&text, &secrets);
}
