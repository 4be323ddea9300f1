//! The Entra Agent ID sidecar (`mcr.microsoft.com/entra-sdk/auth-sidecar`, behaviour of 1.1.x,
//! protocols.md §5), backed by the local Entra over HTTP as the real one is: it authenticates as
//! the Blueprint with the managed-identity assertion (`SignedAssertionFromManagedIdentity`), gets
//! T1 with `fmi_path`, then the agent identity's tokens.
//!
//! Routes: `GET /AuthorizationHeaderUnauthenticated/{api}`, `GET /AuthorizationHeader/{api}`
//! (inbound bearer = the user's token for the Blueprint), `POST /DownstreamApi/{api}`, `GET /healthz`.
//! Since 1.1.0 `AgentIdentity` on the unauthenticated route is **silently ignored** unless
//! `Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated=true`: the Blueprint's own app
//! token comes back. Callers from non-loopback addresses get 403 with an empty body.

use crate::ids;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A configured downstream API (`DownstreamApis__<name>__*`).
#[derive(Debug, Clone)]
pub struct DownstreamApi {
    /// `BaseUrl`.
    pub base_url: String,
    /// `Scopes`.
    pub scopes: Vec<String>,
    /// `RequestAppToken`: app token instead of on-behalf-of on authenticated routes.
    pub request_app_token: bool,
    /// `HttpMethod` for `/DownstreamApi` (default GET).
    pub http_method: Option<String>,
}

/// Sidecar settings (the `AzureAd__*`, `DownstreamApis__*` and `Sidecar__AllowOverrides__*` variables).
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// `AzureAd__Instance` + tenant: e.g. `http://127.0.0.1:4000`.
    pub instance: String,
    /// `AzureAd__TenantId`.
    pub tenant_id: String,
    /// `AzureAd__ClientId`: the Blueprint.
    pub blueprint_app_id: String,
    /// `IDENTITY_ENDPOINT` of the managed identity it signs assertions with.
    pub identity_endpoint: String,
    /// `DownstreamApis__<name>`.
    pub downstream_apis: HashMap<String, DownstreamApi>,
    /// `Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated` (default false since 1.1.0).
    pub allow_unauthenticated_overrides: bool,
}

impl SidecarConfig {
    /// The tutorial's sidecar for this cloud: the Blueprint signing with the system-assigned
    /// managed identity, the weather API at `weather_base` as its one downstream API;
    /// `allow_overrides` is the `AgentIdentity` override the agent
    /// needs since 1.1.0.
    pub fn tutorial(cloud_http_url: &str, weather_base: &str, allow_overrides: bool) -> Self {
        let mut apis = HashMap::new();
        apis.insert(
            "weather-api".to_string(),
            DownstreamApi {
                base_url: weather_base.into(),
                scopes: vec![format!("{}/.default", ids::WEATHER_API_AUDIENCE)],
                request_app_token: false,
                http_method: None,
            },
        );
        Self {
            instance: cloud_http_url.into(),
            tenant_id: ids::TENANT_ID.into(),
            blueprint_app_id: ids::BLUEPRINT_APP_ID.into(),
            identity_endpoint: format!("{cloud_http_url}/msi/token"),
            downstream_apis: apis,
            allow_unauthenticated_overrides: allow_overrides,
        }
    }
}

struct Sidecar {
    config: SidecarConfig,
    cloud: Arc<crate::CloudState>,
    http: reqwest::Client,
    /// `IDENTITY_ENDPOINT`, asked for the managed identity's assertion (`SignedAssertionFromManagedIdentity`).
    identity_endpoint: url::Url,
    /// The tokens it acquired, as the Entra SDK for Agent ID keeps them (MSAL's in-memory cache).
    tokens: TokenCache,
}

/// Acquired tokens by what was asked for (the grant, the client, the scope, for OBO a digest of
/// the user's token), each with its expiry (unix seconds). A token is used until five minutes
/// before it expires (MSAL's refresh margin); failures are not kept.
#[derive(Default)]
struct TokenCache(std::sync::Mutex<HashMap<CacheKey, (String, u64)>>);

/// What a token was acquired for: the grant, the client (Blueprint or agent), the scope, and for
/// OBO the SHA-256 of the user's token (never the token). Fields, not a joined string: an agent
/// id from the query string cannot collide with another request's agent and scope.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    grant: &'static str,
    client: String,
    scope: String,
    user: Option<[u8; 32]>,
}

/// The longest lifetime kept, whatever `expires_in` says (Entra's are 60-90 minutes).
const MAX_CACHED_LIFETIME_SECS: u64 = 24 * 3600;

/// MSAL acquires a new token when the cached one has less than this left.
const REFRESH_MARGIN_SECS: u64 = 300;
/// Bounds the cache (one OBO entry per user and API): past it, expired entries go, then all.
const MAX_CACHED_TOKENS: usize = 10_000;

impl TokenCache {
    fn get(&self, key: &CacheKey, now: u64) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, expires)| now.saturating_add(REFRESH_MARGIN_SECS) < *expires)
            .map(|(token, _)| token.clone())
    }

    fn put(&self, key: CacheKey, token: &str, expires_in: Option<u64>, now: u64) {
        let Some(expires_in) = expires_in else {
            return;
        };
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED_TOKENS {
            map.retain(|_, (_, expires)| now.saturating_add(REFRESH_MARGIN_SECS) < *expires);
            if map.len() >= MAX_CACHED_TOKENS {
                map.clear();
            }
        }
        let expires = now.saturating_add(expires_in.min(MAX_CACHED_LIFETIME_SECS));
        map.insert(key, (token.to_string(), expires));
    }
}

/// The sidecar's router (serve it with `into_make_service_with_connect_info::<SocketAddr>()`).
pub fn router(
    config: SidecarConfig,
    cloud: Arc<crate::CloudState>,
) -> Result<axum::Router, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let identity_endpoint = config
        .identity_endpoint
        .parse()
        .map_err(|e| format!("identity endpoint: {e}"))?;
    let app = Arc::new(Sidecar {
        config,
        cloud,
        http,
        identity_endpoint,
        tokens: TokenCache::default(),
    });
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "Healthy" }))
        .route(
            "/AuthorizationHeaderUnauthenticated/{api}",
            get(unauthenticated),
        )
        .route("/AuthorizationHeader/{api}", get(authenticated))
        .route("/DownstreamApi/{api}", post(downstream))
        .with_state(app);
    Ok(server_kit::harden(
        app,
        &server_kit::Limits::default(),
        server_kit::json_error,
    ))
}

/// Why the sidecar refuses a request, answered as sidecar 1.1.x answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An RFC 7807 problem, as ASP.NET's `TypedResults.Problem` writes it.
    Problem {
        /// HTTP status.
        status: u16,
        /// `detail` (Entra's AADSTS message on token failures).
        detail: String,
    },
    /// JwtBearer's refusal of the caller's token: 401, the challenge, an empty body.
    Challenge(String),
    /// A caller that is not on loopback: 403 with an empty body.
    NotLoopback,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Problem { status, detail } => {
                let title = match status {
                    400 => "Bad Request",
                    401 => "Unauthorized",
                    _ => "An error occurred while processing your request.",
                };
                let mut r = (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    Json(json!({"type": format!("https://tools.ietf.org/html/rfc9110#section-15.{}", if status >= 500 { "6.1" } else { "5.1" }), "title": title, "status": status, "detail": detail})),
                )
                    .into_response();
                r.headers_mut().insert(
                    "content-type",
                    HeaderValue::from_static("application/problem+json"),
                );
                r
            }
            Self::Challenge(challenge) => {
                let mut r = StatusCode::UNAUTHORIZED.into_response();
                r.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
                );
                r
            }
            Self::NotLoopback => StatusCode::FORBIDDEN.into_response(),
        }
    }
}

/// A problem answer.
fn problem(status: u16, detail: &str) -> Refusal {
    Refusal::Problem {
        status,
        detail: detail.into(),
    }
}

fn no_cache(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("expires", HeaderValue::from_static("0"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    r
}

fn loopback_only(peer: &SocketAddr) -> Result<(), Refusal> {
    if peer.ip().is_loopback() {
        Ok(())
    } else {
        Err(Refusal::NotLoopback)
    }
}

#[derive(Deserialize)]
struct AgentQuery {
    #[serde(rename = "AgentIdentity")]
    agent_identity: Option<String>,
}

impl Sidecar {
    /// Every route's door: counts the call, waits out injected latency, and answers an injected
    /// fault (`Ok(Some)` with a canned answer, `Err` with the problem for a `Status` fault).
    async fn door(&self, name: &str) -> Result<Option<Response>, Refusal> {
        match self
            .cloud
            .door(name, "application/json; charset=utf-8")
            .await
        {
            Ok(None) => Ok(None),
            Ok(Some(f)) => Err(problem(f.status, "Injected failure.")),
            Err(canned) => Ok(Some(canned)),
        }
    }

    fn api(&self, name: &str) -> Result<&DownstreamApi, Refusal> {
        self.config
            .downstream_apis
            .get(name)
            .ok_or_else(|| problem(400, &format!("Not able to resolve '{name}'.")))
    }

    /// A token from Entra's token endpoint, and its lifetime in seconds when Entra gives one.
    async fn token(&self, form: &[(&str, &str)]) -> Result<(String, Option<u64>), Refusal> {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.config.instance.trim_end_matches('/'),
            self.config.tenant_id
        );
        let resp = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(|e| problem(500, &format!("An unexpected error occurred. {e}")))?;
        let body: Value = resp.json().await.unwrap_or_default();
        // `expires_in` is a number in v2 answers; v1 answers carry it as a string.
        let expires_in = body["expires_in"]
            .as_u64()
            .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()));
        match body["access_token"].as_str() {
            Some(t) => Ok((t.to_string(), expires_in)),
            // MsalServiceException surfaces as 401 with the MSAL (AADSTS) message.
            None => Err(problem(
                401,
                body["error_description"]
                    .as_str()
                    .unwrap_or("token request failed"),
            )),
        }
    }

    /// The cached token for `key`, or the one `acquire` gets from Entra (then kept).
    async fn cached(
        &self,
        key: CacheKey,
        acquire: impl std::future::Future<Output = Result<(String, Option<u64>), Refusal>>,
    ) -> Result<String, Refusal> {
        if let Some(token) = self
            .tokens
            .get(&key, crate::state::unix_seconds(self.cloud.clock.now()))
        {
            return Ok(token);
        }
        let (token, expires_in) = acquire.await?;
        self.tokens.put(
            key,
            &token,
            expires_in,
            crate::state::unix_seconds(self.cloud.clock.now()),
        );
        Ok(token)
    }

    /// The managed identity's assertion, from the platform's identity endpoint (2019-08-01, with
    /// the identity header read anew on each call, as the platform rotates it).
    async fn assertion(&self) -> Result<String, Refusal> {
        let failed = |why: String| {
            problem(
                401,
                &format!("ManagedIdentityCredential authentication failed: {why}"),
            )
        };
        let header = self
            .cloud
            .identity_header
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let answer = self
            .http
            .get(self.identity_endpoint.clone())
            .query(&[
                ("api-version", "2019-08-01"),
                ("resource", crate::registry::TOKEN_EXCHANGE_URI),
            ])
            .header("X-IDENTITY-HEADER", header)
            .send()
            .await
            .map_err(|e| {
                failed(format!(
                    "the identity endpoint is unreachable: {}",
                    e.without_url()
                ))
            })?;
        let status = answer.status();
        let body: Value = answer.json().await.map_err(|_| {
            failed(format!(
                "the identity endpoint answered HTTP {status} without JSON"
            ))
        })?;
        match body["access_token"].as_str() {
            Some(token) if status.is_success() => Ok(token.to_string()),
            _ => Err(failed(format!(
                "the identity endpoint answered HTTP {status}: {}",
                body["message"]
                    .as_str()
                    .or(body["error_description"].as_str())
                    .unwrap_or("no token")
            ))),
        }
    }

    /// The Blueprint's own app token for `scope`.
    async fn blueprint_token(&self, scope: &str) -> Result<String, Refusal> {
        let key = CacheKey {
            grant: "client_credentials",
            client: self.config.blueprint_app_id.clone(),
            scope: scope.to_string(),
            user: None,
        };
        self.blueprint_grant(key, scope, None).await
    }

    /// T1 for `agent`.
    async fn t1(&self, agent: &str) -> Result<String, Refusal> {
        let key = CacheKey {
            grant: "fmi_path",
            client: self.config.blueprint_app_id.clone(),
            scope: agent.to_string(),
            user: None,
        };
        self.blueprint_grant(key, "api://AzureADTokenExchange/.default", Some(agent))
            .await
    }

    /// A client-credentials token of the Blueprint, which authenticates with the managed
    /// identity's assertion; with `fmi_path`, T1 for that agent.
    async fn blueprint_grant(
        &self,
        key: CacheKey,
        scope: &str,
        fmi_path: Option<&str>,
    ) -> Result<String, Refusal> {
        self.cached(key, async {
            let mi = self.assertion().await?;
            let mut form = vec![
                ("grant_type", "client_credentials"),
                ("client_id", self.config.blueprint_app_id.as_str()),
                ("scope", scope),
                ("client_assertion_type", crate::entra::JWT_BEARER_ASSERTION),
                ("client_assertion", mi.as_str()),
            ];
            if let Some(agent) = fmi_path {
                form.push(("fmi_path", agent));
            }
            self.token(&form).await
        })
        .await
    }

    async fn agent_app_token(&self, agent: &str, scope: &str) -> Result<String, Refusal> {
        let key = CacheKey {
            grant: "client_credentials",
            client: agent.to_string(),
            scope: scope.to_string(),
            user: None,
        };
        self.cached(key, async {
            let t1 = self.t1(agent).await?;
            self.token(&[
                ("grant_type", "client_credentials"),
                ("client_id", agent),
                ("scope", scope),
                ("client_assertion_type", crate::entra::JWT_BEARER_ASSERTION),
                ("client_assertion", &t1),
            ])
            .await
        })
        .await
    }

    async fn agent_obo_token(
        &self,
        agent: &str,
        scope: &str,
        user: &str,
    ) -> Result<String, Refusal> {
        // Per user: a digest of their token, never the token, is the key.
        let mut user_digest = [0u8; 32];
        user_digest.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, user.as_bytes()).as_ref(),
        );
        let key = CacheKey {
            grant: "on_behalf_of",
            client: agent.to_string(),
            scope: scope.to_string(),
            user: Some(user_digest),
        };
        self.cached(key, async {
            let t1 = self.t1(agent).await?;
            self.token(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("client_id", agent),
                ("scope", scope),
                ("client_assertion_type", crate::entra::JWT_BEARER_ASSERTION),
                ("client_assertion", &t1),
                ("assertion", user),
                ("requested_token_use", "on_behalf_of"),
            ])
            .await
        })
        .await
    }

    /// JwtBearer for the Blueprint: 401 with a challenge and an empty body when missing or
    /// invalid. As ASP.NET's JwtBearer handler: the tenant's signing key, a v1 or v2 issuer of the
    /// tenant, the Blueprint as audience (its client id or `api://` URI), the lifetime with five
    /// minutes' skew, and nothing more (the sidecar sets `AllowWebApiToBeAuthorizedByACL`: no
    /// scope, role or caller-app check). The challenge carries ASP.NET's descriptions, or none where ASP.NET gives none.
    async fn inbound_user(&self, headers: &HeaderMap) -> Result<String, Refusal> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Refusal::Challenge("Bearer".into()))?;
        let refuse = |description: Option<String>| {
            Refusal::Challenge(match description {
                Some(d) => format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    d.replace('\\', "\\\\").replace('"', "\\\"")
                ),
                None => "Bearer error=\"invalid_token\"".into(),
            })
        };
        let verified = self
            .cloud
            .tenant_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .verify(&token);
        let claims = match verified {
            Ok(claims) => claims,
            // IdentityModel checks an unknown key's token's lifetime and issuer first, so that
            // an expired token signed with a retired key says it expired.
            Err(crate::keys::VerifyError::UnknownKey) => {
                if let Some(unverified) = unverified_payload(&token) {
                    self.check_lifetime(&unverified)
                        .map_err(|d| refuse(Some(d)))?;
                    self.check_issuer(&unverified)
                        .map_err(|d| refuse(Some(d)))?;
                }
                return Err(refuse(Some("The signature key was not found".into())));
            }
            Err(crate::keys::VerifyError::Signature | crate::keys::VerifyError::Algorithm) => {
                return Err(refuse(Some("The signature is invalid".into())));
            }
            Err(crate::keys::VerifyError::Malformed) => return Err(refuse(None)),
        };
        // IdentityModel's order: lifetime, audience, issuer.
        self.check_lifetime(&claims).map_err(|d| refuse(Some(d)))?;
        let text = |name: &str| claims[name].as_str().unwrap_or_default().to_string();
        // Microsoft.Identity.Web ties the audience to the token's version: a v2 token names the
        // client id, a v1 token the App ID URI. Compared exactly, as IdentityModel does.
        let blueprint = &self.config.blueprint_app_id;
        let expected = if text("ver") == "2.0" {
            blueprint.clone()
        } else {
            format!("api://{blueprint}")
        };
        let aud = text("aud");
        if aud != expected {
            return Err(refuse(Some(format!("The audience '{aud}' is invalid"))));
        }
        self.check_issuer(&claims).map_err(|d| refuse(Some(d)))?;
        // `AllowWebApiToBeAuthorizedByACL=true`: no scope, role or client check after this.
        Ok(token)
    }

    /// IdentityModel's lifetime rules, with its default 5 minutes' skew; the description of a
    /// failure as ASP.NET's JwtBearer words it.
    fn check_lifetime(&self, claims: &Value) -> Result<(), String> {
        const SKEW: u64 = 300;
        let now = crate::state::unix_seconds(self.cloud.clock.now());
        let Some(exp) = claims["exp"].as_u64() else {
            return Err("The token has no expiration".into());
        };
        let nbf = claims["nbf"].as_u64();
        if let Some(nbf) = nbf
            && nbf > exp
        {
            return Err(format!(
                "The token lifetime is invalid; NotBefore: '{}', Expires: '{}'",
                dotnet_date(nbf),
                dotnet_date(exp)
            ));
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(SKEW)
        {
            return Err(format!(
                "The token is not valid before '{}'",
                dotnet_date(nbf)
            ));
        }
        if exp.saturating_add(SKEW) <= now {
            return Err(format!("The token expired at '{}'", dotnet_date(exp)));
        }
        Ok(())
    }

    /// A v1 or v2 issuer of the tenant.
    fn check_issuer(&self, claims: &Value) -> Result<(), String> {
        let iss = claims["iss"].as_str().unwrap_or_default();
        let reg = self.cloud.registry();
        if iss == reg.v1_issuer() || iss == reg.v2_issuer() {
            Ok(())
        } else {
            Err(format!("The issuer '{iss}' is invalid"))
        }
    }
}

async fn unauthenticated(
    State(s): State<Arc<Sidecar>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(api): Path<String>,
    Query(q): Query<AgentQuery>,
) -> Result<Response, Refusal> {
    if let Some(canned) = s.door("sidecar:AuthorizationHeaderUnauthenticated").await? {
        return Ok(canned);
    }
    loopback_only(&peer)?;
    let cfg = s.api(&api)?.clone();
    let scope = cfg.scopes.join(" ");
    let token = match q.agent_identity.filter(|a| !a.is_empty()) {
        Some(agent) if s.config.allow_unauthenticated_overrides => {
            s.agent_app_token(&agent, &scope).await
        }
        Some(agent) => {
            tracing::warn!(agent_identity = %agent, "AgentIdentityOverridesIgnored: Sidecar:AllowOverrides:GetAuthorizationHeaderUnauthenticated is false");
            s.blueprint_token(&scope).await
        }
        None => s.blueprint_token(&scope).await,
    }?;
    Ok(no_cache(
        Json(json!({"authorizationHeader": format!("Bearer {token}")})).into_response(),
    ))
}

async fn authenticated(
    State(s): State<Arc<Sidecar>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(api): Path<String>,
    Query(q): Query<AgentQuery>,
) -> Result<Response, Refusal> {
    if let Some(canned) = s.door("sidecar:AuthorizationHeader").await? {
        return Ok(canned);
    }
    let token = s
        .caller_agent_token(&peer, &headers, &api, q.agent_identity)
        .await?;
    Ok(no_cache(
        Json(json!({"authorizationHeader": format!("Bearer {token}")})).into_response(),
    ))
}

impl Sidecar {
    /// The prologue of the authenticated routes after [`Sidecar::door`]: loopback, the caller's
    /// user token, the API, then the agent's token for it (on behalf of the user, or app-only
    /// when `RequestAppToken`).
    async fn caller_agent_token(
        &self,
        peer: &SocketAddr,
        headers: &HeaderMap,
        api: &str,
        agent: Option<String>,
    ) -> Result<String, Refusal> {
        loopback_only(peer)?;
        let user = self.inbound_user(headers).await?;
        let cfg = self.api(api)?.clone();
        let Some(agent) = agent.filter(|a| !a.is_empty()) else {
            return Err(problem(
                400,
                "AgentIdentity is required by this emulation (on-behalf-of for the Blueprint itself is not emulated).",
            ));
        };
        let scope = cfg.scopes.join(" ");
        if cfg.request_app_token {
            self.agent_app_token(&agent, &scope).await
        } else {
            self.agent_obo_token(&agent, &scope, &user).await
        }
    }
}

#[derive(Deserialize)]
struct DownstreamQuery {
    #[serde(rename = "AgentIdentity")]
    agent_identity: Option<String>,
    #[serde(rename = "optionsOverride.RelativePath")]
    relative_path: Option<String>,
    #[serde(rename = "optionsOverride.HttpMethod")]
    http_method: Option<String>,
}

/// The headers .NET counts as content headers (`HttpContent.Headers`): the only ones
/// `/DownstreamApi` returns.
const CONTENT_HEADERS: &[(&str, &str)] = &[
    ("allow", "Allow"),
    ("content-disposition", "Content-Disposition"),
    ("content-encoding", "Content-Encoding"),
    ("content-language", "Content-Language"),
    ("content-length", "Content-Length"),
    ("content-location", "Content-Location"),
    ("content-md5", "Content-MD5"),
    ("content-range", "Content-Range"),
    ("content-type", "Content-Type"),
    ("expires", "Expires"),
    ("last-modified", "Last-Modified"),
];

async fn downstream(
    State(s): State<Arc<Sidecar>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(api): Path<String>,
    Query(q): Query<DownstreamQuery>,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    if let Some(canned) = s.door("sidecar:DownstreamApi").await? {
        return Ok(canned);
    }
    let token = s
        .caller_agent_token(&peer, &headers, &api, q.agent_identity)
        .await?;
    let cfg = s.api(&api)?.clone();
    let url = format!(
        "{}/{}",
        cfg.base_url.trim_end_matches('/'),
        q.relative_path.unwrap_or_default().trim_start_matches('/')
    );
    let method = q
        .http_method
        .or(cfg.http_method)
        .unwrap_or_else(|| "GET".into());
    // The methods .NET's HttpMethod names for an API call (no CONNECT or TRACE).
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let upper = method.to_ascii_uppercase();
    let method = METHODS
        .iter()
        .find(|m| **m == upper)
        .and_then(|m| reqwest::Method::from_bytes(m.as_bytes()).ok())
        .ok_or_else(|| problem(400, &format!("The HTTP method '{method}' is not valid.")))?;
    let mut request = s.http.request(method, url).bearer_auth(token);
    // The caller's body goes along only when it says what it is (the sidecar reads it as
    // HttpContent only then).
    if let Some(content_type) = headers.get("content-type") {
        request = request
            .header("content-type", content_type.clone())
            .body(body);
    }
    let resp = match request.send().await {
        Ok(r) => r,
        Err(e) => return Err(problem(500, &format!("An unexpected error occurred. {e}"))),
    };
    let status = resp.status().as_u16();
    let mut content_headers = serde_json::Map::new();
    for (wire, dotnet) in CONTENT_HEADERS {
        let values: Vec<Value> = resp
            .headers()
            .get_all(*wire)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| json!(v))
            .collect();
        if !values.is_empty() {
            content_headers.insert((*dotnet).into(), Value::Array(values));
        }
    }
    // `content` is read only when the downstream declared a length above zero.
    let declared_length = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    // Bounded, as the sidecar's own limits bound what it relays.
    const MAX_DOWNSTREAM_BODY: usize = 1 << 20;
    let mut resp = resp;
    let mut raw = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        if raw.len() + chunk.len() > MAX_DOWNSTREAM_BODY {
            return Err(problem(
                500,
                "An unexpected error occurred. The downstream answer is over 1 MiB.",
            ));
        }
        raw.extend_from_slice(&chunk);
    }
    let body = String::from_utf8_lossy(&raw).into_owned();
    let content = if declared_length > 0 {
        json!(body)
    } else {
        Value::Null
    };
    Ok(no_cache(
        Json(json!({"statusCode": status, "headers": content_headers, "content": content}))
            .into_response(),
    ))
}

/// A JWT's payload, not verified (for the checks IdentityModel makes before it gives up on an
/// unknown key).
fn unverified_payload(token: &str) -> Option<Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A time as .NET's invariant culture prints a `DateTime` in JwtBearer's descriptions:
/// `MM/dd/yyyy HH:mm:ss`.
fn dotnet_date(unix: u64) -> String {
    let iso = crate::state::iso8601(crate::state::from_unix_seconds(unix));
    // YYYY-MM-DDTHH:MM:SSZ
    format!(
        "{}/{}/{} {}",
        &iso[5..7],
        &iso[8..10],
        &iso[0..4],
        &iso[11..19]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: &str, scope: &str) -> CacheKey {
        CacheKey {
            grant: "client_credentials",
            client: client.into(),
            scope: scope.into(),
            user: None,
        }
    }

    #[test]
    fn an_agent_id_with_a_space_does_not_reach_another_agents_token() {
        let cache = TokenCache::default();
        cache.put(key("A", "x y"), "token-of-A", Some(3600), 1000);
        // Joined with spaces, ("A x", "y") and ("A", "x y") would be one key.
        assert_eq!(cache.get(&key("A x", "y"), 1000), None);
        assert_eq!(
            cache.get(&key("A", "x y"), 1000).as_deref(),
            Some("token-of-A")
        );
    }

    #[test]
    fn an_absurd_lifetime_is_bounded_and_kept_until_five_minutes_before_it_ends() {
        let cache = TokenCache::default();
        cache.put(key("A", "s"), "t", Some(u64::MAX), 1000);
        let last_second = 1000 + MAX_CACHED_LIFETIME_SECS - REFRESH_MARGIN_SECS - 1;
        assert!(cache.get(&key("A", "s"), last_second).is_some());
        assert!(cache.get(&key("A", "s"), last_second + 1).is_none());
        cache.put(key("B", "s"), "t", None, 1000);
        assert!(
            cache.get(&key("B", "s"), 1000).is_none(),
            "no lifetime: not kept"
        );
    }

    /// JwtBearer's descriptions print times as .NET's invariant culture does.
    #[test]
    fn dates_read_as_dotnet_prints_them() {
        assert_eq!(dotnet_date(0), "01/01/1970 00:00:00");
        assert_eq!(dotnet_date(1_704_164_645), "01/02/2024 03:04:05");
    }
}
