//! `provide_credentials` latency: the cached path (what every AWS SDK request pays), and a cold
//! provider running the whole chain against the local cloud on loopback.
//!
//! `cargo bench -p benches`

use aws_credential_types::provider::ProvideCredentials;
use criterion::{Criterion, criterion_group, criterion_main};
use entra_federation::{Builder, EntraCredentialsProvider};
use futures::FutureExt;
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

    // Eight threads calling at once (on two cores): the time for each of them to make one call,
    // so the figure is comparable with the single-caller one above.
    let contended = warm.clone();
    c.bench_function("provide_credentials/cached_8_threads", |b| {
        b.iter_custom(|iters| {
            let start = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                let runs: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            let began = std::time::Instant::now();
                            for _ in 0..iters {
                                let creds = contended
                                    .provide_credentials()
                                    .now_or_never()
                                    .expect("cached: ready on the first poll")
                                    .expect("credentials");
                                std::hint::black_box(creds);
                            }
                            began.elapsed()
                        })
                    })
                    .collect();
                runs.into_iter()
                    .map(|r| r.join().expect("caller thread"))
                    .max()
                    .expect("eight threads")
            })
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
