//! The token validator in a downstream API: an axum extractor that admits only the agent
//! identity's tokens (signature by the tenant's keys, issuer, audience, the calling app, the app
//! role), answering 401 with `WWW-Authenticate` or 403 otherwise. The agent's token comes from the
//! Entra Agent ID sidecar, as in the tutorial. Runs against a local cloud started in process.
//!
//! `cargo run -p examples --example axum_validator`

#[path = "support/mod.rs"]
mod support;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use entra_federation::sidecar::SidecarClient;
use entra_federation::validate::{
    KindPolicy, Policy, TokenValidator, ValidatedToken, ValidationError, ValidatorConfig,
};
use local_cloud::ids;

/// The caller of a route, validated.
struct Caller(ValidatedToken);

/// The refusal: the status the error names, and for a 401 the challenge.
struct Refused(ValidationError);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let body = axum::Json(
            serde_json::json!({"error": status.canonical_reason(), "message": self.0.to_string()}),
        );
        if status == StatusCode::UNAUTHORIZED {
            let challenge = [(header::WWW_AUTHENTICATE, self.0.www_authenticate())];
            return (status, challenge, body).into_response();
        }
        (status, body).into_response()
    }
}

impl<S> FromRequestParts<S> for Caller
where
    TokenValidator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refused> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        TokenValidator::from_ref(state)
            .validate_header(header)
            .await
            .map(Caller)
            .map_err(Refused)
    }
}

async fn weather(Caller(caller): Caller) -> String {
    format!(
        "sunny, for agent {} ({:?})",
        caller.claims.app_id().unwrap_or("-"),
        caller.kind
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local = support::Local::start().await?;

    // The downstream API: only the agent identity, with the Weather.Read app role.
    let mut config = ValidatorConfig::new(
        &local.var("TENANT_ID"),
        vec![local.var("WEATHER_API_AUDIENCE")],
        Policy::new(
            [local.var("AGENT_APP_ID")],
            KindPolicy::Require(ids::WEATHER_PERMISSION.into()),
            KindPolicy::Deny,
        ),
    );
    // Local cloud only: on Azure the authority is login.microsoftonline.com, trusted by default.
    config.authority = local.var("AZURE_AUTHORITY_HOST").parse()?;
    config.root_ca = Some(local.var("ENTRA_FEDERATION_CA_FILE").into());
    let validator = TokenValidator::new(config)?;
    let app = axum::Router::new()
        .route("/weather", get(weather))
        .with_state(validator);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The agent: its own token for the API, from the sidecar.
    let sidecar_url = local
        .cloud
        .start_sidecar(local_cloud::sidecar::SidecarConfig::tutorial(
            &local.cloud.http_url(),
            &api,
            true,
        ))
        .await?;
    let sidecar = SidecarClient::new(sidecar_url.parse()?)?;
    let token = sidecar
        .autonomous_token("weather-api", &local.var("AGENT_APP_ID"))
        .await?;

    let http = reqwest::Client::new();
    let with_token = http
        .get(format!("{api}/weather"))
        .header(
            header::AUTHORIZATION,
            token.authorization_header().expose_secret(),
        )
        .send()
        .await?;
    println!(
        "with the agent's token: {} {}",
        with_token.status(),
        with_token.text().await?
    );

    let without = http.get(format!("{api}/weather")).send().await?;
    let challenge = without
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap_or_default().to_string());
    println!("without a token:        {} {challenge:?}", without.status());
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}
