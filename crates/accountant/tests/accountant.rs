//! Integration tests of sparsedp-accountant: golden values from independent implementations,
//! property tests, an independent numerical integration, input validation and the CLI.
//! Provenance of every pinned value is in `fixtures/README.md` of the repository.

mod accountant {
    mod cli;
    mod errors;
    mod golden;
    mod properties;
    mod quadrature;
}
