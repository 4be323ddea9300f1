#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A chat question whose city the direct mode looks for.
    llm_agent::fuzzing::city(&String::from_utf8_lossy(data));
});
