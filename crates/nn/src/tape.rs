//! Reverse-mode tape autograd.
//!
//! A [`Tape`] records a forward pass as a list of nodes, each holding its value and the operation
//! that made it. [`Tape::backward`] walks the list in reverse, giving every node the gradient of
//! the (seeded) output with respect to it, one readable backward per operation.
//!
//! Parameters are not nodes: parametric operations (linear, conv2d, group-norm affine) refer to
//! the model's [`ParamStore`] by [`ParamId`] and are recorded as **layers** ([`LayerRecord`]):
//! the saved input activation and, after backward, the gradient with respect to the layer's
//! output. This is what DP-SGD needs: per-example weight gradients are `g_i a_i^T`, so the
//! clipping engines (`crate::engine`) work from these records instead of from summed gradients.
//!
//! Examples never interact in any operation offered here (no batch statistics), so the gradient
//! of `sum_i w_i loss_i` with respect to a layer output holds, in row `i`, exactly
//! `w_i d loss_i / d output_i`: one backward pass yields every example's output gradients.

use crate::error::{NnError, Result};
use crate::param::{ParamId, ParamStore};
use crate::transform::WeightTransform;
use rayon::prelude::*;
use sparsedp_tensor::{Conv2dParams, Pool2dParams, Tensor, UnaryOp};
use std::borrow::Cow;
use std::sync::Arc;

/// A value recorded on a tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Var(usize);

/// What kind of parametric layer a [`LayerRecord`] describes.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    /// `y = x W^T + b`, `x: [B, d]`, `W: [p, d]`.
    Linear,
    /// 2-D convolution with the given hyper-parameters and kernel size.
    Conv2d {
        /// Stride, padding, dilation, groups.
        params: Conv2dParams,
        /// Kernel height and width.
        kernel: [usize; 2],
    },
    /// Group normalisation's per-channel affine map `y = gamma * xhat + beta`.
    GroupNormAffine {
        /// Number of groups.
        groups: usize,
    },
}

/// A parametric layer as seen by the clipping engines.
#[derive(Debug, Clone)]
pub struct LayerRecord {
    /// Kind and hyper-parameters.
    pub kind: LayerKind,
    /// The weight (or gamma) parameter.
    pub weight: ParamId,
    /// The bias (or beta) parameter, if any.
    pub bias: Option<ParamId>,
    /// Consecutive output channels that share one bias entry: `|G|` for a group-equivariant
    /// conv whose bias is one value per regular field (bias `[O / |G|]`), else 1. Bias
    /// gradients of the output channels are summed over each field.
    pub bias_field: usize,
    /// Maps the stored weight to the one the layer applies (e.g. weight standardisation).
    pub transform: Option<WeightTransform>,
    /// The activation the weight multiplies: the layer input (linear, conv) or the normalised
    /// input `xhat` (group-norm affine).
    pub input: Tensor,
    /// Gradient of the seeded output with respect to the layer output, filled by backward.
    pub grad_output: Option<Tensor>,
}

/// What [`Tape::backward`] computes for parametric layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackwardMode {
    /// Batch gradients of every parameter (and the layer records' output gradients).
    Full,
    /// Only the layer records' output gradients (and input gradients to propagate them); no
    /// weight gradients. The clipping engines form clipped weight gradients themselves.
    RecordOnly,
}

#[derive(Debug, Clone)]
enum Op {
    Leaf,
    /// Identity (activations and normalisations of a linearised tape).
    Identity(Var),
    Unary(Var, UnaryOp),
    Add(Var, Var),
    Mul(Var, Var),
    Scale(Var, f32),
    Reshape(Var),
    MaxPool(Var, Pool2dParams),
    AvgPool(Var, Pool2dParams),
    /// Mean over the spatial axes of `[B, C, H, W]` to `[B, C]`.
    SpatialMean(Var),
    Linear(Var, usize),
    Conv2d(Var, usize),
    /// Normalisation without affine (its output feeds the affine layer).
    GroupNorm {
        x: Var,
        rstd: Arc<Tensor>,
    },
    GroupNormAffine(Var, usize),
    Dropout(Var, Arc<Tensor>),
    /// Per-example cross-entropy losses of logits `[B, K]` against labels.
    CrossEntropy(Var, Vec<usize>),
}

#[derive(Debug, Clone)]
struct Node {
    /// The value, unless it moved into a layer record (`in_record`): a parametric layer's
    /// input is stored once, in its record, not copied.
    value: Tensor,
    op: Op,
    in_record: Option<usize>,
}

/// Batch gradients of parameters, indexed like the [`ParamStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients(pub Vec<Option<Tensor>>);

impl Gradients {
    /// The gradient of parameter `id` (`None` if it did not take part).
    pub fn get(&self, id: ParamId) -> Option<&Tensor> {
        self.0.get(id.0).and_then(|g| g.as_ref())
    }
}

/// A recording of one forward pass over a model's parameters.
#[derive(Debug)]
pub struct Tape<'a> {
    params: &'a ParamStore,
    nodes: Vec<Node>,
    layers: Vec<LayerRecord>,
    linearized: bool,
}

impl<'a> Tape<'a> {
    /// An empty tape over `params`.
    pub fn new(params: &'a ParamStore) -> Self {
        Tape {
            params,
            nodes: Vec::new(),
            layers: Vec::new(),
            linearized: false,
        }
    }

    /// A tape on which activations and normalisations (weight standardisation included) are the
    /// identity, so the recorded network is linear in each weight (pooling, the affine maps and
    /// weight tying stay). SynFlow (Tanaka et al. 2020)
    /// scores parameters on such a network with absolute weights and an all-ones input.
    pub fn linearized(params: &'a ParamStore) -> Self {
        Tape {
            linearized: true,
            ..Tape::new(params)
        }
    }

    /// Whether this tape is linearised.
    pub fn is_linearized(&self) -> bool {
        self.linearized
    }

    /// The parameters this tape reads.
    pub fn params(&self) -> &'a ParamStore {
        self.params
    }

    fn push(&mut self, value: Tensor, op: Op) -> Var {
        self.nodes.push(Node {
            value,
            op,
            in_record: None,
        });
        Var(self.nodes.len() - 1)
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> &Tensor {
        let node = &self.nodes[v.0];
        match node.in_record {
            None => &node.value,
            Some(l) => &self.layers[l].input,
        }
    }

    /// The parametric layers recorded so far, in forward order.
    pub fn layers(&self) -> &[LayerRecord] {
        &self.layers
    }

    /// Frees every recorded value except the layer records (their inputs and output
    /// gradients). For engines that need nothing but the records after the first backward
    /// (book-keeping, materialise): the activations are the largest part of a step's memory.
    /// Afterwards the tape holds no nodes; `backward` refuses to run and `value` must not be
    /// called.
    pub(crate) fn release_activations(&mut self) {
        self.nodes = Vec::new();
    }

    /// Frees layer `l`'s recorded input and output gradient (the record keeps its kind and
    /// parameters). The engines call this only for a layer whose per-example gradients they
    /// already hold and whose input and output gradient they will not read again.
    pub(crate) fn release_layer_record(&mut self, l: usize) {
        if let Some(rec) = self.layers.get_mut(l) {
            rec.input = Tensor::zeros(&[0]);
            rec.grad_output = None;
        }
    }

    /// Whether `v` is a recorded input ([`Tape::input`]): gradients with respect to data are
    /// never returned, so parametric layers skip computing them.
    fn is_leaf(&self, v: Var) -> bool {
        matches!(self.nodes[v.0].op, Op::Leaf)
    }

    /// Records an input (data; no gradient flows into it).
    pub fn input(&mut self, x: Tensor) -> Var {
        self.push(x, Op::Leaf)
    }

    /// Elementwise activation.
    pub fn unary(&mut self, x: Var, op: UnaryOp) -> Var {
        if self.linearized {
            let y = self.value(x).clone();
            return self.push(y, Op::Identity(x));
        }
        let y = self.value(x).unary(op);
        self.push(y, Op::Unary(x, op))
    }

    /// `tanh(x)`.
    pub fn tanh(&mut self, x: Var) -> Var {
        self.unary(x, UnaryOp::Tanh)
    }

    /// `relu(x)`.
    pub fn relu(&mut self, x: Var) -> Var {
        self.unary(x, UnaryOp::Relu)
    }

    /// Broadcasting sum (e.g. residual connections).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let y = self.value(a).add(self.value(b))?;
        Ok(self.push(y, Op::Add(a, b)))
    }

    /// Broadcasting product.
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        let y = self.value(a).mul(self.value(b))?;
        Ok(self.push(y, Op::Mul(a, b)))
    }

    /// `s * x`.
    pub fn scale(&mut self, x: Var, s: f32) -> Var {
        let y = self.value(x).scale(s);
        self.push(y, Op::Scale(x, s))
    }

    /// Reshape (e.g. flatten `[B, C, H, W]` to `[B, C*H*W]`).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let y = self.value(x).reshape(shape)?;
        Ok(self.push(y, Op::Reshape(x)))
    }

    /// Flattens all but the first axis.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let s = self.value(x).shape();
        let b = *s
            .first()
            .ok_or_else(|| NnError::InvalidBatch("cannot flatten a scalar".to_string()))?;
        let rest = s[1..].iter().product();
        self.reshape(x, &[b, rest])
    }

    /// Max pooling.
    pub fn max_pool2d(&mut self, x: Var, p: Pool2dParams) -> Result<Var> {
        let y = self.value(x).max_pool2d(p)?;
        Ok(self.push(y, Op::MaxPool(x, p)))
    }

    /// Average pooling.
    pub fn avg_pool2d(&mut self, x: Var, p: Pool2dParams) -> Result<Var> {
        let y = self.value(x).avg_pool2d(p)?;
        Ok(self.push(y, Op::AvgPool(x, p)))
    }

    /// Global average pooling, `[B, C, H, W] -> [B, C]`.
    pub fn spatial_mean(&mut self, x: Var) -> Result<Var> {
        let s = self.value(x).shape().to_vec();
        if s.len() != 4 {
            return Err(NnError::InvalidBatch(format!(
                "spatial_mean expects [B, C, H, W], got {s:?}"
            )));
        }
        let y = self
            .value(x)
            .reshape(&[s[0], s[1], s[2] * s[3]])?
            .mean_axis(2, false)?;
        Ok(self.push(y, Op::SpatialMean(x)))
    }

    /// Inverted dropout with keep-mask `keep` (0/1, same shape as `x`) and rate `rate`:
    /// `y = x * keep / (1 - rate)`.
    pub fn dropout(&mut self, x: Var, keep: Tensor, rate: f32) -> Result<Var> {
        let scaled = keep.scale(1.0 / (1.0 - rate));
        let y = self.value(x).mul(&scaled)?;
        Ok(self.push(y, Op::Dropout(x, Arc::new(scaled))))
    }

    fn weight(&self, id: ParamId, transform: &Option<WeightTransform>) -> Result<Cow<'a, Tensor>> {
        let w = self.params.value(id);
        match transform {
            None => Ok(Cow::Borrowed(w)),
            // A linearised tape bypasses normalisations, weight standardisation included.
            Some(t) if self.linearized && t.is_normalization() => Ok(Cow::Borrowed(w)),
            Some(t) => Ok(Cow::Owned(t.apply(w)?)),
        }
    }

    /// `x W^T + b` with `x: [B, d]`, weight `[p, d]`, bias `[p]`.
    pub fn linear(&mut self, x: Var, weight: ParamId, bias: Option<ParamId>) -> Result<Var> {
        let w = self.params.value(weight);
        let mut y = self.value(x).matmul_t(w, false, true)?;
        if let Some(b) = bias {
            y = y.add(self.params.value(b))?;
        }
        let layer = self.record(LayerKind::Linear, weight, bias, None, x);
        Ok(self.push(y, Op::Linear(x, layer)))
    }

    /// 2-D convolution of `x: [B, C, H, W]` with weight `[O, C/groups, kh, kw]`, optionally
    /// through a weight transform (e.g. weight standardisation).
    pub fn conv2d(
        &mut self,
        x: Var,
        weight: ParamId,
        bias: Option<ParamId>,
        params: Conv2dParams,
        transform: Option<WeightTransform>,
    ) -> Result<Var> {
        self.conv2d_field_bias(x, weight, bias, params, transform, 1)
    }

    /// [`Tape::conv2d`] whose bias `[O / field]` is shared by each run of `field` consecutive
    /// output channels (one bias per regular field of a group-equivariant conv; `field == 1`
    /// is the ordinary conv). The applied weight may come from a transform (an expansion).
    pub fn conv2d_field_bias(
        &mut self,
        x: Var,
        weight: ParamId,
        bias: Option<ParamId>,
        params: Conv2dParams,
        transform: Option<WeightTransform>,
        field: usize,
    ) -> Result<Var> {
        let w = self.weight(weight, &transform)?;
        let ws = w.shape();
        if ws.len() != 4 {
            return Err(NnError::InvalidConfig(format!(
                "conv2d weight must be [O, C, kh, kw], got {ws:?}"
            )));
        }
        let kernel = [ws[2], ws[3]];
        let b = match bias {
            None => None,
            Some(b) if field == 1 => Some(Cow::Borrowed(self.params.value(b))),
            Some(b) => {
                let bv = self.params.value(b);
                if field == 0 || bv.numel() * field != ws[0] {
                    return Err(NnError::InvalidConfig(format!(
                        "a bias of {} entries shared by fields of {field} does not fit {} \
                         output channels",
                        bv.numel(),
                        ws[0]
                    )));
                }
                let n = bv.numel();
                let full = bv.reshape(&[n, 1])?.broadcast_to(&[n, field])?;
                Some(Cow::Owned(full.into_reshape(&[n * field])?))
            }
        };
        let y = self.value(x).conv2d(&w, b.as_deref(), params)?;
        let layer = self.record(
            LayerKind::Conv2d { params, kernel },
            weight,
            bias,
            transform,
            x,
        );
        self.layers[layer].bias_field = field;
        Ok(self.push(y, Op::Conv2d(x, layer)))
    }

    /// Group normalisation with affine parameters `gamma`, `beta` (`[C]` each).
    pub fn group_norm(
        &mut self,
        x: Var,
        groups: usize,
        gamma: ParamId,
        beta: ParamId,
        eps: f32,
    ) -> Result<Var> {
        let normalised = if self.linearized {
            let y = self.value(x).clone();
            self.push(y, Op::Identity(x))
        } else {
            let out = self.value(x).group_norm(groups, None, None, eps)?;
            self.push(
                out.xhat,
                Op::GroupNorm {
                    x,
                    rstd: Arc::new(out.rstd),
                },
            )
        };
        let xhat = self.value(normalised);
        let c = xhat.shape()[1];
        let bshape = broadcast_channel_shape(xhat.shape());
        let g = self.params.value(gamma).reshape(&bshape)?;
        let b = self.params.value(beta).reshape(&bshape)?;
        if self.params.value(gamma).shape() != [c] || self.params.value(beta).shape() != [c] {
            return Err(NnError::InvalidConfig(format!(
                "group norm affine parameters must have shape [{c}]"
            )));
        }
        let y = xhat.mul(&g)?.add(&b)?;
        let layer = self.record(
            LayerKind::GroupNormAffine { groups },
            gamma,
            Some(beta),
            None,
            normalised,
        );
        Ok(self.push(y, Op::GroupNormAffine(normalised, layer)))
    }

    /// Per-example cross-entropy losses `[B]` of logits `[B, K]` against `labels`.
    pub fn cross_entropy(&mut self, logits: Var, labels: &[usize]) -> Result<Var> {
        let y = self.value(logits).cross_entropy(labels)?;
        Ok(self.push(y, Op::CrossEntropy(logits, labels.to_vec())))
    }

    fn record(
        &mut self,
        kind: LayerKind,
        weight: ParamId,
        bias: Option<ParamId>,
        transform: Option<WeightTransform>,
        input: Var,
    ) -> usize {
        let layer = self.layers.len();
        // Move the input into the record (the node then reads it from there); clone only when
        // an earlier layer already holds it (one activation feeding two parametric layers).
        let node = &mut self.nodes[input.0];
        let value = match node.in_record {
            None => {
                node.in_record = Some(layer);
                std::mem::replace(&mut node.value, Tensor::zeros(&[0]))
            }
            Some(_) => self.value(input).clone(),
        };
        self.layers.push(LayerRecord {
            kind,
            weight,
            bias,
            bias_field: 1,
            transform,
            input: value,
            grad_output: None,
        });
        layer
    }

    /// Back-propagates `seed` (the gradient with respect to `root`, same shape) through the
    /// tape. Fills every layer record's `grad_output`; in [`BackwardMode::Full`] also returns the
    /// batch gradient of every parameter that took part.
    pub fn backward(&mut self, root: Var, seed: Tensor, mode: BackwardMode) -> Result<Gradients> {
        if root.0 >= self.nodes.len() {
            return Err(NnError::InvalidConfig(
                "backward on a tape whose values were released".to_string(),
            ));
        }
        if seed.shape() != self.value(root).shape() {
            return Err(NnError::InvalidConfig(format!(
                "backward seed has shape {:?}, the output {:?}",
                seed.shape(),
                self.value(root).shape()
            )));
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; root.0 + 1];
        grads[root.0] = Some(seed);
        let mut pgrads: Vec<Option<Tensor>> = vec![None; self.params.len()];
        for i in (0..=root.0).rev() {
            let Some(g) = grads[i].take() else { continue };
            let op = self.nodes[i].op.clone();
            match op {
                Op::Leaf => {}
                Op::Identity(x) => accumulate(&mut grads, x, g)?,
                Op::Unary(x, u) => {
                    let gx = match unary_backward_from_output(u, self.value(Var(i)), g) {
                        Ok(gx) => gx,
                        Err(g) => self.value(x).unary_backward(u, &g)?,
                    };
                    accumulate(&mut grads, x, gx)?;
                }
                Op::Add(a, b) => {
                    let ga = g.sum_to_shape(self.value(a).shape())?;
                    let gb = g.sum_to_shape(self.value(b).shape())?;
                    accumulate(&mut grads, a, ga)?;
                    accumulate(&mut grads, b, gb)?;
                }
                Op::Mul(a, b) => {
                    let ga = g.mul(self.value(b))?.sum_to_shape(self.value(a).shape())?;
                    let gb = g.mul(self.value(a))?.sum_to_shape(self.value(b).shape())?;
                    accumulate(&mut grads, a, ga)?;
                    accumulate(&mut grads, b, gb)?;
                }
                Op::Scale(x, s) => accumulate(&mut grads, x, g.scale(s))?,
                Op::Reshape(x) => {
                    let gx = g.into_reshape(self.value(x).shape())?;
                    accumulate(&mut grads, x, gx)?;
                }
                Op::MaxPool(x, p) => {
                    let gx = self.value(x).max_pool2d_backward(&g, p)?;
                    accumulate(&mut grads, x, gx)?;
                }
                Op::AvgPool(x, p) => {
                    let s = shape4(self.value(x).shape())?;
                    let gx = Tensor::avg_pool2d_backward(&g, s, p)?;
                    accumulate(&mut grads, x, gx)?;
                }
                Op::SpatialMean(x) => {
                    let s = self.value(x).shape().to_vec();
                    let hw = s[2] * s[3];
                    let gx = g
                        .reshape(&[s[0], s[1], 1])?
                        .broadcast_to(&[s[0], s[1], hw])?
                        .scale(1.0 / hw as f32)
                        .into_reshape(&s)?;
                    accumulate(&mut grads, x, gx)?;
                }
                Op::Dropout(x, scaled_keep) => accumulate(&mut grads, x, g.mul(&scaled_keep)?)?,
                Op::Linear(x, layer) => {
                    let rec = &self.layers[layer];
                    let w = self.params.value(rec.weight);
                    // Data leaves take no gradient: skip the input-gradient product.
                    let gx = if self.is_leaf(x) {
                        None
                    } else {
                        Some(g.matmul(w)?)
                    };
                    if mode == BackwardMode::Full {
                        let gw = g.matmul_t(&rec.input, true, false)?;
                        add_param_grad(&mut pgrads, rec.weight, gw)?;
                        if let Some(b) = rec.bias {
                            add_param_grad(&mut pgrads, b, g.sum_axis(0, false)?)?;
                        }
                    }
                    self.layers[layer].grad_output = Some(g);
                    if let Some(gx) = gx {
                        accumulate(&mut grads, x, gx)?;
                    }
                }
                Op::Conv2d(x, layer) => {
                    let rec = &self.layers[layer];
                    let LayerKind::Conv2d { params, kernel } = rec.kind else {
                        unreachable!("conv node with a non-conv record")
                    };
                    // The first conv's input is the data: no input gradient (a whole col2im,
                    // and the applied weight it needs).
                    let gx = if self.is_leaf(x) {
                        None
                    } else {
                        let w = self.weight(rec.weight, &rec.transform)?;
                        let xs = shape4(rec.input.shape())?;
                        Some(Tensor::conv2d_backward_input(
                            &g,
                            &w,
                            [xs[2], xs[3]],
                            params,
                        )?)
                    };
                    if mode == BackwardMode::Full {
                        let gw = rec.input.conv2d_backward_weight(&g, kernel, params)?;
                        let gw = match &rec.transform {
                            None => gw,
                            Some(t) if self.linearized && t.is_normalization() => gw,
                            Some(t) => t.vjp(self.params.value(rec.weight), &gw)?,
                        };
                        add_param_grad(&mut pgrads, rec.weight, gw)?;
                        if let Some(b) = rec.bias {
                            let gb = Tensor::conv2d_backward_bias(&g)?;
                            add_param_grad(&mut pgrads, b, fold_fields(gb, rec.bias_field)?)?;
                        }
                    }
                    self.layers[layer].grad_output = Some(g);
                    if let Some(gx) = gx {
                        accumulate(&mut grads, x, gx)?;
                    }
                }
                Op::GroupNormAffine(normalised, layer) => {
                    let rec = &self.layers[layer];
                    let bshape = broadcast_channel_shape(rec.input.shape());
                    let gamma = self.params.value(rec.weight).reshape(&bshape)?;
                    let gx = g.mul(&gamma)?;
                    if mode == BackwardMode::Full {
                        let s = rec.input.shape();
                        let (n, c) = (s[0], s[1]);
                        let per = |t: Tensor| -> Result<Tensor> {
                            Ok(t.reshape(&[n, c, t.numel() / (n * c)])?
                                .sum_axes(&[0, 2], false)?)
                        };
                        add_param_grad(&mut pgrads, rec.weight, per(g.mul(&rec.input)?)?)?;
                        if let Some(b) = rec.bias {
                            add_param_grad(&mut pgrads, b, per(g.clone())?)?;
                        }
                    }
                    self.layers[layer].grad_output = Some(g);
                    accumulate(&mut grads, normalised, gx)?;
                }
                Op::GroupNorm { x, rstd } => {
                    // Borrow `xhat` into the struct the kernel wants instead of copying it; the
                    // kernel does not read `output`.
                    let slot = match self.nodes[i].in_record {
                        Some(l) => &mut self.layers[l].input,
                        None => &mut self.nodes[i].value,
                    };
                    let forward = sparsedp_tensor::GroupNormOutput {
                        output: Tensor::zeros(&[0]),
                        xhat: std::mem::replace(slot, Tensor::zeros(&[0])),
                        rstd: Arc::unwrap_or_clone(rstd),
                    };
                    let result = Tensor::group_norm_backward(&g, &forward, None);
                    let slot = match self.nodes[i].in_record {
                        Some(l) => &mut self.layers[l].input,
                        None => &mut self.nodes[i].value,
                    };
                    *slot = forward.xhat;
                    accumulate(&mut grads, x, result?.input)?;
                }
                Op::CrossEntropy(logits, labels) => {
                    let gx = self.value(logits).cross_entropy_backward(&labels, &g)?;
                    accumulate(&mut grads, logits, gx)?;
                }
            }
        }
        Ok(Gradients(pgrads))
    }
}

/// `g * f'(x)` computed from the output `y = f(x)` where that is cheaper than re-evaluating
/// `f` (tanh: `1 - y^2`, sigmoid: `y (1 - y)`, relu: `[y > 0]`; the same f32 arithmetic as the
/// tensor crate's derivative, which recomputes `y` from `x`), in place in `g`'s buffer. Gives
/// `g` back for other activations or tensors not in host memory.
fn unary_backward_from_output(
    op: UnaryOp,
    y: &Tensor,
    g: Tensor,
) -> std::result::Result<Tensor, Tensor> {
    if !matches!(op, UnaryOp::Tanh | UnaryOp::Sigmoid | UnaryOp::Relu) {
        return Err(g);
    }
    let mut g = g;
    match (y.as_slice(), g.as_mut_slice()) {
        (Some(ys), Some(gs)) if ys.len() == gs.len() => {
            // Memory-bound: split across the pool like the tensor crate's elementwise kernels,
            // one monomorphic loop per activation so that each vectorises.
            const CHUNK: usize = 1 << 15;
            fn apply(gc: &mut [f32], yc: &[f32], d: impl Fn(f32) -> f32) {
                for (gv, &yv) in gc.iter_mut().zip(yc) {
                    *gv *= d(yv);
                }
            }
            gs.par_chunks_mut(CHUNK)
                .zip(ys.par_chunks(CHUNK))
                .for_each(|(gc, yc)| match op {
                    UnaryOp::Tanh => apply(gc, yc, |y| 1.0 - y * y),
                    UnaryOp::Sigmoid => apply(gc, yc, |y| y * (1.0 - y)),
                    _ => apply(gc, yc, |y| if y > 0.0 { 1.0 } else { 0.0 }),
                });
            Ok(g)
        }
        _ => Err(g),
    }
}

/// Sums the last axis of `t` (`[..., C * field]`) over runs of `field` consecutive entries,
/// giving `[..., C]`: the gradient of a bias shared per field from its expanded copies.
pub(crate) fn fold_fields(t: Tensor, field: usize) -> Result<Tensor> {
    if field == 1 {
        return Ok(t);
    }
    let mut shape = t.shape().to_vec();
    let last = shape.pop().unwrap_or(1);
    shape.extend([last / field, field]);
    let r = shape.len() - 1;
    Ok(t.into_reshape(&shape)?.sum_axis(r, false)?)
}

fn accumulate(grads: &mut [Option<Tensor>], v: Var, g: Tensor) -> Result<()> {
    match &mut grads[v.0] {
        Some(existing) => existing.add_scaled_(1.0, &g)?,
        slot @ None => *slot = Some(g),
    }
    Ok(())
}

fn add_param_grad(grads: &mut [Option<Tensor>], id: ParamId, g: Tensor) -> Result<()> {
    match &mut grads[id.0] {
        Some(existing) => existing.add_scaled_(1.0, &g)?,
        slot @ None => *slot = Some(g),
    }
    Ok(())
}

/// `[1, C, 1, ...]` for broadcasting a per-channel vector over `[B, C, ...]`.
pub(crate) fn broadcast_channel_shape(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    s[1] = shape[1];
    s
}

fn shape4(s: &[usize]) -> Result<[usize; 4]> {
    <[usize; 4]>::try_from(s)
        .map_err(|_| NnError::InvalidBatch(format!("expected a [B, C, H, W] tensor, got {s:?}")))
}
