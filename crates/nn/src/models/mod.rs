//! Models used in the paper setups.

mod tramer_boneh;
mod wrn;

pub use tramer_boneh::{TramerBonehCifar, TramerBonehMnist};
pub use wrn::{ResNet, ResNetConfig, WideResNet, WideResNetConfig};
