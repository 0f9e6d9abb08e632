//! Fuzzes the CIFAR-10 and CIFAR-100 binary parsers: Ok or a typed error, never a panic; what
//! they accept has consistent sizes and in-range labels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsedp_data::formats::{CIFAR_PIXELS, CifarLayout, parse_cifar};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    for layout in [CifarLayout::Cifar10, CifarLayout::Cifar100] {
        if let Ok(r) = parse_cifar(data, layout, Path::new("fuzz-input")) {
            let n = data.len() / layout.record_len();
            assert_eq!(r.labels.len(), n);
            assert_eq!(r.images.len(), n * CIFAR_PIXELS);
            match layout {
                CifarLayout::Cifar10 => {
                    assert!(r.labels.iter().all(|&l| l < 10));
                    assert!(r.coarse_labels.is_none());
                }
                CifarLayout::Cifar100 => {
                    assert!(r.labels.iter().all(|&l| l < 100));
                    let c = r.coarse_labels.expect("CIFAR-100 has coarse labels");
                    assert!(c.len() == n && c.iter().all(|&l| l < 20));
                }
            }
        }
    }
});
