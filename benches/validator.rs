//! Downstream token validation (what the weather API pays per request): an agent token checked
//! for signature (RS256, key by kid from a cached JWKS), claims and policy.
//!
//! `cargo bench -p benches --bench validator`

use criterion::{Criterion, criterion_group, criterion_main};
use entra_federation::validate::{KindPolicy, Policy, TokenValidator, ValidatorConfig};
use local_cloud::{LocalCloud, ids};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cloud: LocalCloud = rt.block_on(LocalCloud::builder().start()).unwrap();
    let mut config = ValidatorConfig::new(
        ids::TENANT_ID,
        vec![ids::WEATHER_API_AUDIENCE.into()],
        Policy {
            allowed_app_ids: vec![ids::AGENT_CLIENT_ID.into()],
            expected_blueprint: Some(ids::BLUEPRINT_APP_ID.into()),
            app_only: KindPolicy::Require(ids::WEATHER_PERMISSION.into()),
            delegated: KindPolicy::Deny,
        },
    );
    config.authority = format!("{}/", cloud.http_url()).parse().unwrap();
    let validator = TokenValidator::new(config).unwrap();
    let now = entra_federation::clock::unix_seconds(std::time::SystemTime::now());
    let claims = serde_json::json!({
        "aud": ids::WEATHER_API_AUDIENCE, "iss": format!("https://sts.windows.net/{}/", ids::TENANT_ID),
        "iat": now, "nbf": now, "exp": now + 3600, "appid": ids::AGENT_CLIENT_ID, "idtyp": "app",
        "oid": ids::AGENT_SP_OID, "sub": ids::AGENT_SP_OID, "tid": ids::TENANT_ID, "ver": "1.0",
        "roles": [ids::WEATHER_PERMISSION], "xms_par_app_azp": ids::BLUEPRINT_APP_ID,
    });
    let token = cloud
        .state()
        .tenant_keys
        .read()
        .unwrap()
        .sign(&claims, true);
    rt.block_on(validator.validate(&token)).expect("valid");
    c.bench_function("validate/agent_token_rs256", |b| {
        b.to_async(&rt).iter(|| validator.validate(&token))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
