#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    miniplm_core_fuzz::run(miniplm_core_fuzz::Target::ScoreRun, data);
});
