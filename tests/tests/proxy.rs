//! Issue 12 point 7: the identity endpoint and IMDS are never reached through `HTTP(S)_PROXY`
//! (the identity header and the managed-identity token would travel to the proxy, and IMDS refuses
//! proxied calls), while Entra and STS go through the proxy as configured.
//!
//! Its own test binary: it sets the process's proxy variables, which every HTTP client built
//! afterwards reads.

use entra_federation::SourceChoice;
use std::sync::{Arc, Mutex};
use system_tests::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A forward proxy that records each request line: `CONNECT host:port` is tunnelled, a plain
/// `GET http://…` (absolute form) is refused with 502, as a proxy that cannot reach it would.
async fn recording_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut line = String::new();
                if client.read_line(&mut line).await.is_err() {
                    return;
                }
                loop {
                    let mut header = String::new();
                    match client.read_line(&mut header).await {
                        Ok(n) if n > 2 => continue,
                        _ => break,
                    }
                }
                let line = line.trim().to_string();
                log.lock().unwrap().push(line.clone());
                let mut client = client.into_inner();
                match line
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split(' ').next())
                {
                    Some(target) => {
                        let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = client
                            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                            .await;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    None => {
                        let _ = client
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[test]
fn the_identity_hops_bypass_the_proxy_and_the_others_use_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (proxy, seen) = runtime.block_on(recording_proxy());
    // SAFETY: the only test in this binary; no other thread reads the environment meanwhile.
    unsafe {
        for name in ["NO_PROXY", "no_proxy"] {
            std::env::remove_var(name);
        }
        for name in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
        ] {
            std::env::set_var(name, &proxy);
        }
    }
    runtime.block_on(async {
        let cloud = cloud().await;
        let mut env = env_of(&cloud);
        // STS over https as in AWS, so that its proxied leg is a CONNECT tunnel too.
        env.insert(
            "AWS_ENDPOINT_URL_STS".into(),
            format!("{}/", cloud.https_url()),
        );
        let imds = format!("{}/metadata/identity/oauth2/token", cloud.http_url());
        for (what, builder) in [
            ("identity endpoint", builder_from_env(&env)),
            (
                "IMDS",
                builder_from_env(&env).assertion_source(SourceChoice::Imds(imds)),
            ),
        ] {
            seen.lock().unwrap().clear();
            let provider = builder.build().unwrap();
            provider
                .credentials()
                .await
                .unwrap_or_else(|e| panic!("{what}: credentials through the proxy: {e}"));
            let lines = seen.lock().unwrap().clone();
            assert!(
                lines.iter().all(|l| l.starts_with("CONNECT ")),
                "{what}: only tunnels to Entra and STS went to the proxy: {lines:?}"
            );
            assert!(
                lines.len() >= 2,
                "{what}: Entra and STS used the proxy: {lines:?}"
            );
        }
    });
}
