#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A verified token's claims, parsed and put to a policy.
    entra_federation::fuzzing::agent_claims(data);
});
