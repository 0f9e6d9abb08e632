//! Gradient checks: the tape's gradients of every op and of small models against an
//! independent f64 reference.
//!
//! For every case the same function is written twice: once on the [`Tape`] (f32, the code under
//! test) and once here as naive f64 loops over flat arrays (conv2d with stride, padding,
//! dilation and groups; linear; max and average pooling; group norm; tanh, relu, mish, gelu,
//! sigmoid; residual add with broadcasting; product; scaling; spatial mean; dropout with a fixed
//! mask; weight standardisation, plain and scaled; summed cross-entropy). The reference is
//! evaluated on dual numbers, so each run also yields one exact directional derivative.
//! For a sample of coordinates of every parameter tensor the test then compares three numbers:
//!
//! 1. `ref`: the f64 reference's exact partial derivative (forward-mode dual numbers);
//! 2. `fd`: the central finite difference `(L(w + h) - L(w - h)) / 2h` of the f64 reference loss,
//!    `h = 1e-6 max(1, |w|)`;
//! 3. `tape`: the f32 tape gradient from `Tape::backward(.., BackwardMode::Full)`.
//!
//! and asserts, normwise over the sampled coordinates,
//! - `||fd - ref|| <= 1e-6 ||ref||`: the reference's derivative is what finite differences of
//!   the reference measure, to the 1e-6 relative (this verifies the reference and the
//!   finite-difference set-up themselves; in f64 the truncation error is O(h^2) ~ 1e-12 and the
//!   rounding error ~ 1e-16 |L| / h ~ 1e-10);
//! - `||tape - ref|| <= 1e-4 ||ref||`: the tape agrees with that verified reference;
//! - the tape's loss equals the reference loss to 1e-5 relative (same function).
//!
//! **Why 1e-4 and not 1e-6 for the tape.** The tape computes in f32 (unit roundoff
//! 6e-8). A gradient is a sum over thousands of products (a 3x3 conv over 64 channels and 64
//! positions already accumulates ~37k terms per weight, in an order BLAS chooses), and it flows
//! through normalisations that divide by small standard deviations; the resulting relative
//! error of a correct f32 gradient is typically 1e-6 to 1e-5 and can approach 1e-4 for
//! coordinates with cancellation. Checking f32 gradients to 1e-6 would fail correct code;
//! checking them against *f32* finite differences would need `h ~ 1e-2`, whose truncation error
//! hides real bugs. So the f32 autograd is checked at an f32-appropriate 1e-4 against an f64
//! reference whose own derivative is pinned to f64 finite differences at 1e-6; a wrong backward
//! (a missing term, a transposed index, a wrong scale) shows up as an O(1) relative error.
//!
//! Inputs are random normal and non-smooth ops (relu, max-pool) are evaluated where no input
//! sits within `h` of a kink (checked indirectly: a kink crossing would break the 1e-6 check).

use super::common::TinyGnNet;
use sparsedp_nn::layers::{Activation, Conv2d, GroupNorm, Init, Linear};
use sparsedp_nn::models::{ResNet, ResNetConfig, TramerBonehMnist, WideResNet, WideResNetConfig};
use sparsedp_nn::{BackwardMode, Model, ParamRole, ParamStore, Result, Tape, Var, WeightTransform};
use sparsedp_tensor::{Conv2dParams, Pool2dParams, Tensor, TensorRng, UnaryOp};
use std::ops::{Add, Div, Mul, Neg, Sub};

// ----- dual numbers ---------------------------------------------------------------------------

/// `v + d eps` with `eps^2 = 0`: f64 value and exact derivative along one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
struct D {
    v: f64,
    d: f64,
}

fn c(v: f64) -> D {
    D { v, d: 0.0 }
}

impl Add for D {
    type Output = D;
    fn add(self, o: D) -> D {
        D {
            v: self.v + o.v,
            d: self.d + o.d,
        }
    }
}
impl Sub for D {
    type Output = D;
    fn sub(self, o: D) -> D {
        D {
            v: self.v - o.v,
            d: self.d - o.d,
        }
    }
}
impl Mul for D {
    type Output = D;
    fn mul(self, o: D) -> D {
        D {
            v: self.v * o.v,
            d: self.d * o.v + self.v * o.d,
        }
    }
}
impl Div for D {
    type Output = D;
    fn div(self, o: D) -> D {
        D {
            v: self.v / o.v,
            d: (self.d * o.v - self.v * o.d) / (o.v * o.v),
        }
    }
}
impl Neg for D {
    type Output = D;
    fn neg(self) -> D {
        D {
            v: -self.v,
            d: -self.d,
        }
    }
}
impl D {
    fn exp(self) -> D {
        let e = self.v.exp();
        D {
            v: e,
            d: self.d * e,
        }
    }
    fn ln(self) -> D {
        D {
            v: self.v.ln(),
            d: self.d / self.v,
        }
    }
    fn tanh(self) -> D {
        let t = self.v.tanh();
        D {
            v: t,
            d: self.d * (1.0 - t * t),
        }
    }
    fn sqrt(self) -> D {
        let s = self.v.sqrt();
        D {
            v: s,
            d: self.d / (2.0 * s),
        }
    }
}

// ----- f64 reference ops on flat NCHW arrays -------------------------------------------------

/// A flat array with its shape.
#[derive(Debug, Clone)]
struct A {
    v: Vec<D>,
    s: Vec<usize>,
}

impl A {
    fn from_tensor(t: &Tensor) -> A {
        A {
            v: t.to_vec().iter().map(|&x| c(f64::from(x))).collect(),
            s: t.shape().to_vec(),
        }
    }
    fn map(&self, f: impl Fn(D) -> D) -> A {
        A {
            v: self.v.iter().map(|&x| f(x)).collect(),
            s: self.s.clone(),
        }
    }
    fn flat(mut self) -> A {
        let n = self.s[0];
        self.s = vec![n, self.v.len() / n];
        self
    }
}

fn conv2d(x: &A, w: &[D], ws: &[usize], b: Option<&[D]>, p: Conv2dParams) -> A {
    let [n, ch, h, wd] = x.s[..] else {
        panic!("x rank")
    };
    let (o, cpg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let groups = p.groups;
    assert_eq!(cpg * groups, ch);
    let opg = o / groups;
    let oh = (h + 2 * p.padding[0] - p.dilation[0] * (kh - 1) - 1) / p.stride[0] + 1;
    let ow = (wd + 2 * p.padding[1] - p.dilation[1] * (kw - 1) - 1) / p.stride[1] + 1;
    let mut out = vec![c(0.0); n * o * oh * ow];
    for ni in 0..n {
        for oc in 0..o {
            let g = oc / opg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b.map_or(c(0.0), |b| b[oc]);
                    for ic in 0..cpg {
                        let xc = g * cpg + ic;
                        for ky in 0..kh {
                            let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize
                                - p.padding[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize
                                    - p.padding[1] as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x.v[((ni * ch + xc) * h + iy as usize) * wd + ix as usize];
                                let wv = w[((oc * cpg + ic) * kh + ky) * kw + kx];
                                acc = acc + xv * wv;
                            }
                        }
                    }
                    out[((ni * o + oc) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    A {
        v: out,
        s: vec![n, o, oh, ow],
    }
}

fn linear(x: &A, w: &[D], out: usize, b: Option<&[D]>) -> A {
    let (n, d) = (x.s[0], x.s[1]);
    let mut y = vec![c(0.0); n * out];
    for i in 0..n {
        for j in 0..out {
            let mut acc = b.map_or(c(0.0), |b| b[j]);
            for k in 0..d {
                acc = acc + x.v[i * d + k] * w[j * d + k];
            }
            y[i * out + j] = acc;
        }
    }
    A {
        v: y,
        s: vec![n, out],
    }
}

/// Max (`max = true`, padding ignored) or average (divisor `kh * kw`, padding as zeros) pooling.
fn pool(x: &A, p: Pool2dParams, max: bool) -> A {
    let [n, ch, h, w] = x.s[..] else {
        panic!("x rank")
    };
    let [kh, kw] = p.kernel;
    let oh = (h + 2 * p.padding[0] - kh) / p.stride[0] + 1;
    let ow = (w + 2 * p.padding[1] - kw) / p.stride[1] + 1;
    let mut out = Vec::with_capacity(n * ch * oh * ow);
    for plane in 0..n * ch {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best: Option<D> = None;
                let mut sum = c(0.0);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (oy * p.stride[0] + ky) as isize - p.padding[0] as isize;
                        let ix = (ox * p.stride[1] + kx) as isize - p.padding[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x.v[(plane * h + iy as usize) * w + ix as usize];
                        sum = sum + v;
                        if best.is_none_or(|b| v.v > b.v) {
                            best = Some(v);
                        }
                    }
                }
                out.push(if max {
                    best.expect("window overlaps the input")
                } else {
                    sum / c((kh * kw) as f64)
                });
            }
        }
    }
    A {
        v: out,
        s: vec![n, ch, oh, ow],
    }
}

/// Group norm (biased variance, eps inside the square root) with affine `gamma`, `beta`.
fn group_norm(x: &A, groups: usize, gamma: &[D], beta: &[D], eps: f64) -> A {
    let (n, ch) = (x.s[0], x.s[1]);
    let sp = x.v.len() / (n * ch);
    let cpg = ch / groups;
    let mut y = x.v.clone();
    for ni in 0..n {
        for g in 0..groups {
            let lo = (ni * ch + g * cpg) * sp;
            let hi = lo + cpg * sp;
            let m = c((hi - lo) as f64);
            let mean = x.v[lo..hi].iter().fold(c(0.0), |a, &v| a + v) / m;
            let var = x.v[lo..hi]
                .iter()
                .fold(c(0.0), |a, &v| a + (v - mean) * (v - mean))
                / m;
            let inv = c(1.0) / (var + c(eps)).sqrt();
            for (j, yv) in y[lo..hi].iter_mut().enumerate() {
                let ci = g * cpg + j / sp;
                *yv = (x.v[lo + j] - mean) * inv * gamma[ci] + beta[ci];
            }
        }
    }
    A {
        v: y,
        s: x.s.clone(),
    }
}

fn act(x: &A, op: UnaryOp) -> A {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    x.map(|v| match op {
        UnaryOp::Relu => {
            if v.v > 0.0 {
                v
            } else {
                c(0.0)
            }
        }
        UnaryOp::Tanh => v.tanh(),
        UnaryOp::Sigmoid => c(1.0) / (c(1.0) + (-v).exp()),
        UnaryOp::Mish => v * (c(1.0) + v.exp()).ln().tanh(),
        UnaryOp::Gelu => c(0.5) * v * (c(1.0) + (c(k) * (v + c(0.044_715) * v * v * v)).tanh()),
        other => panic!("no reference for {other:?}"),
    })
}

fn activation(x: &A, a: Activation) -> A {
    act(
        x,
        match a {
            Activation::Relu => UnaryOp::Relu,
            Activation::Tanh => UnaryOp::Tanh,
            Activation::Mish => UnaryOp::Mish,
            Activation::Gelu => UnaryOp::Gelu,
        },
    )
}

fn add(a: &A, b: &A) -> A {
    assert_eq!(a.s, b.s);
    A {
        v: a.v.iter().zip(&b.v).map(|(&x, &y)| x + y).collect(),
        s: a.s.clone(),
    }
}

/// `[N, C, H, W] -> [N, C]`.
fn spatial_mean(x: &A) -> A {
    let (n, ch) = (x.s[0], x.s[1]);
    let sp = x.v.len() / (n * ch);
    let v =
        x.v.chunks(sp)
            .map(|p| p.iter().fold(c(0.0), |a, &v| a + v) / c(sp as f64))
            .collect();
    A { v, s: vec![n, ch] }
}

/// Weight standardisation of `[O, d]` rows: `(w - mean) / sqrt(scale * var + eps)`, `scale` 1
/// (plain) or `d` (scaled).
fn standardize(w: &[D], o: usize, eps: f64, scaled: bool) -> Vec<D> {
    let d = w.len() / o;
    let scale = if scaled { d as f64 } else { 1.0 };
    w.chunks(d)
        .flat_map(|row| {
            let n = c(d as f64);
            let mean = row.iter().fold(c(0.0), |a, &v| a + v) / n;
            let var = row.iter().fold(c(0.0), |a, &v| a + (v - mean) * (v - mean)) / n;
            let inv = c(1.0) / (c(scale) * var + c(eps)).sqrt();
            row.iter()
                .map(move |&v| (v - mean) * inv)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn transformed(w: &[D], o: usize, t: Option<WeightTransform>) -> Vec<D> {
    match t {
        None => w.to_vec(),
        Some(WeightTransform::Standardize { eps }) => standardize(w, o, f64::from(eps), false),
        Some(WeightTransform::ScaledStandardize { eps }) => standardize(w, o, f64::from(eps), true),
        Some(WeightTransform::Expand(map)) => {
            map.sources().iter().map(|&i| w[i as usize]).collect()
        }
    }
}

/// Summed cross-entropy of logits `[N, K]`.
fn cross_entropy_sum(z: &A, labels: &[usize]) -> D {
    let k = z.s[1];
    let mut total = c(0.0);
    for (row, &l) in z.v.chunks(k).zip(labels) {
        let m = row
            .iter()
            .copied()
            .fold(row[0], |a, v| if v.v > a.v { v } else { a });
        let lse = m + row.iter().fold(c(0.0), |a, &v| a + (v - m).exp()).ln();
        total = total + lse - row[l];
    }
    total
}

// ----- the harness ----------------------------------------------------------------------------

/// Parameter values as dual numbers, indexed like the store, with name lookup.
struct P<'a> {
    store: &'a ParamStore,
    v: Vec<Vec<D>>,
}

impl P<'_> {
    fn get(&self, name: &str) -> &[D] {
        let id = self
            .store
            .find(name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        &self.v[id.0]
    }
    fn opt(&self, name: &str) -> Option<&[D]> {
        self.store.find(name).map(|id| &self.v[id.0][..])
    }
    fn shape(&self, name: &str) -> Vec<usize> {
        self.store
            .value(self.store.find(name).expect("parameter"))
            .shape()
            .to_vec()
    }
    /// Conv `name` (weight, optional bias) through weight transform `t`.
    fn conv(&self, name: &str, x: &A, p: Conv2dParams, t: Option<WeightTransform>) -> A {
        let ws = self.shape(&format!("{name}.weight"));
        let w = transformed(self.get(&format!("{name}.weight")), ws[0], t);
        conv2d(x, &w, &ws, self.opt(&format!("{name}.bias")), p)
    }
    fn linear(&self, name: &str, x: &A) -> A {
        let ws = self.shape(&format!("{name}.weight"));
        linear(
            x,
            self.get(&format!("{name}.weight")),
            ws[0],
            self.opt(&format!("{name}.bias")),
        )
    }
    fn gn(&self, name: &str, x: &A, groups: usize) -> A {
        group_norm(
            x,
            groups,
            self.get(&format!("{name}.weight")),
            self.get(&format!("{name}.bias")),
            1e-5,
        )
    }
}

type TapeFn<'f> = &'f dyn Fn(&mut Tape<'_>, Var) -> Result<Var>;
type RefFn<'f> = &'f dyn Fn(&P<'_>, &A) -> A;

/// Checks the tape's gradients of `sum_i CE(logits_i, labels_i)` against the f64 reference, on
/// up to `per_tensor` coordinates of every parameter tensor (see the module docs).
fn check(
    name: &str,
    store: &ParamStore,
    x: &Tensor,
    labels: &[usize],
    per_tensor: usize,
    tape_fn: TapeFn<'_>,
    ref_fn: RefFn<'_>,
) {
    // The code under test.
    let mut tape = Tape::new(store);
    let xi = tape.input(x.clone());
    let logits = tape_fn(&mut tape, xi).unwrap();
    let loss = tape.cross_entropy(logits, labels).unwrap();
    let tape_loss: f64 = tape
        .value(loss)
        .to_vec()
        .iter()
        .map(|&v| f64::from(v))
        .sum();
    let grads = tape
        .backward(loss, Tensor::ones(&[labels.len()]), BackwardMode::Full)
        .unwrap();

    // The reference.
    let xa = A::from_tensor(x);
    let mut p = P {
        store,
        v: store
            .iter()
            .map(|(_, prm)| A::from_tensor(&prm.value).v)
            .collect(),
    };
    let eval = |p: &P<'_>| cross_entropy_sum(&ref_fn(p, &xa), labels);
    let l0 = eval(&p).v;
    assert!(
        (l0 - tape_loss).abs() <= 1e-5 * l0.abs().max(1.0),
        "{name}: reference loss {l0} vs tape loss {tape_loss}"
    );

    let mut rng = TensorRng::seeded(0x9c);
    let (mut r, mut f, mut t) = (Vec::new(), Vec::new(), Vec::new());
    let mut per = Vec::new();
    for (id, prm) in store.iter() {
        let n = prm.value.numel();
        let take = per_tensor.min(n);
        let offset = (Tensor::rand_uniform(&[1], 0.0, 1.0, &mut rng)
            .unwrap()
            .to_vec()[0]
            * n as f32) as usize;
        let g32 = grads.get(id).map(Tensor::to_vec);
        let start = r.len();
        for s in 0..take {
            let j = (offset + s * n / take) % n;
            let w = p.v[id.0][j].v;
            p.v[id.0][j].d = 1.0;
            r.push(eval(&p).d);
            p.v[id.0][j].d = 0.0;
            let h = 1e-6 * w.abs().max(1.0);
            p.v[id.0][j].v = w + h;
            let up = eval(&p).v;
            p.v[id.0][j].v = w - h;
            let down = eval(&p).v;
            p.v[id.0][j].v = w;
            f.push((up - down) / (2.0 * h));
            t.push(g32.as_ref().map_or(0.0, |g| f64::from(g[j])));
        }
        per.push((prm.name.clone(), start, r.len()));
    }
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff =
        |a: &[f64], b: &[f64]| norm(&a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>());
    let rn = norm(&r);
    assert!(rn > 0.0, "{name}: zero reference gradient");
    let fd_err = diff(&f, &r) / rn;
    let tape_err = diff(&t, &r) / rn;
    assert!(
        fd_err <= 1e-6,
        "{name}: f64 reference derivative vs f64 finite differences: {fd_err:e}"
    );
    assert!(
        tape_err <= 1e-4,
        "{name}: f32 tape gradient vs f64 reference: {tape_err:e}"
    );
    // Per tensor, so a wrong gradient of a small tensor is not hidden by a large one.
    for (pname, lo, hi) in per {
        let tn = norm(&r[lo..hi]);
        let e = diff(&t[lo..hi], &r[lo..hi]);
        assert!(
            e <= 1e-4 * rn + 1e-3 * tn,
            "{name}: gradient of {pname} differs by {e:e} (tensor norm {tn:e}, total {rn:e})"
        );
    }
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut TensorRng::seeded(seed)).unwrap()
}

fn labels(n: usize, k: usize, seed: u64) -> Vec<usize> {
    (0..n).map(|i| (i * 7 + seed as usize * 3) % k).collect()
}

/// Sets every norm scale/shift to a random value (so their gradients are generic).
fn randomise_norms(store: &mut ParamStore, seed: u64) {
    let mut rng = TensorRng::seeded(seed);
    for (_, p) in store.iter_mut() {
        if matches!(p.role, ParamRole::NormScale | ParamRole::NormShift) {
            p.value = Tensor::rand_uniform(p.value.shape(), 0.5, 1.5, &mut rng).unwrap();
        }
    }
}

fn conv_layer(
    s: &mut ParamStore,
    name: &str,
    i: usize,
    o: usize,
    k: usize,
    p: Conv2dParams,
    rng: &mut TensorRng,
) -> Conv2d {
    Conv2d::new(s, name, i, o, k, p, true, Init::PyTorch, rng).unwrap()
}

// ----- per-op checks --------------------------------------------------------------------------

#[test]
fn linear_and_cross_entropy() {
    let mut rng = TensorRng::seeded(1);
    let mut s = ParamStore::new();
    let fc = Linear::new(&mut s, "fc", 6, 5, true, Init::PyTorch, &mut rng).unwrap();
    let x = randn(&[3, 6], 2);
    check(
        "linear",
        &s,
        &x,
        &labels(3, 5, 1),
        40,
        &|t, x| fc.forward(t, x),
        &|p, x| p.linear("fc", x),
    );
}

#[test]
fn conv2d_stride_padding_dilation_groups() {
    let cases = [
        (
            "stride 2, padding 1, groups 2",
            Conv2dParams {
                stride: [2, 2],
                padding: [1, 1],
                groups: 2,
                ..Default::default()
            },
        ),
        (
            "dilation 2, padding 2, stride (1, 2)",
            Conv2dParams {
                stride: [1, 2],
                padding: [2, 2],
                dilation: [2, 2],
                groups: 1,
            },
        ),
        ("no padding", Conv2dParams::default()),
    ];
    for (i, (name, cp)) in cases.into_iter().enumerate() {
        let mut rng = TensorRng::seeded(10 + i as u64);
        let mut s = ParamStore::new();
        let conv = conv_layer(&mut s, "conv", 4, 6, 3, cp, &mut rng);
        let x = randn(&[2, 4, 7, 6], 20 + i as u64);
        let y = x.conv2d(s.value(conv.weight), None, cp).unwrap();
        let k = y.numel() / 2;
        check(
            name,
            &s,
            &x,
            &labels(2, k, i as u64),
            60,
            &|t, x| {
                let h = conv.forward(t, x)?;
                t.flatten(h)
            },
            &|p, x| p.conv("conv", x, cp, None).flat(),
        );
    }
}

#[test]
fn weight_standardisation_plain_and_scaled() {
    for (i, tr) in [
        WeightTransform::Standardize { eps: 1e-5 },
        WeightTransform::ScaledStandardize { eps: 1e-4 },
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = TensorRng::seeded(30 + i as u64);
        let mut s = ParamStore::new();
        let cp = Conv2dParams::padded(1);
        let conv =
            conv_layer(&mut s, "conv", 3, 4, 3, cp, &mut rng).with_transform(Some(tr.clone()));
        let x = randn(&[2, 3, 5, 5], 40 + i as u64);
        check(
            &format!("{tr:?}"),
            &s,
            &x,
            &labels(2, 100, i as u64),
            60,
            &|t, x| {
                let h = conv.forward(t, x)?;
                t.flatten(h)
            },
            &|p, x| p.conv("conv", x, cp, Some(tr.clone())).flat(),
        );
    }
}

#[test]
fn activations() {
    for (i, op) in [
        UnaryOp::Relu,
        UnaryOp::Tanh,
        UnaryOp::Mish,
        UnaryOp::Gelu,
        UnaryOp::Sigmoid,
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = TensorRng::seeded(50 + i as u64);
        let mut s = ParamStore::new();
        let fc = Linear::new(&mut s, "fc", 5, 8, true, Init::XavierUniform, &mut rng).unwrap();
        let out = Linear::new(&mut s, "out", 8, 4, true, Init::XavierUniform, &mut rng).unwrap();
        let x = randn(&[3, 5], 60 + i as u64).scale(2.0);
        check(
            &format!("{op:?}"),
            &s,
            &x,
            &labels(3, 4, i as u64),
            40,
            &|t, x| {
                let h = fc.forward(t, x)?;
                let h = t.unary(h, op);
                out.forward(t, h)
            },
            &|p, x| p.linear("out", &act(&p.linear("fc", x), op)),
        );
    }
}

#[test]
fn max_and_average_pooling() {
    let pools = [
        (
            "max 2x2 stride 1",
            Pool2dParams {
                kernel: [2, 2],
                stride: [1, 1],
                padding: [0, 0],
            },
            true,
        ),
        (
            "max 3x3 stride 2 padding 1",
            Pool2dParams {
                kernel: [3, 3],
                stride: [2, 2],
                padding: [1, 1],
            },
            true,
        ),
        ("avg 2x2 stride 2", Pool2dParams::square(2), false),
        (
            "avg 3x3 stride 2 padding 1",
            Pool2dParams {
                kernel: [3, 3],
                stride: [2, 2],
                padding: [1, 1],
            },
            false,
        ),
    ];
    for (i, (name, pp, max)) in pools.into_iter().enumerate() {
        let mut rng = TensorRng::seeded(70 + i as u64);
        let mut s = ParamStore::new();
        let cp = Conv2dParams::padded(1);
        let conv = conv_layer(&mut s, "conv", 2, 3, 3, cp, &mut rng);
        let x = randn(&[2, 2, 6, 6], 80 + i as u64);
        let y = x.conv2d(s.value(conv.weight), None, cp).unwrap();
        let k = y.max_pool2d(pp).unwrap().numel() / 2;
        check(
            name,
            &s,
            &x,
            &labels(2, k, i as u64),
            60,
            &|t, x| {
                let h = conv.forward(t, x)?;
                let h = if max {
                    t.max_pool2d(h, pp)?
                } else {
                    t.avg_pool2d(h, pp)?
                };
                t.flatten(h)
            },
            &|p, x| pool(&p.conv("conv", x, cp, None), pp, max).flat(),
        );
    }
}

#[test]
fn group_norm_and_spatial_mean() {
    let mut rng = TensorRng::seeded(90);
    let mut s = ParamStore::new();
    let cp = Conv2dParams::padded(1);
    let conv = conv_layer(&mut s, "conv", 3, 6, 3, cp, &mut rng);
    let gn = GroupNorm::new(&mut s, "gn", 6, 3).unwrap();
    randomise_norms(&mut s, 91);
    let x = randn(&[3, 3, 4, 4], 92);
    check(
        "group norm",
        &s,
        &x,
        &labels(3, 96, 0),
        60,
        &|t, x| {
            let h = conv.forward(t, x)?;
            let h = gn.forward(t, h)?;
            t.flatten(h)
        },
        &|p, x| p.gn("gn", &p.conv("conv", x, cp, None), 3).flat(),
    );
    check(
        "group norm + spatial mean",
        &s,
        &x,
        &labels(3, 6, 1),
        60,
        &|t, x| {
            let h = conv.forward(t, x)?;
            let h = gn.forward(t, h)?;
            t.spatial_mean(h)
        },
        &|p, x| spatial_mean(&p.gn("gn", &p.conv("conv", x, cp, None), 3)),
    );
}

#[test]
fn residual_add_broadcast_product_scale_reshape_dropout() {
    let mut rng = TensorRng::seeded(100);
    let mut s = ParamStore::new();
    let cp = Conv2dParams::padded(1);
    let c1 = conv_layer(&mut s, "c1", 2, 3, 3, cp, &mut rng);
    let c2 = conv_layer(&mut s, "c2", 3, 3, 3, cp, &mut rng);
    let c3 = conv_layer(&mut s, "c3", 2, 3, 3, cp, &mut rng);
    let x = randn(&[2, 2, 4, 4], 101);
    let y = labels(2, 48, 2);
    // Residual: h + c2(tanh(h)), then a per-channel term broadcast over space.
    check(
        "residual add + broadcast add + reshape",
        &s,
        &x,
        &y,
        40,
        &|t, x| {
            let h = c1.forward(t, x)?;
            let r = t.tanh(h);
            let r = c2.forward(t, r)?;
            let h = t.add(h, r)?;
            let m = c3.forward(t, x)?;
            let m = t.spatial_mean(m)?;
            let m = t.reshape(m, &[2, 3, 1, 1])?;
            let h = t.add(h, m)?;
            t.flatten(h)
        },
        &|p, x| {
            let h = p.conv("c1", x, cp, None);
            let r = p.conv("c2", &act(&h, UnaryOp::Tanh), cp, None);
            let h = add(&h, &r);
            let m = spatial_mean(&p.conv("c3", x, cp, None));
            let v =
                h.v.iter()
                    .enumerate()
                    .map(|(j, &a)| a + m.v[j / 16])
                    .collect();
            A { v, s: h.s }.flat()
        },
    );
    check(
        "product and scale",
        &s,
        &x,
        &y,
        40,
        &|t, x| {
            let a = c1.forward(t, x)?;
            let b = c3.forward(t, x)?;
            let h = t.mul(a, b)?;
            let h = t.scale(h, 0.7);
            t.flatten(h)
        },
        &|p, x| {
            let a = p.conv("c1", x, cp, None);
            let b = p.conv("c3", x, cp, None);
            let v =
                a.v.iter()
                    .zip(&b.v)
                    .map(|(&u, &w)| u * w * c(0.7))
                    .collect();
            A { v, s: a.s }.flat()
        },
    );
    // Dropout with a fixed keep mask (rate 0.25): y = x * keep / 0.75.
    let keep: Vec<f32> = (0..96).map(|i| f32::from(i % 4 != 1)).collect();
    let keep = Tensor::from_vec(keep, &[2, 3, 4, 4]).unwrap();
    check(
        "dropout",
        &s,
        &x,
        &y,
        40,
        &|t, x| {
            let h = c1.forward(t, x)?;
            let h = t.dropout(h, keep.clone(), 0.25)?;
            t.flatten(h)
        },
        &|p, x| {
            let h = p.conv("c1", x, cp, None);
            let kv = keep.to_vec();
            let v =
                h.v.iter()
                    .zip(&kv)
                    .map(|(&a, &k)| a * c(f64::from(k) / 0.75))
                    .collect();
            A { v, s: h.s }.flat()
        },
    );
}

// ----- models -------------------------------------------------------------------------------

#[test]
fn tramer_boneh_mnist_cnn() {
    let m = TramerBonehMnist::new(3).unwrap();
    let x = randn(&[1, 1, 28, 28], 110);
    let s2 = Conv2dParams {
        stride: [2, 2],
        padding: [2, 2],
        ..Default::default()
    };
    let s2n = Conv2dParams {
        stride: [2, 2],
        ..Default::default()
    };
    let mp = Pool2dParams {
        kernel: [2, 2],
        stride: [1, 1],
        padding: [0, 0],
    };
    check(
        "Tramer-Boneh MNIST CNN",
        m.params(),
        &x,
        &[3],
        6,
        &|t, x| m.forward(t, x),
        &|p, x| {
            let h = act(&p.conv("conv1", x, s2, None), UnaryOp::Tanh);
            let h = pool(&h, mp, true);
            let h = act(&p.conv("conv2", &h, s2n, None), UnaryOp::Tanh);
            let h = pool(&h, mp, true).flat();
            let h = act(&p.linear("fc1", &h), UnaryOp::Tanh);
            p.linear("fc2", &h)
        },
    );
}

#[test]
fn group_norm_residual_net_with_standardised_and_grouped_convs() {
    let m = TinyGnNet::new(4);
    let x = randn(&[2, 3, 8, 8], 120);
    let p1 = Conv2dParams::padded(1);
    let grouped = Conv2dParams {
        stride: [2, 2],
        padding: [1, 1],
        groups: 2,
        ..Default::default()
    };
    check(
        "TinyGnNet",
        m.params(),
        &x,
        &[1, 4],
        10,
        &|t, x| m.forward(t, x),
        &|p, x| {
            let ws = Some(WeightTransform::Standardize { eps: 1e-5 });
            let h = p.gn("gn1", &p.conv("conv1", x, p1, ws), 4);
            let h = act(&h, UnaryOp::Mish);
            let r = p.gn("gn2", &p.conv("conv2", &h, p1, None), 2);
            let h = add(&h, &act(&r, UnaryOp::Relu));
            let h = act(&p.conv("grouped", &h, grouped, None), UnaryOp::Gelu);
            p.linear("fc", &spatial_mean(&h))
        },
    );
}

/// The De et al. WRN layout, narrowed (WRN-10-1 on 6x6 inputs, GroupNorm(8)), rebuilt here from
/// the parameter names: stem, stages of pre-activation blocks (`act -> GN -> conv`) with
/// projection shortcuts `act -> GN -> 1x1 conv`, then `act -> GN -> mean -> linear`.
#[test]
fn narrow_wide_resnet() {
    // ReLU (the default); the smooth activations are covered op by op and in TinyGnNet.
    for (i, activation) in [Activation::Relu].into_iter().enumerate() {
        let mut cfg = WideResNetConfig::new(10, 1);
        cfg.input_shape = [3, 6, 6];
        cfg.norm_groups = 8;
        cfg.activation = activation;
        let tr = cfg.transform.clone();
        let mut m = WideResNet::new(cfg, 5 + i as u64).unwrap();
        randomise_norms(m.params_mut(), 6);
        let x = randn(&[1, 3, 6, 6], 130 + i as u64);
        check(
            &format!("WRN-10-1 {activation:?}"),
            m.params(),
            &x,
            &[2],
            3,
            &|t, x| m.forward(t, x),
            &|p, x| {
                let mut h = p.conv("stem", x, Conv2dParams::padded(1), tr.clone());
                for (stage, stride) in [(1, 1), (2, 2), (3, 2)] {
                    let b = format!("stage{stage}.block0");
                    let s = Conv2dParams {
                        stride: [stride, stride],
                        padding: [1, 1],
                        ..Default::default()
                    };
                    let s1 = Conv2dParams {
                        stride: [stride, stride],
                        ..Default::default()
                    };
                    let a = activation_of(&h, activation);
                    let skip = p.conv(
                        &format!("{b}.shortcut"),
                        &p.gn(&format!("{b}.shortcut_norm"), &a, 8),
                        s1,
                        tr.clone(),
                    );
                    let r = p.conv(
                        &format!("{b}.conv1"),
                        &p.gn(&format!("{b}.norm1"), &a, 8),
                        s,
                        tr.clone(),
                    );
                    let r = activation_of(&r, activation);
                    let r = p.conv(
                        &format!("{b}.conv2"),
                        &p.gn(&format!("{b}.norm2"), &r, 8),
                        Conv2dParams::padded(1),
                        tr.clone(),
                    );
                    h = add(&r, &skip);
                }
                let h = p.gn("final_norm", &activation_of(&h, activation), 8);
                p.linear("fc", &spatial_mean(&h))
            },
        );
    }
}

fn activation_of(x: &A, a: Activation) -> A {
    activation(x, a)
}

/// The post-activation GroupNorm ResNet, narrowed (stages of 1 block, widths 8 and 16, 6x6
/// inputs), rebuilt from the parameter names: `conv -> GN -> act`, then blocks
/// `conv1 -> GN -> act -> conv2 -> GN`, plus the identity or `1x1 conv -> GN`, then `act`.
#[test]
fn narrow_post_activation_resnet() {
    let cfg = ResNetConfig {
        blocks: vec![1, 1],
        widths: vec![8, 16],
        num_classes: 5,
        input_shape: [3, 6, 6],
        norm_groups: 4,
        activation: Activation::Relu,
        transform: None,
    };
    let mut m = ResNet::new(cfg, 7).unwrap();
    randomise_norms(m.params_mut(), 8);
    let x = randn(&[1, 3, 6, 6], 140);
    let p1 = Conv2dParams::padded(1);
    check(
        "ResNet (post-activation, GroupNorm)",
        m.params(),
        &x,
        &[4],
        3,
        &|t, x| m.forward(t, x),
        &|p, x| {
            let relu = |a: &A| act(a, UnaryOp::Relu);
            let mut h = relu(&p.gn("stem_norm", &p.conv("stem", x, p1, None), 4));
            for (stage, stride) in [(1, 1), (2, 2)] {
                let b = format!("stage{stage}.block0");
                let s = Conv2dParams {
                    stride: [stride, stride],
                    padding: [1, 1],
                    ..Default::default()
                };
                let r = relu(&p.gn(
                    &format!("{b}.norm1"),
                    &p.conv(&format!("{b}.conv1"), &h, s, None),
                    4,
                ));
                let r = p.gn(
                    &format!("{b}.norm2"),
                    &p.conv(&format!("{b}.conv2"), &r, p1, None),
                    4,
                );
                let skip = if p.opt(&format!("{b}.shortcut.weight")).is_some() {
                    let s1 = Conv2dParams {
                        stride: [stride, stride],
                        ..Default::default()
                    };
                    p.gn(
                        &format!("{b}.shortcut_norm"),
                        &p.conv(&format!("{b}.shortcut"), &h, s1, None),
                        4,
                    )
                } else {
                    h.clone()
                };
                h = relu(&add(&r, &skip));
            }
            p.linear("fc", &spatial_mean(&h))
        },
    );
}
