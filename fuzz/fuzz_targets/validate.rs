#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A bearer token as a downstream API receives it.
    entra_federation::fuzzing::validate(&String::from_utf8_lossy(data));
});
