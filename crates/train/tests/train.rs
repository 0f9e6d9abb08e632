//! Integration tests of the trainer and the `sparsedp` command line, on the bundled MNIST
//! subset.

mod train {
    mod cli;
    mod e2e;
}
