//! libFuzzer entry for `switchyard_fuzz_checks::check_structured` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: switchyard_fuzz_checks::warm_up("structured"),
    |data: &[u8]| switchyard_fuzz_checks::check_structured(data)
);
