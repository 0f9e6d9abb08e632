//! Integration tests of sparsedp-data (one test binary; the modules live in `tests/data/`).

mod data {
    mod batches;
    pub mod common;
    mod full;
    mod readers;
    mod sampler;
    mod splits;
    mod transforms;
}
