#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A managed-identity token answer (Container Apps endpoint or IMDS).
    entra_federation::fuzzing::identity_response(data);
});
