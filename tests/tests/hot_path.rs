//! The cached `provide_credentials` allocates nothing and completes on its first poll.

use aws_credential_types::provider::ProvideCredentials;
use futures::FutureExt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use system_tests::*;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[tokio::test]
async fn warm_calls_allocate_nothing_and_never_await() {
    let cloud = cloud().await;
    let provider = provider_from_env(&cloud);
    provider.provide_credentials().await.expect("warm-up");
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..10_000 {
        let creds = provider
            .provide_credentials()
            .now_or_never()
            .expect("ready on the first poll")
            .expect("credentials");
        std::hint::black_box(creds);
    }
    let allocated = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(
        allocated, 0,
        "10,000 cached calls allocated {allocated} times"
    );
    // The counter does count: a cold call allocates.
    let cold = provider_from_env(&cloud);
    let before = ALLOCATIONS.with(Cell::get);
    let _ = cold.provide_credentials().await;
    assert!(ALLOCATIONS.with(Cell::get) > before);
}
