//! libFuzzer entry for `switchyard_fuzz_checks::check_tool_parsers` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: switchyard_fuzz_checks::warm_up("tool_parsers"),
    |data: &[u8]| switchyard_fuzz_checks::check_tool_parsers(data)
);
