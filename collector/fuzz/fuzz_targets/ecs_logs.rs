// Placeholder so the crate builds: the ECS agent log fuzz target is written separately and
// replaces this file.
#![no_main]
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
