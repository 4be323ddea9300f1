//! `provide_credentials` latency: the cached path (what every AWS SDK request pays), and a cold
//! provider running the whole chain against the local cloud on loopback.
//!
//! `cargo bench -p benches`

use aws_credential_types::provider::ProvideCredentials;
use criterion::{Criterion, criterion_group, criterion_main};
use entra_federation::{Builder, EntraCredentialsProvider};
use local_cloud::LocalCloud;
use std::collections::HashMap;

fn provider(env: &HashMap<String, String>) -> EntraCredentialsProvider {
    let env = env.clone();
    Builder::from_env_fn(move |k| env.get(k).cloned())
        .unwrap()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cloud: LocalCloud = rt.block_on(LocalCloud::builder().start()).unwrap();
    let env: HashMap<String, String> = cloud.env().into_iter().collect();

    let warm = provider(&env);
    rt.block_on(warm.provide_credentials()).unwrap();
    c.bench_function("provide_credentials/cached", |b| {
        b.to_async(&rt).iter(|| warm.provide_credentials())
    });

    let contended = warm.clone();
    c.bench_function("provide_credentials/cached_8_concurrent", |b| {
        b.to_async(&rt).iter(|| {
            let p = contended.clone();
            async move {
                let calls: Vec<_> = (0..8).map(|_| p.provide_credentials()).collect();
                for call in calls {
                    call.await.unwrap();
                }
            }
        })
    });

    let mut group = c.benchmark_group("provide_credentials");
    group.sample_size(30);
    group.bench_function("cold_chain_local_cloud", |b| {
        b.to_async(&rt).iter(|| {
            let p = provider(&env);
            async move { p.provide_credentials().await.unwrap() }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
