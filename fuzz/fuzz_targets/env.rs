#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The environment the provider reads, as NAME=value lines.
    entra_federation::fuzzing::env(&String::from_utf8_lossy(data));
});
