//! Fuzz target `chat_template`: see `debias_guard_testkit::fuzz_entry::Target::ChatTemplate`.
#![no_main]

use debias_guard_testkit::fuzz_entry::Target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Ok or a typed error are both fine; a panic, hang or huge allocation is a finding.
    let _ = Target::ChatTemplate.run(data);
});
