//! Fuzz target `hf_dir`: see `debias_guard_testkit::fuzz_entry::Target::HfDir`.
#![no_main]

use debias_guard_testkit::fuzz_entry::Target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Ok or a typed error are both fine; a panic, hang or huge allocation is a finding.
    let _ = Target::HfDir.run(data);
});
