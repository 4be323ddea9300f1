//! Downstream token validation (what the weather API pays per request): an agent token checked
//! for signature (RS256, key by kid from a cached JWKS), claims and policy; beside its floor, a
//! bare aws-lc-rs RSA-2048 PKCS#1 v1.5 SHA-256 check of the same token's signature; and the same
//! token repeated, answered from the verified-token cache.
//!
//! `cargo bench -p benches --bench validator` (or `scripts/bench`)

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
        Policy::new(
            [ids::AGENT_CLIENT_ID],
            KindPolicy::Require(ids::WEATHER_PERMISSION.into()),
            KindPolicy::Deny,
        )
        .with_expected_blueprint(ids::BLUEPRINT_APP_ID),
    );
    config.authority = format!("{}/", cloud.http_url()).parse().unwrap();
    // A first-seen token every time: the verified-token cache off.
    let cached_validator = TokenValidator::new(config.clone()).unwrap();
    config.verified_cache = 0;
    let validator = TokenValidator::new(config).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
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

    // The same token again (what the weather API sees for up to an hour): a verified-cache hit,
    // the policy applied.
    rt.block_on(cached_validator.validate(&token))
        .expect("valid");
    c.bench_function("validate/agent_token_repeat_cached", |b| {
        b.to_async(&rt).iter(|| cached_validator.validate(&token))
    });
    assert!(cached_validator.verified_cache_hits() > 0);

    // The floor: the same signature, checked with the same key and nothing else.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signed, signature) = token.rsplit_once('.').expect("a JWT");
    let header: serde_json::Value =
        serde_json::from_slice(&b64.decode(signed.split('.').next().unwrap()).unwrap()).unwrap();
    let jwks: serde_json::Value = rt.block_on(async {
        reqwest::get(format!(
            "{}/{}/discovery/keys",
            cloud.http_url(),
            ids::TENANT_ID
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
    });
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's key");
    let (n, e) = (
        b64.decode(key["n"].as_str().unwrap()).unwrap(),
        b64.decode(key["e"].as_str().unwrap()).unwrap(),
    );
    let public = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e };
    let signature = b64.decode(signature).unwrap();
    public
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &signature,
        )
        .expect("the floor verifies the same signature");
    c.bench_function("validate/floor_rsa2048_verify", |b| {
        b.iter(|| {
            public.verify(
                &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &signature,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
