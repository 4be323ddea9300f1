#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // An Agent ID sidecar answer (`/AuthorizationHeader*` or `/DownstreamApi`).
    entra_federation::fuzzing::sidecar_response(&String::from_utf8_lossy(data));
});
