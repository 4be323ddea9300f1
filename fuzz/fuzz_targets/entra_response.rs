#![no_main]

/// The HTTP status the first two bytes pick (100-599), and the rest.
fn split_status(data: &[u8]) -> (u16, &[u8]) {
    match data {
        [a, b, rest @ ..] => (100 + u16::from_le_bytes([*a, *b]) % 500, rest),
        _ => (200, data),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // An Entra token endpoint answer: the first two bytes pick the HTTP status.
    let (status, body) = split_status(data);
    entra_federation::fuzzing::entra_response(status, body);
});
