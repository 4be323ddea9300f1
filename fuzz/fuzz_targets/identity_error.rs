#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A managed-identity endpoint's error answer; the first two bytes pick the HTTP status.
    let (status, body) = entra_federation::fuzzing::split_status(data);
    entra_federation::fuzzing::identity_error(status, body);
});
