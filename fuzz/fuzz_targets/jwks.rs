#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A key set document, as the token validator reads it.
    entra_federation::fuzzing::jwks(data);
});
