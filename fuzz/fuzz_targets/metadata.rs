#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // An OpenID metadata document (issuer and key set URL).
    entra_federation::fuzzing::metadata(data);
});
