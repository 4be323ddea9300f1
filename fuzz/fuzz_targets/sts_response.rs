#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // An STS answer: the first two bytes pick the HTTP status, the rest is the body.
    let (status, body) = entra_federation::fuzzing::split_status(data);
    entra_federation::fuzzing::sts_response(status, &String::from_utf8_lossy(body));
});
