//! libFuzzer entry for `switchyard_fuzz_checks::check_kv_events` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz_checks::check_kv_events(data));
