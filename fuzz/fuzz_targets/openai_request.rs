//! libFuzzer entry for `switchyard_fuzz_checks::check_openai_request` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: switchyard_fuzz_checks::warm_up("openai_request"),
    |data: &[u8]| switchyard_fuzz_checks::check_openai_request(data)
);
