//! The interface every model offers to training and to the clipping engines.

use crate::error::Result;
use crate::param::ParamStore;
use crate::tape::{Tape, Var};

/// A classifier: parameters plus a forward pass recorded on a tape.
///
/// `forward` must treat examples independently (no batch statistics such as BatchNorm): the
/// clipping engines rely on row `i` of every layer's output gradient depending on example `i`
/// only, and DP-SGD's privacy analysis relies on it too (see `docs/engines.md`).
pub trait Model: Send + Sync {
    /// The parameters, in registration order.
    fn params(&self) -> &ParamStore;
    /// Mutable parameters (for updates and loading).
    fn params_mut(&mut self) -> &mut ParamStore;
    /// Records the forward pass of input `x` (`[B, C, H, W]`) and returns the logits `[B, K]`.
    fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var>;
    /// Expected input shape of one example, `[C, H, W]`.
    fn input_shape(&self) -> [usize; 3];
    /// Number of classes.
    fn num_classes(&self) -> usize;
}
