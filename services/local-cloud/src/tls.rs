//! The https listener: a CA generated at start (written to a PEM file clients can trust) and a
//! leaf certificate for `localhost` and `127.0.0.1`. MSAL and azure-identity refuse plain-http
//! authorities, so the local Entra must also be reachable over TLS.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A CA and a server certificate signed by it.
pub struct Tls {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Generates the CA and a leaf for `localhost` / `127.0.0.1` / `::1`.
    pub fn generate() -> Result<Self, String> {
        let err = |e: rcgen::Error| e.to_string();
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "entra-federation local cloud CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().map_err(err)?;
        let mut leaf = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .map_err(err)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![
                    CertificateDer::from(leaf_cert.der().to_vec()),
                    CertificateDer::from(ca_cert.der().to_vec()),
                ],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // No TLS 1.3 session tickets: their post-handshake flight stalls a client's next read
        // under tokio's paused test clock (measured: every https request from a spawned task timed
        // out while another task slept). Resumption is a server option; clients work without it.
        config.send_tls13_tickets = 0;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Serves `app` over TLS on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, app: Router) {
        loop {
            let Ok((tcp, _peer)) = listener.accept().await else {
                continue;
            };
            // The handshake's small flights must not wait for delayed ACKs (Nagle): a 40 ms stall.
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let app = app.clone();
            let header_read_timeout = crate::limits().header_read_timeout;
            tokio::spawn(async move {
                // A client that stalls in the handshake or in its headers is let go.
                let Ok(Ok(tls)) =
                    tokio::time::timeout(header_read_timeout, acceptor.accept(tcp)).await
                else {
                    return;
                };
                let service = TowerToHyperService::new(app);
                let mut builder = ConnBuilder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout);
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    }
}
