//! Group-equivariant layers on regular feature fields: lifting and group convolutions (an
//! ordinary conv through an [`ExpansionMap`] weight transform), a conv bias shared per field,
//! GroupNorm over whole fields, and pooling over the group axis to invariant features.

use super::expand::ExpansionMap;
use super::group::Group;
use crate::error::{NnError, Result};
use crate::layers::{GroupNorm, Init};
use crate::param::{ParamId, ParamRole, ParamStore};
use crate::tape::{Tape, Var};
use crate::transform::WeightTransform;
use sparsedp_tensor::{Conv2dParams, Pool2dParams, TensorRng};
use std::sync::Arc;

/// What a [`GroupConv2d`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldInput {
    /// Scalar channels (an image): a lifting convolution.
    Scalar,
    /// Regular fields of `|G|` channels each: a group convolution.
    Regular,
}

/// A lifting or group convolution with `|G|`-fold weight sharing.
///
/// Stored parameters: the base filters `name.weight` (`[c_out, c_in, k, k]` when lifting,
/// `[c_out, c_in, |G|, k, k]` between regular fields) and, optionally, one bias per output
/// field `name.bias` (`[c_out]`). The applied conv weight is `[c_out |G|, c_in (|G|), k, k]`,
/// the expansion of the base filters by every group element ([`ExpansionMap`]); output
/// channel `o |G| + g` is copy `g` of field `o`.
///
/// Equivariance is exact for square inputs, an odd square kernel, stride 1 and "same" padding
/// (`k / 2`), or a stride `s` with `(n - 1) % s == 0` (the sampled grid is symmetric).
#[derive(Debug, Clone)]
pub struct GroupConv2d {
    /// Base filters.
    pub weight: ParamId,
    /// One bias per output field, if any.
    pub bias: Option<ParamId>,
    /// Stride, padding, dilation (groups must be 1).
    pub params: Conv2dParams,
    /// The symmetry group.
    pub group: Group,
    /// Lifting or group convolution.
    pub input: FieldInput,
    /// The base-to-applied index map.
    pub map: Arc<ExpansionMap>,
}

impl GroupConv2d {
    /// A lifting convolution from `c_in` scalar channels to `c_out` regular fields.
    #[allow(clippy::too_many_arguments)]
    pub fn lifting(
        store: &mut ParamStore,
        name: &str,
        group: Group,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        params: Conv2dParams,
        bias: bool,
        init: Init,
        rng: &mut TensorRng,
    ) -> Result<Self> {
        let map = ExpansionMap::lifting(group, c_out, c_in, kernel)?;
        Self::build(
            store,
            name,
            group,
            FieldInput::Scalar,
            map,
            params,
            bias,
            init,
            rng,
        )
    }

    /// A group convolution from `c_in` to `c_out` regular fields.
    #[allow(clippy::too_many_arguments)]
    pub fn regular(
        store: &mut ParamStore,
        name: &str,
        group: Group,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        params: Conv2dParams,
        bias: bool,
        init: Init,
        rng: &mut TensorRng,
    ) -> Result<Self> {
        let map = ExpansionMap::regular(group, c_out, c_in, kernel)?;
        Self::build(
            store,
            name,
            group,
            FieldInput::Regular,
            map,
            params,
            bias,
            init,
            rng,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        store: &mut ParamStore,
        name: &str,
        group: Group,
        input: FieldInput,
        map: ExpansionMap,
        params: Conv2dParams,
        bias: bool,
        init: Init,
        rng: &mut TensorRng,
    ) -> Result<Self> {
        if params.groups != 1 {
            return Err(NnError::InvalidConfig(format!(
                "group conv {name}: channel groups are not supported"
            )));
        }
        let s = map.shape().to_vec();
        // Initialise as the applied conv would be: its fan-in and fan-out.
        let (fan_in, fan_out) = (s[1] * s[2] * s[3], s[0] * s[2] * s[3]);
        let w = init.weight(map.base_shape(), fan_in, fan_out, rng)?;
        let weight = store.add(format!("{name}.weight"), w, ParamRole::Weight)?;
        let bias = if bias {
            let b = init.bias(map.base_shape()[0], fan_in, rng)?;
            Some(store.add(format!("{name}.bias"), b, ParamRole::Bias)?)
        } else {
            None
        };
        Ok(GroupConv2d {
            weight,
            bias,
            params,
            group,
            input,
            map: Arc::new(map),
        })
    }

    /// The weight transform that expands the base filters.
    pub fn transform(&self) -> WeightTransform {
        WeightTransform::Expand(Arc::clone(&self.map))
    }

    /// Output fields.
    pub fn out_fields(&self) -> usize {
        self.map.base_shape()[0]
    }

    /// Forward: `[B, c_in (|G|), H, W] -> [B, c_out |G|, H', W']`.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        tape.conv2d_field_bias(
            x,
            self.weight,
            self.bias,
            self.params,
            Some(self.transform()),
            self.group.order(),
        )
    }
}

/// GroupNorm whose groups are made of whole regular fields, with one affine scale and shift
/// per field (`[fields]` each), so that it commutes with the group action. Implemented as the
/// ordinary GroupNorm on the view `[B, fields, |G| H, W]` of `[B, fields |G|, H, W]`.
#[derive(Debug, Clone)]
pub struct FieldGroupNorm {
    /// The GroupNorm over fields.
    pub norm: GroupNorm,
    /// Channels per field, `|G|`.
    pub order: usize,
}

impl FieldGroupNorm {
    /// Registers `name.weight` and `name.bias` (`[fields]`); `groups` must divide `fields`.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        group: Group,
        fields: usize,
        groups: usize,
    ) -> Result<Self> {
        Ok(FieldGroupNorm {
            norm: GroupNorm::new(store, name, fields, groups)?,
            order: group.order(),
        })
    }

    /// Forward on `[B, fields |G|, H, W]`.
    pub fn forward(&self, tape: &mut Tape<'_>, x: Var) -> Result<Var> {
        let s = tape.value(x).shape().to_vec();
        if s.len() != 4 || !s[1].is_multiple_of(self.order) {
            return Err(NnError::InvalidBatch(format!(
                "field group norm expects [B, C * {}, H, W], got {s:?}",
                self.order
            )));
        }
        let v = tape.reshape(x, &[s[0], s[1] / self.order, self.order * s[2], s[3]])?;
        let y = self.norm.forward(tape, v)?;
        tape.reshape(y, &s)
    }
}

/// How [`group_pool`] reduces the `|G|` copies of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPool {
    /// Maximum over the group axis.
    Max,
    /// Mean over the group axis.
    Mean,
}

/// Pools regular fields `[B, C |G|, H, W]` over the group axis to `[B, C, H, W]`: each output
/// map is invariant to the group's permutation of the copies and transforms as a scalar field.
/// Recorded as a reshape to `[B, C, |G|, H W]` and a `|G| x 1` pooling window.
pub fn group_pool(tape: &mut Tape<'_>, x: Var, group: Group, how: GroupPool) -> Result<Var> {
    let s = tape.value(x).shape().to_vec();
    let g = group.order();
    if s.len() != 4 || !s[1].is_multiple_of(g) {
        return Err(NnError::InvalidBatch(format!(
            "group pooling expects [B, C * {g}, H, W], got {s:?}"
        )));
    }
    let (c, hw) = (s[1] / g, s[2] * s[3]);
    let v = tape.reshape(x, &[s[0], c, g, hw])?;
    let p = Pool2dParams {
        kernel: [g, 1],
        stride: [g, 1],
        padding: [0, 0],
    };
    let y = match how {
        GroupPool::Max => tape.max_pool2d(v, p)?,
        GroupPool::Mean => tape.avg_pool2d(v, p)?,
    };
    tape.reshape(y, &[s[0], c, s[2], s[3]])
}
