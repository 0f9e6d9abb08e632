//! Models used in the paper setups.

mod equivariant;
mod tramer_boneh;
mod wrn;

pub use equivariant::{
    EquivariantResNet9, EquivariantResNet9Config, EquivariantTramerBoneh,
    EquivariantTramerBonehConfig,
};
pub use tramer_boneh::{TramerBonehCifar, TramerBonehMnist};
pub use wrn::{ResNet, ResNetConfig, WideResNet, WideResNetConfig};
