//! Fuzzes the IDX parser (raw and behind gzip): it must return Ok or a typed error, never panic,
//! and what it accepts must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsedp_data::formats::{
    IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, encode_idx, maybe_gunzip, parse_idx,
};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-input");
    // Raw bytes, or whatever a gzip stream in them inflates to (bounded by the crate's limit).
    let inflated = match maybe_gunzip(data.to_vec(), path) {
        Ok(bytes) => bytes,
        Err(_) => return,
    };
    for magic in [IDX_LABELS_MAGIC, IDX_IMAGES_MAGIC] {
        if let Ok(view) = parse_idx(&inflated, magic, path) {
            assert_eq!(view.dims.len(), (magic & 0xff) as usize);
            assert_eq!(view.dims.iter().product::<usize>(), view.data.len());
            let again = encode_idx(&view.dims, view.data).expect("accepted input re-encodes");
            assert_eq!(again, inflated);
        }
    }
});
