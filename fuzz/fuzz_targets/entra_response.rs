#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // An Entra token endpoint answer: the first two bytes pick the HTTP status.
    let (status, body) = entra_federation::fuzzing::split_status(data);
    entra_federation::fuzzing::entra_response(status, body);
});
