//! The HTTP client every hop shares, and the rule for which endpoints may be plain http.

use crate::error::Cause;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// The Azure VM Instance Metadata Service address: link-local, plain http by design.
pub const IMDS_ADDRESS: &str = "169.254.169.254";

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    /// Not a URL.
    #[error("{name}: '{value}' is not a valid URL ({reason})")]
    Invalid {
        /// The setting (environment variable or builder method).
        name: String,
        /// The value given.
        value: String,
        /// Parser message.
        reason: String,
    },
    /// Plain http to a host that is neither loopback nor IMDS.
    #[error(
        "{name}: '{value}' uses plain http to a host that is not loopback or IMDS; use https, or allow it explicitly with ENTRA_FEDERATION_ALLOW_HTTP=1 / .allow_insecure_http(true)"
    )]
    InsecureHttp {
        /// The setting.
        name: String,
        /// The value given.
        value: String,
    },
    /// A scheme other than http or https.
    #[error("{name}: '{value}' must be an http(s) URL")]
    Scheme {
        /// The setting.
        name: String,
        /// The value given.
        value: String,
    },
}

/// Parses `value` and applies the plain-http rule: https always; http only to loopback or the IMDS
/// address unless `allow_http`.
pub fn checked_url(name: &str, value: &str, allow_http: bool) -> Result<Url, EndpointError> {
    let url = Url::parse(value).map_err(|e| EndpointError::Invalid {
        name: name.into(),
        value: value.into(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http || is_loopback_or_imds(&url) => Ok(url),
        "http" => Err(EndpointError::InsecureHttp {
            name: name.into(),
            value: value.into(),
        }),
        _ => Err(EndpointError::Scheme {
            name: name.into(),
            value: value.into(),
        }),
    }
}

fn is_loopback_or_imds(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.to_string() == IMDS_ADDRESS,
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Settings for the shared HTTP client.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// Extra root CA (PEM) trusted in addition to the system roots, e.g. the local cloud's CA.
    pub extra_root_ca: Option<PathBuf>,
    /// Connect timeout; default 3 s.
    pub connect_timeout: Option<Duration>,
    /// Whole-request timeout; default 20 s.
    pub request_timeout: Option<Duration>,
    /// Ignore `HTTP(S)_PROXY`/`ALL_PROXY`: for the identity endpoint and IMDS, which must never
    /// be reached through a proxy (the identity header and the managed-identity token would
    /// travel to it, and IMDS refuses proxied calls).
    pub no_proxy: bool,
    /// For a hop that is plain http (IMDS, the App Service identity endpoint): trust no TLS root
    /// at all, which skips loading the system's roots (about 3 ms per client).
    pub plain_http_only: bool,
}

/// The client of a managed-identity hop: never through a proxy (the identity header and the
/// managed-identity token would travel to it, and IMDS refuses proxied calls); no TLS roots at all
/// when the endpoint is plain http, as it is in Azure.
pub(crate) fn identity_client(
    endpoint: &Url,
    extra_root_ca: Option<PathBuf>,
) -> Result<reqwest::Client, HttpSetupError> {
    HttpSettings {
        extra_root_ca,
        no_proxy: true,
        plain_http_only: endpoint.scheme() == "http",
        ..Default::default()
    }
    .build()
}

/// Why the HTTP client could not be built. The CA file is the one `ENTRA_FEDERATION_CA_FILE` names
/// (or [`crate::EntraCredentialsProviderBuilder::root_ca_file`], or a validator's `root_ca`, which services read from it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSetupError {
    /// The CA file could not be read.
    #[error("ENTRA_FEDERATION_CA_FILE='{}' cannot be read", .path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file is not PEM certificates.
    #[error("ENTRA_FEDERATION_CA_FILE='{}' holds no usable PEM certificate", .path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// The parser's or the TLS library's error, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// The HTTP client refused the configuration.
    #[error("cannot build the HTTP client")]
    Client(#[source] Cause),
}

impl HttpSettings {
    /// Builds a pooled, rustls (aws-lc-rs) client. It follows no redirects: a token endpoint that
    /// redirects is misconfigured, and following would send a credential elsewhere. It speaks
    /// HTTP/1.1 only and keeps no idle connections: each hop makes one request per token lifetime,
    /// so multiplexing and pooling buy nothing, while a connection kept idle until the next refresh
    /// (an hour later) is one the server has long since closed.
    pub fn build(&self) -> Result<reqwest::Client, HttpSetupError> {
        let mut builder = self.base_builder();
        if let Some(path) = &self.extra_root_ca {
            let pem = std::fs::read(path).map_err(|source| HttpSetupError::ReadCa {
                path: path.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpSetupError::BadCa {
                    path: path.clone(),
                    source: Some(Cause::new(e)),
                })?;
            if certs.is_empty() {
                return Err(HttpSetupError::BadCa {
                    path: path.clone(),
                    source: None,
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        match (builder.build(), &self.extra_root_ca) {
            (Ok(client), _) => Ok(client),
            // PEM that wraps no certificate (a key, garbage) parses, and the TLS backend refuses
            // it only here: when the same client builds without the file, the file is at fault.
            (Err(e), Some(path)) if self.base_builder().build().is_ok() => {
                Err(HttpSetupError::BadCa {
                    path: path.clone(),
                    source: Some(Cause::new(e)),
                })
            }
            (Err(e), _) => Err(HttpSetupError::Client(Cause::new(e))),
        }
    }

    fn base_builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder();
        if self.no_proxy {
            builder = builder.no_proxy();
        }
        // Under cargo-fuzz with the `fuzzing` feature, the system's certificate store is not read
        // (it is not fuzz input, and reading it for every input held `env` at a few hundred inputs
        // a second). With no roots, TLS fails closed. `--cfg fuzzing` alone changes nothing.
        if self.plain_http_only || cfg!(all(fuzzing, feature = "fuzzing")) {
            builder = builder.tls_certs_only(Vec::new());
        }
        builder
            .connect_timeout(self.connect_timeout.unwrap_or(Duration::from_secs(3)))
            .timeout(self.request_timeout.unwrap_or(Duration::from_secs(20)))
            .redirect(reqwest::redirect::Policy::none())
            .http1_only()
            .user_agent(concat!("entra-federation/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(0)
    }
}

/// A request that got no answer, in a few words for the error's one line, and the HTTP client's
/// own error (without the URL, which may carry a query) as its cause.
pub(crate) fn transport_failure(e: reqwest::Error) -> (&'static str, Cause) {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() && mentions_certificate(&e) {
        "the server's TLS certificate was refused (a private CA is trusted with ENTRA_FEDERATION_CA_FILE)"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the connection broke while the response was read"
    } else {
        "the request failed"
    };
    (what, Cause::new(e.without_url()))
}

/// Whether a TLS certificate problem is among the causes (rustls names it in its text only).
fn mentions_certificate(e: &dyn std::error::Error) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.to_string().to_ascii_lowercase().contains("certificate") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// An upstream's own words (an error description, a problem's detail) made fit for an error
/// message and a log line: control characters become spaces (no forged log lines), and at most
/// `max_chars` characters are kept, the cut marked with "…".
pub(crate) fn upstream_text(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// The largest response body read from any upstream (token endpoints, STS, JWKS, the sidecar,
/// the weather source): every real answer is a few KiB; a hostile or broken upstream must not be
/// able to exhaust memory.
pub const MAX_RESPONSE_BODY: usize = 1 << 20;

/// Why a response body was not read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than the limit (announced, or found while reading).
    #[error(
        "the response body is larger than {limit} bytes (the limit for this hop); the upstream is broken or is not the service configured"
    )]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The connection failed while the body was read.
    #[error("the connection broke while the response was read")]
    Transport(#[source] Cause),
}

/// Reads `resp`'s body, at most `limit` bytes: refused at once when `Content-Length` announces
/// more, and as soon as more arrives otherwise (a chunked body is never buffered past the limit).
pub async fn read_body(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Transport(transport_failure(e).1))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why an HTTP call cannot be made on this thread: the client runs on Tokio's reactor and timers.
pub const NO_RUNTIME: &str = "no Tokio runtime on this thread: entra-federation makes its HTTP calls on Tokio; call it from within a Tokio runtime (as the AWS SDK does)";

/// [`NO_RUNTIME`] when the calling thread is outside a Tokio runtime, where the HTTP client would
/// panic: each hop returns it as an error instead.
pub(crate) fn outside_runtime() -> Option<&'static str> {
    tokio::runtime::Handle::try_current()
        .is_err()
        .then_some(NO_RUNTIME)
}

/// The part of a URL that is safe and useful in an error: scheme, host, port and path.
pub fn redacted_endpoint(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_always_allowed() {
        assert!(checked_url("X", "https://login.microsoftonline.com/", false).is_ok());
    }

    #[test]
    fn plain_http_only_to_loopback_and_imds() {
        for ok in [
            "http://127.0.0.1:42356/msi/token",
            "http://localhost:1/",
            "http://[::1]:8080/",
            "http://169.254.169.254/metadata/identity/oauth2/token",
        ] {
            assert!(checked_url("X", ok, false).is_ok(), "{ok}");
        }
        let err =
            checked_url("AWS_ENDPOINT_URL_STS", "http://sts.example.com/", false).unwrap_err();
        assert!(matches!(err, EndpointError::InsecureHttp { .. }));
        assert!(err.to_string().contains("AWS_ENDPOINT_URL_STS"));
        assert!(checked_url("X", "http://sts.example.com/", true).is_ok());
    }

    #[test]
    fn rejects_other_schemes_and_garbage() {
        assert!(matches!(
            checked_url("X", "ftp://a/", true),
            Err(EndpointError::Scheme { .. })
        ));
        assert!(matches!(
            checked_url("X", "not a url", true),
            Err(EndpointError::Invalid { .. })
        ));
    }

    #[test]
    fn redaction_drops_query_and_userinfo() {
        let u = Url::parse("http://u:p@127.0.0.1:1/msi/token?resource=x&client_id=y").unwrap();
        assert_eq!(redacted_endpoint(&u), "http://127.0.0.1:1/msi/token");
    }
}
