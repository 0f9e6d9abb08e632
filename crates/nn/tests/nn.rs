//! Integration tests of sparsedp-nn: model sizes, engine equivalence, masks, transforms.

mod nn {
    mod common;
    mod engines;
    mod equivariant;
    mod gradcheck;
    mod models;
    mod wgpu;
}
