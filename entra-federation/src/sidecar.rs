//! A client for the Entra Agent ID sidecar (`mcr.microsoft.com/entra-sdk/auth-sidecar`): agent
//! identity tokens for the autonomous flow (`/AuthorizationHeaderUnauthenticated`) and on behalf of
//! a user (`/AuthorizationHeader`), or a call made by the sidecar so the token never leaves it
//! (`/DownstreamApi`).
//!
//! Since sidecar 1.1.0 `AgentIdentity` is silently ignored on the unauthenticated route unless
//! `Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated=true`, and the Blueprint's own
//! token comes back. The client checks the token's app id and fails with
//! [`SidecarError::AgentIdentityIgnored`] instead of handing out the wrong identity.
//!
//! ```no_run
//! # async fn f() -> Result<(), entra_federation::sidecar::SidecarError> {
//! let sidecar = entra_federation::sidecar::SidecarClient::new("http://localhost:5000".parse().unwrap())?;
//! let token = sidecar.autonomous_token("weather-api", "82323b11-6a7b-4c8d-9e0f-1a2b3c4d5e6f").await?;
//! println!("agent token for {:?}", token.claims().aud);
//! # Ok(()) }
//! ```

use crate::claims::ClaimSummary;
use crate::error::Cause;
use crate::secret::SecretString;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use url::Url;

/// The setting that lets callers choose the agent identity on the unauthenticated route.
pub const OVERRIDE_SETTING: &str =
    "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated=true";

/// An agent identity token, as an `Authorization` header value.
#[derive(Clone)]
pub struct AgentToken {
    header: SecretString,
    claims: ClaimSummary,
}

impl AgentToken {
    /// `Bearer eyJ…`, for the one request it authorises.
    pub fn authorization_header(&self) -> &SecretString {
        &self.header
    }

    /// Its claims (for logs and traces).
    pub fn claims(&self) -> &ClaimSummary {
        &self.claims
    }

    /// The calling app (`appid`, or `azp` in v2).
    pub fn app_id(&self) -> Option<&str> {
        self.claims.appid.as_deref().or(self.claims.azp.as_deref())
    }
}

impl std::fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentToken")
            .field("header", &self.header)
            .field("claims", &self.claims)
            .finish()
    }
}

/// What `/DownstreamApi` returns.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DownstreamResponse {
    /// The downstream status.
    pub status_code: u16,
    /// The downstream content headers.
    #[serde(default)]
    pub headers: HashMap<String, Vec<String>>,
    /// The body (null when empty or chunked).
    pub content: Option<String>,
}

/// Why the sidecar gave no token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// Not reachable.
    #[error("cannot reach the sidecar at {endpoint}: {what}")]
    Transport {
        /// The sidecar URL (no query).
        endpoint: String,
        /// What failed, in a few words.
        what: &'static str,
        /// The HTTP client's error, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// The sidecar answered with a problem (`detail` carries Entra's AADSTS message on token failures).
    #[error("the sidecar returned HTTP {status}: {detail}{}", hint(*status, detail))]
    Problem {
        /// HTTP status.
        status: u16,
        /// `title`.
        title: Option<String>,
        /// `detail`.
        detail: String,
    },
    /// The sidecar refused the user's token (JwtBearer challenge).
    #[error(
        "the sidecar refused the user token ({www_authenticate}); it must be a current token of this tenant for the Blueprint (audience its client id, or api://<client id> for a v1 token)"
    )]
    UserTokenRejected {
        /// The challenge.
        www_authenticate: String,
    },
    /// 403 with an empty body: the caller is not on loopback.
    #[error(
        "the sidecar refused this caller (403): since 1.1.0 it accepts loopback callers only; run the agent in the same pod/app"
    )]
    NotLoopback,
    /// The token is not the requested agent's: the override is not enabled.
    #[error(
        "the sidecar ignored AgentIdentity={requested} and returned a token of app {got}: set {OVERRIDE_SETTING} on the sidecar (since 1.1.0 the override is off by default)"
    )]
    AgentIdentityIgnored {
        /// The agent identity asked for.
        requested: String,
        /// The app id in the token received.
        got: String,
    },
    /// A 200 that is not what the sidecar sends.
    #[error("the sidecar returned an unusable response: {detail}")]
    InvalidResponse {
        /// What is wrong with it.
        detail: String,
        /// The parser's error, when there is one.
        #[source]
        source: Option<Cause>,
    },
}

/// An unusable answer, with the parser's error as its cause.
fn invalid(detail: &str, source: Cause) -> SidecarError {
    SidecarError::InvalidResponse {
        detail: detail.into(),
        source: Some(source),
    }
}

fn hint(status: u16, detail: &str) -> &'static str {
    if detail.contains("AADSTS700211")
        || detail.contains("AADSTS700213")
        || detail.contains("AADSTS70021")
    {
        ". Fix: the Blueprint's federated credential must name the managed identity (issuer https://login.microsoftonline.com/<tenant>/v2.0, subject MI_OBJECT_ID, audience api://AzureADTokenExchange)"
    } else if detail.starts_with("Not able to resolve") {
        ". Fix: configure DownstreamApis__<name>__BaseUrl and __Scopes__0 on the sidecar"
    } else if status == 401 {
        ". Fix: see the AADSTS code in the message"
    } else {
        ""
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeaderResponse {
    authorization_header: Option<String>,
}

#[derive(Deserialize, Default)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

/// The sidecar client. Cheap to clone; connections are pooled.
#[derive(Debug, Clone)]
pub struct SidecarClient {
    base: Url,
    http: reqwest::Client,
}

impl SidecarClient {
    /// A client for the sidecar at `base` (e.g. `http://localhost:5000`).
    pub fn new(base: Url) -> Result<Self, SidecarError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SidecarError::InvalidResponse {
                detail: "the HTTP client cannot be built".into(),
                source: Some(Cause::new(e)),
            })?;
        Ok(Self { base, http })
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(path);
        u
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        // The sidecar's host filtering (1.0) accepts only `localhost`.
        self.http
            .request(method, url)
            .header(reqwest::header::HOST, "localhost")
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, reqwest::header::HeaderMap, String), SidecarError> {
        self.send_limited(req, crate::http::MAX_RESPONSE_BODY).await
    }

    /// [`Self::send`], reading at most `limit` bytes of the answer.
    async fn send_limited(
        &self,
        req: reqwest::RequestBuilder,
        limit: usize,
    ) -> Result<(u16, reqwest::header::HeaderMap, String), SidecarError> {
        let endpoint = self.base.to_string();
        if let Some(reason) = crate::http::outside_runtime() {
            return Err(SidecarError::Transport {
                endpoint,
                what: reason,
                source: None,
            });
        }
        let resp = req.send().await.map_err(|e| {
            let (what, source) = crate::http::transport_failure(e);
            SidecarError::Transport {
                endpoint: endpoint.clone(),
                what,
                source: Some(source),
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = crate::http::read_body(resp, limit)
            .await
            .map_err(|e| match e {
                crate::http::BodyError::Transport(cause) => SidecarError::Transport {
                    endpoint,
                    what: "the connection broke while the response was read",
                    source: Some(cause),
                },
                too_large => SidecarError::InvalidResponse {
                    detail: too_large.to_string(),
                    source: None,
                },
            })?;
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }

    pub(crate) fn error(
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &str,
    ) -> SidecarError {
        if status == 403 && body.is_empty() {
            return SidecarError::NotLoopback;
        }
        if status == 401 && body.is_empty() {
            let challenge = headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("Bearer")
                .to_string();
            return SidecarError::UserTokenRejected {
                www_authenticate: challenge,
            };
        }
        let p: Problem = serde_json::from_str(body).unwrap_or_default();
        SidecarError::Problem {
            status,
            title: p.title.map(|t| crate::http::upstream_text(&t, 200)),
            detail: match p.detail {
                Some(d) => crate::http::upstream_text(&d, 500),
                None => crate::http::upstream_text(body, 300),
            },
        }
    }

    async fn header_token(
        &self,
        req: reqwest::RequestBuilder,
        requested: &str,
    ) -> Result<AgentToken, SidecarError> {
        let (status, headers, body) = self.send(req).await?;
        if status != 200 {
            return Err(Self::error(status, &headers, &body));
        }
        agent_token(&body, requested)
    }
}

/// The largest `/DownstreamApi` answer read: the sidecar relays up to 1 MiB of the downstream's
/// answer as a JSON string, where escaping can make each byte six (`\u0001`), plus its headers.
pub const MAX_DOWNSTREAM_ANSWER: usize = 8 << 20;

/// A `/DownstreamApi` answer: the downstream's status, content headers and content.
pub(crate) fn downstream_response(body: &str) -> Result<DownstreamResponse, SidecarError> {
    serde_json::from_str(body).map_err(|e| invalid("not a downstream response", Cause::json(&e)))
}

/// The agent token in an `/AuthorizationHeader*` answer, checked to be `requested`'s.
pub(crate) fn agent_token(body: &str, requested: &str) -> Result<AgentToken, SidecarError> {
    {
        let parsed: HeaderResponse = serde_json::from_str(body)
            .map_err(|e| invalid("not an authorization header response", Cause::json(&e)))?;
        let header = parsed
            .authorization_header
            .ok_or_else(|| SidecarError::InvalidResponse {
                detail: "no authorizationHeader".into(),
                source: None,
            })?;
        let jwt = header.split_once(' ').map(|(_, t)| t).unwrap_or_default();
        let claims = ClaimSummary::read_unverified(jwt)
            .map_err(|e| invalid("the token is not a JWT", Cause::new(e)))?;
        let token = AgentToken {
            header: SecretString::new(header),
            claims,
        };
        let got = token.app_id().unwrap_or("-").to_string();
        if !got.eq_ignore_ascii_case(requested) {
            return Err(SidecarError::AgentIdentityIgnored {
                requested: requested.to_string(),
                got,
            });
        }
        Ok(token)
    }
}

impl SidecarClient {
    /// The agent identity's own token for downstream API `api` (autonomous, app-only).
    #[tracing::instrument(name = "sidecar_autonomous_token", skip(self))]
    pub async fn autonomous_token(
        &self,
        api: &str,
        agent_identity: &str,
    ) -> Result<AgentToken, SidecarError> {
        let mut url = self.url(&format!("/AuthorizationHeaderUnauthenticated/{api}"));
        url.query_pairs_mut()
            .append_pair("AgentIdentity", agent_identity);
        self.header_token(self.request(reqwest::Method::GET, url), agent_identity)
            .await
    }

    /// The agent identity's token on behalf of the user whose token (for the Blueprint) is given.
    #[tracing::instrument(name = "sidecar_on_behalf_of_token", skip(self, user_token))]
    pub async fn on_behalf_of_token(
        &self,
        api: &str,
        agent_identity: &str,
        user_token: &SecretString,
    ) -> Result<AgentToken, SidecarError> {
        let mut url = self.url(&format!("/AuthorizationHeader/{api}"));
        url.query_pairs_mut()
            .append_pair("AgentIdentity", agent_identity);
        let req = self
            .request(reqwest::Method::GET, url)
            .bearer_auth(user_token.expose_secret());
        self.header_token(req, agent_identity).await
    }

    /// Has the sidecar call downstream API `api` at `relative_path` with the agent's token, so the
    /// token never leaves the sidecar.
    pub async fn downstream_api(
        &self,
        api: &str,
        agent_identity: &str,
        user_token: &SecretString,
        relative_path: &str,
    ) -> Result<DownstreamResponse, SidecarError> {
        let mut url = self.url(&format!("/DownstreamApi/{api}"));
        url.query_pairs_mut()
            .append_pair("AgentIdentity", agent_identity)
            .append_pair("optionsOverride.RelativePath", relative_path);
        let (status, headers, body) = self
            .send_limited(
                self.request(reqwest::Method::POST, url)
                    .bearer_auth(user_token.expose_secret()),
                MAX_DOWNSTREAM_ANSWER,
            )
            .await?;
        if status != 200 {
            return Err(Self::error(status, &headers, &body));
        }
        downstream_response(&body)
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<(), SidecarError> {
        let (status, headers, body) = self
            .send(self.request(reqwest::Method::GET, self.url("/healthz")))
            .await?;
        if status == 200 {
            Ok(())
        } else {
            Err(Self::error(status, &headers, &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A stand-in sidecar on 127.0.0.1 that answers every request with `status` and `body`, and
    /// counts the requests.
    async fn stub(status: u16, body: &'static str) -> (Url, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                (StatusCode::from_u16(status).unwrap(), body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits)
    }

    #[tokio::test]
    async fn an_empty_403_is_the_not_loopback_refusal_on_every_route() {
        let (url, hits) = stub(403, "").await;
        let client = SidecarClient::new(url).unwrap();
        let user = SecretString::new("user-token".into());
        let not_loopback =
            |e: SidecarError| assert!(matches!(e, SidecarError::NotLoopback), "{e:?}");
        not_loopback(
            client
                .autonomous_token("weather-api", "agent")
                .await
                .unwrap_err(),
        );
        not_loopback(
            client
                .on_behalf_of_token("weather-api", "agent", &user)
                .await
                .unwrap_err(),
        );
        not_loopback(
            client
                .downstream_api("weather-api", "agent", &user, "/weather")
                .await
                .unwrap_err(),
        );
        not_loopback(client.health().await.unwrap_err());
        assert_eq!(
            hits.load(Ordering::SeqCst),
            4,
            "one request per call, no retry"
        );
        assert!(
            SidecarError::NotLoopback
                .to_string()
                .contains("accepts loopback callers only"),
        );
    }

    #[tokio::test]
    async fn a_403_with_a_problem_body_is_that_problem_not_the_loopback_refusal() {
        let (url, _) = stub(
            403,
            r#"{"title":"Forbidden","detail":"AADSTS50105: not assigned"}"#,
        )
        .await;
        let err = SidecarClient::new(url)
            .unwrap()
            .autonomous_token("weather-api", "agent")
            .await
            .unwrap_err();
        let SidecarError::Problem {
            status,
            title,
            detail,
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(
            (status, title.as_deref(), detail.as_str()),
            (403, Some("Forbidden"), "AADSTS50105: not assigned")
        );
    }
}
