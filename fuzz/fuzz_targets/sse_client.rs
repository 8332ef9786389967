//! libFuzzer entry for `switchyard_fuzz_checks::check_sse_client` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: switchyard_fuzz_checks::warm_up("sse_client"),
    |data: &[u8]| switchyard_fuzz_checks::check_sse_client(data)
);
