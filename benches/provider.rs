//! `provide_credentials` latency: the cached path (what every AWS SDK request pays) beside its
//! comparator, the identity cache the AWS SDK for Rust puts in front of a provider
//! (`IdentityCache::lazy()`, driven through its public API, serving the same credentials), with
//! one caller and with eight at once; allocations per cached call, counted process-wide; and a
//! cold provider running the whole chain against the local cloud on loopback.
//!
//! `cargo bench -p benches --bench provider` (or `scripts/bench`, which also writes BENCHMARKS.md)

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_runtime::client::identity::IdentityCache;
use aws_smithy_runtime_api::client::identity::{ResolveCachedIdentity, SharedIdentityResolver};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
use aws_smithy_types::config_bag::ConfigBag;
use criterion::{Criterion, criterion_group, criterion_main};
use entra_federation::{EntraCredentialsProvider, EntraCredentialsProviderBuilder};
use futures::FutureExt;
use local_cloud::LocalCloud;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts every allocation in the process, so the cached path's "no allocation" is measured, not
/// assumed.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per call of `f`, over `n` calls on this thread (the process is otherwise idle:
/// the runtime's workers are parked).
fn allocations_per_call(n: u64, mut f: impl FnMut()) -> f64 {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..n {
        f();
    }
    (ALLOCATIONS.load(Ordering::SeqCst) - before) as f64 / n as f64
}

/// Eight threads (inside `rt`'s context, which the SDK's cache needs) each making `iters` calls of
/// `call` at once, released together: the time until the last is done.
fn eight_threads(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    call: impl Fn() + Sync,
) -> std::time::Duration {
    // The clock is the caller's: from the moment all eight are released until the last one is
    // done, so a thread that the scheduler runs late is still inside the measured window.
    let start = std::sync::Barrier::new(9);
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let _entered = rt.enter();
                    start.wait();
                    for _ in 0..iters {
                        call();
                    }
                })
            })
            .collect();
        start.wait();
        let began = std::time::Instant::now();
        for r in runs {
            r.join().expect("caller thread");
        }
        began.elapsed()
    })
}

fn provider(env: &HashMap<String, String>) -> EntraCredentialsProvider {
    let env = env.clone();
    EntraCredentialsProviderBuilder::from_env_fn(move |k| env.get(k).cloned())
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
    // Both sides polled once on this thread (cached answers are ready on the first poll), so
    // the figure is the call itself, not an executor's per-iteration overhead.
    c.bench_function("provide_credentials/cached", |b| {
        b.iter(|| {
            warm.provide_credentials()
                .now_or_never()
                .expect("cached: ready on the first poll")
        })
    });

    // The floor of any provider: credentials already in hand, cloned into a ready future (what
    // the trait's owned `Credentials` costs to hand out, and the harness around it).
    let held = rt
        .block_on(warm.provide_credentials())
        .expect("credentials");
    c.bench_function("provide_credentials/floor_ready_clone", |b| {
        b.iter(|| {
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(held.clone()))
                .now_or_never()
                .expect("ready")
        })
    });

    // The comparator: the SDK's lazy identity cache over the same (warm) provider.
    let sdk_cache = IdentityCache::lazy().build();
    let resolver = SharedIdentityResolver::new(SharedCredentialsProvider::new(warm.clone()));
    let components = RuntimeComponentsBuilder::for_tests()
        .with_time_source(Some(SharedTimeSource::default()))
        .with_sleep_impl(Some(SharedAsyncSleep::new(TokioSleep::new())))
        .build()
        .expect("runtime components");
    let bag = ConfigBag::base();
    rt.block_on(async {
        sdk_cache
            .resolve_cached_identity(resolver.clone(), &components, &bag)
            .await
    })
    .expect("the SDK cache loads");
    c.bench_function("sdk_identity_cache/cached", |b| {
        // The SDK's cache makes its load-timeout sleep when called: inside a runtime's context.
        let _entered = rt.enter();
        b.iter(|| {
            sdk_cache
                .resolve_cached_identity(resolver.clone(), &components, &bag)
                .now_or_never()
                .expect("cached: ready on the first poll")
        })
    });

    // The SDK's cache makes its load-timeout sleep when called: inside a runtime's context.
    let entered = rt.enter();
    let ours = allocations_per_call(10_000, || {
        let c = warm
            .provide_credentials()
            .now_or_never()
            .expect("ready")
            .expect("credentials");
        std::hint::black_box(c);
    });
    let theirs = allocations_per_call(10_000, || {
        let id = sdk_cache
            .resolve_cached_identity(resolver.clone(), &components, &bag)
            .now_or_never()
            .expect("ready")
            .expect("identity");
        std::hint::black_box(id);
    });
    drop(entered);
    println!(
        "allocations per cached call: provide_credentials {ours}, sdk_identity_cache {theirs}"
    );
    let home = std::env::var("CRITERION_HOME")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/criterion").into());
    std::fs::create_dir_all(&home).ok();
    std::fs::write(
        format!("{home}/allocations.json"),
        format!("{{\"provide_credentials\": {ours}, \"sdk_identity_cache\": {theirs}}}\n"),
    )
    .ok();

    // Eight threads calling at once (on two cores): the time for each of them to make one call,
    // so the figure is comparable with the single-caller one above.
    let contended = warm.clone();
    c.bench_function("provide_credentials/cached_8_threads", |b| {
        b.iter_custom(|iters| {
            eight_threads(&rt, iters, || {
                let creds = contended
                    .provide_credentials()
                    .now_or_never()
                    .expect("cached: ready on the first poll")
                    .expect("credentials");
                std::hint::black_box(creds);
            })
        })
    });
    // The same eight threads through the SDK's cache.
    c.bench_function("sdk_identity_cache/cached_8_threads", |b| {
        b.iter_custom(|iters| {
            eight_threads(&rt, iters, || {
                let id = sdk_cache
                    .resolve_cached_identity(resolver.clone(), &components, &bag)
                    .now_or_never()
                    .expect("cached: ready on the first poll")
                    .expect("identity");
                std::hint::black_box(id);
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
