//! Integration tests of sparsedp-select.

mod select {
    mod selection;
}
