#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // An Agent ID sidecar error answer; the first two bytes pick the HTTP status.
    let (status, body) = entra_federation::fuzzing::split_status(data);
    entra_federation::fuzzing::sidecar_error(status, &String::from_utf8_lossy(body));
});
