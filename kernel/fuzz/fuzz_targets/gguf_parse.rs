//! Feeds arbitrary bytes to the GGUF reader. It must return Ok or a typed error — never panic, hang or read out of
//! bounds — and whatever it accepts must be self-consistent.
#![no_main]

use hearth_kernel::gguf::Gguf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(file) = Gguf::parse(bytes) else { return };
    for entry in file.metadata() {
        if let Some(array) = entry.value.as_array() {
            assert_eq!(array.iter().count(), array.len());
        }
    }
    for t in file.tensors() {
        assert_eq!(t.data.len(), t.n_rows() * t.row_bytes());
        assert_eq!(file.tensor(t.name).map(|found| found.offset), Some(t.offset));
    }
});
