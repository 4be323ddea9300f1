//! The cached `provide_credentials` allocates nothing and completes on its first poll, counted
//! process-wide on the multi-threaded runtime, in the fresh phase and in the advisory phase (while
//! the background refresh it woke is in flight).
//!
//! One test in this binary: the counter sees every thread, so nothing else may run beside it.

use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_async::time::TimeSource;
use entra_federation::EntraCredentialsProvider;
use futures::FutureExt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use system_tests::*;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The system clock moved ahead by a settable offset: the provider's view of time, so the test
/// can put its credentials in the advisory window on a runtime whose clock cannot be paused.
#[derive(Debug, Clone, Default)]
struct AheadBy(Arc<AtomicU64>);

impl TimeSource for AheadBy {
    fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_secs(self.0.load(Ordering::Relaxed))
    }
}

/// Calls `provider` 10,000 times in a task on the multi-threaded runtime; returns the allocations
/// counted in the whole process meanwhile and the first and last access key ids seen.
async fn warm_calls(provider: &EntraCredentialsProvider) -> (u64, Vec<String>) {
    let p = provider.clone();
    tokio::spawn(async move {
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        let mut first = None;
        let mut last = None;
        for i in 0..10_000 {
            let creds = p
                .provide_credentials()
                .now_or_never()
                .expect("ready on the first poll")
                .expect("credentials");
            if i == 0 {
                first = Some(creds);
            } else {
                last = Some(std::hint::black_box(creds));
            }
        }
        let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
        let keys = [first, last]
            .into_iter()
            .map(|c| c.expect("calls made").access_key_id().to_string())
            .collect();
        (allocated, keys)
    })
    .await
    .expect("caller task")
}

/// Runs [`warm_calls`] until a window counts no allocation anywhere in the process (at most 20
/// windows); returns every window's count. Other threads may still be finishing earlier work
/// (connection teardown after the warm-up) during a window, but a path that allocated even once
/// per 1,000 calls would count at least 10 in every window, so a zero window proves the path
/// allocates nothing.
async fn windows_until_quiet(provider: &EntraCredentialsProvider, expected_key: &str) -> Vec<u64> {
    let mut counts = Vec::new();
    for _ in 0..20 {
        let (allocated, keys) = warm_calls(provider).await;
        assert_eq!(keys, [expected_key, expected_key], "served from the cache");
        counts.push(allocated);
        if allocated == 0 {
            break;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_calls_allocate_nothing_in_the_fresh_and_advisory_phases() {
    let cloud = cloud().await;
    let ahead = AheadBy::default();
    let provider = builder_from_env(&env_of(&cloud))
        .time_source(ahead.clone())
        .build()
        .expect("provider");
    let warm = provider.provide_credentials().await.expect("warm-up");

    // Fresh: one-hour credentials just issued.
    let counts = windows_until_quiet(&provider, warm.access_key_id()).await;
    assert_eq!(
        counts.last(),
        Some(&0),
        "fresh phase: allocations in each window of 10,000 cached calls: {counts:?}"
    );

    // Advisory: 50 minutes later by the provider's clock, 10 minutes are left (the window opens
    // 15-18 minutes ahead). The first caller wakes the background refresh, which is held at STS
    // so that it stays in flight; callers meanwhile are served the cached credentials.
    let hold = cloud.hold("sts:AssumeRoleWithWebIdentity");
    ahead.0.store(50 * 60, Ordering::Relaxed);
    let c = provider
        .provide_credentials()
        .now_or_never()
        .expect("advisory: ready on the first poll")
        .expect("credentials");
    assert_eq!(c.access_key_id(), warm.access_key_id());
    within("a call at the held hop", hold.until_arrived(1)).await;
    let counts = windows_until_quiet(&provider, warm.access_key_id()).await;
    assert_eq!(
        counts.last(),
        Some(&0),
        "advisory phase: allocations in each window of 10,000 cached calls: {counts:?}"
    );
    assert_eq!(hold.arrived(), 1, "the refresh stayed in flight throughout");
    hold.release();

    // The counter does count: a cold call allocates.
    let cold = provider_from_env(&cloud);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    cold.provide_credentials().await.expect("cold call");
    assert!(ALLOCATIONS.load(Ordering::SeqCst) > before);
}
