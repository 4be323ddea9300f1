//! The Entra Agent ID sidecar client: the agent identity's own token (autonomous) and a token on
//! behalf of the signed-in user (OBO), each for the weather API, with the claims that show which
//! identity acts. Runs against a local cloud and its sidecar emulation, started in process.
//!
//! `cargo run -p examples --example sidecar_client`

#[path = "support/mod.rs"]
mod support;

use entra_federation::SecretString;
use entra_federation::sidecar::SidecarClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local = support::Local::start().await?;
    // On Azure the sidecar runs beside the agent: SIDECAR_URL=http://localhost:5000.
    let sidecar_url = local
        .cloud
        .start_sidecar(local_cloud::sidecar::SidecarConfig::tutorial(
            &local.cloud.http_url(),
            "http://127.0.0.1:9",
            true,
        ))
        .await?;
    let sidecar = SidecarClient::new(sidecar_url.parse()?)?;
    sidecar.health().await?;
    let agent = local.var("AGENT_APP_ID");

    let autonomous = sidecar.autonomous_token("weather-api", &agent).await?;
    println!("autonomous:    {}", autonomous.claims());
    assert_eq!(autonomous.app_id(), Some(agent.as_str()));

    // The user's token comes from the page's sign-in (MSAL); the local cloud signs its
    // developer user in instead.
    let user = SecretString::new(local.cloud.dev_user_token().await?);
    let obo = sidecar
        .on_behalf_of_token("weather-api", &agent, &user)
        .await?;
    println!("on behalf of:  {}", obo.claims());
    assert_eq!(obo.app_id(), Some(agent.as_str()));
    Ok(())
}
