//! Integration tests of the trainer.
