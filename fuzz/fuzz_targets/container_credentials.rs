#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The container-credentials endpoint: its Authorization check and its answer.
    token_refresher::fuzzing::container_credentials(data);
});
