#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A Retry-After header value (delta-seconds or an HTTP date).
    entra_federation::fuzzing::retry_after(&String::from_utf8_lossy(data));
});
