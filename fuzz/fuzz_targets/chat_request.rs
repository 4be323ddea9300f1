#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A POST /api/chat body.
    llm_agent::fuzzing::chat_request(data);
});
