//! Models used in the paper setups.

mod tramer_boneh;

pub use tramer_boneh::{TramerBonehCifar, TramerBonehMnist};
