#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The credential_process cache file (after eight bytes of the invocation's time).
    token_refresher::fuzzing::credential_process_cache(data);
});
