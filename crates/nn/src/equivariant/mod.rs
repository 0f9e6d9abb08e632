//! Group-equivariant CNNs ("sparse by design", Hoelzl, Rueckert & Kaissis 2023): convolutions
//! that commute with rotations by 90 degrees (p4, [`Group::C4`]) or rotations and reflections
//! (p4m, [`Group::D4`]) of the input.
//!
//! # Regular fields
//! A feature map of `C` *regular fields* is a tensor `[B, C |G|, H, W]` whose channel
//! `c |G| + h` is copy `h` of field `c`. An element `g` moves every map in space and permutes
//! the copies of each field: `(g . F)[c, h, p] = F[c, g^{-1} h, A_g^{-1} p]`
//! ([`Group::transform_fields`]); an image transforms as scalar channels
//! ([`Group::transform_image`]).
//!
//! # The index map
//! A lifting convolution (image to fields) and a group convolution (fields to fields) are
//! ordinary convolutions with a weight `W` *expanded* from a small bank of base filters `w`:
//! copy `g` of output field `o` uses the base filter transformed by `g`,
//! `W[o |G| + g, c, p] = w[o, c, A_g^{-1} p]` (lifting) and
//! `W[o |G| + g, c |G| + h, p] = w[o, c, g^{-1} h, A_g^{-1} p]` (group conv: the transform
//! also permutes the filter's input group axis). Every entry of `W` is one entry of `w`, so
//! the expansion is a gather by a fixed index map ([`ExpansionMap`]), recorded as the weight
//! transform [`crate::WeightTransform::Expand`]: the existing conv kernels do the work, and the
//! gradient of `W` folds back onto `w` by a scatter-add (the transform's vector-Jacobian
//! product). A group conv stores `|G|` times fewer weights than the conv it applies.
//!
//! # Why norms are taken on the base parameters
//! DP-SGD bounds each example's contribution to the *trained parameters*, here the base
//! filters `w`. The per-example gradient of `w` is `J^T G_i` (the sum of the gradients of all
//! copies of each base entry), not `G_i`, and the two have different norms (copies of one base
//! entry add up before squaring). Clipping `||G_i||` would mis-state the sensitivity: the noise
//! would be calibrated to the wrong norm. The engines therefore treat expanded layers like every
//! transformed layer: they materialise `J^T G_i` for the norms (never ghost norms of `G_i`),
//! apply masks to the base parameters (the mask has the base shape), and form the clipped sum as
//! `J^T (sum_i c_i G_i)` (the same `J` for every example). See "Weight-tied layers" in the DP-SGD
//! maths notes and `docs/engines.md`.
//!
//! # Equivariant building blocks
//! - [`GroupConv2d`]: lifting or group conv, with an optional bias per *field* (`[C_out]`,
//!   broadcast over the `|G|` copies; its gradient sums the copies), exact in every engine.
//! - [`FieldGroupNorm`]: GroupNorm whose groups are whole fields, affine per field.
//! - [`group_pool`]: max or mean over the copies of each field, giving invariant maps.
//! - Pointwise nonlinearities and spatial pooling (`crate::layers`) commute with the action
//!   when the pooling windows tile a square map symmetrically (2x2 windows, stride 2, even
//!   size; global pooling always).

mod conv;
mod expand;
mod group;

pub use conv::{FieldGroupNorm, FieldInput, GroupConv2d, GroupPool, group_pool};
pub use expand::ExpansionMap;
pub use group::Group;
