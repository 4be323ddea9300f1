#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A JWT read without verification (token files, identity answers, Entra's tokens).
    entra_federation::fuzzing::jwt(&String::from_utf8_lossy(data));
});
