#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // An Agent ID sidecar `/AuthorizationHeader*` answer.
    entra_federation::fuzzing::sidecar_response(&String::from_utf8_lossy(data));
});
