//! Integration tests of sparsedp-prune: masks, scores, provenance, reports, checkpoints.

mod prune {
    mod common;
    mod io;
    mod masks;
    mod scores;
}
