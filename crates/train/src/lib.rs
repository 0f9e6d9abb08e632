//! # sparsedp
//!
//! The DP-SGD trainer that composes the workspace: Poisson-sampled batches
//! (`sparsedp-data`), exact per-example clipping (`sparsedp-nn`), pre-pruning and per-step
//! selection (`sparsedp-prune`, `sparsedp-select`), Gaussian noise on the active coordinates,
//! and RDP accounting (`sparsedp-accountant`). The `sparsedp` binary is its command line.

pub mod config;
pub mod models;
pub mod optim;
pub mod presets;
pub mod sparsity;
pub mod trainer;

pub use config::TrainConfig;
pub use trainer::{RunOptions, Summary, train};
