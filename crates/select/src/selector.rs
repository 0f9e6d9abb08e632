//! The per-step selector.

use crate::error::{Result, SelectError};
use crate::schedule::RateSchedule;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sparsedp_nn::{Model, ParamMask, ParamRole, ParamStore};
use sparsedp_prune::DataBatch;
use sparsedp_tensor::Tensor;

/// Which coordinates a step updates, among the unpruned ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectMethod {
    /// A fresh uniform subset at every step, drawn from a generator derived from `(seed, step)`.
    /// **Reads:** nothing. **Privacy cost:** none.
    Random,
    /// The largest `|w|` of the current weights. **Reads:** the weights, which are outputs of
    /// earlier DP steps (or a public initialisation); selecting from them is post-processing.
    /// **Privacy cost:** none.
    Magnitude,
    /// The largest `|g|` of a gradient computed on **public** data ([`PublicGradient`]).
    /// **Reads:** the weights and a public batch. **Privacy cost:** none.
    PublicGradient,
}

impl SelectMethod {
    /// Name used in configurations and reports.
    pub fn name(self) -> &'static str {
        match self {
            SelectMethod::Random => "random",
            SelectMethod::Magnitude => "magnitude",
            SelectMethod::PublicGradient => "public-gradient",
        }
    }
}

/// How the selected coordinates are spread over tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Budget {
    /// `round(rate * M)` coordinates over all `M` selectable ones, one threshold.
    #[default]
    Global,
    /// `max(1, round(rate * m_l))` coordinates in each tensor with `m_l` selectable ones.
    LayerWise,
}

/// Selector settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectorConfig {
    /// Selection criterion.
    pub method: SelectMethod,
    /// Global or per-tensor budget.
    pub budget: Budget,
    /// Fraction of unpruned selectable coordinates updated at each step.
    pub rate: RateSchedule,
    /// Seed of [`SelectMethod::Random`] (step `t` uses ChaCha20 stream `t` of this seed).
    pub seed: u64,
    /// Also select among biases and normalisation parameters. Off by default: they are always
    /// active (subject only to the pruning mask, which never prunes them).
    pub select_non_weights: bool,
}

impl SelectorConfig {
    /// `method` at a constant `rate`, global budget, weights only.
    pub fn new(method: SelectMethod, rate: f64, seed: u64) -> Self {
        SelectorConfig {
            method,
            budget: Budget::Global,
            rate: RateSchedule::Constant(rate),
            seed,
            select_non_weights: false,
        }
    }
}

/// A gradient computed on public data, one tensor per parameter, indexed like the store.
///
/// The only ways to make one are [`PublicGradient::from_public_batch`], which refuses a private
/// [`DataBatch`], and [`PublicGradient::assume_public`], whose name records the caller's claim.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicGradient {
    grads: Vec<Tensor>,
}

impl PublicGradient {
    /// The batch gradient of the summed cross-entropy of a **public** batch at the model's
    /// current weights. A private batch is refused with
    /// [`sparsedp_prune::PruneError::PrivateData`].
    pub fn from_public_batch(model: &dyn Model, batch: &DataBatch<'_>) -> Result<Self> {
        let (x, labels) = batch.require_public("public-gradient selection")?;
        let (grads, _) = sparsedp_nn::batch_gradient(model, x, labels)?;
        Ok(PublicGradient { grads })
    }

    /// Wraps gradients the caller computed on public data (e.g. averaged over several public
    /// batches). The caller is responsible for the claim: gradients of private data must never
    /// come through here.
    pub fn assume_public(grads: Vec<Tensor>) -> Self {
        PublicGradient { grads }
    }

    /// The per-parameter gradients.
    pub fn grads(&self) -> &[Tensor] {
        &self.grads
    }
}

/// Per-step coordinate selection with reusable scratch space.
///
/// Built once from the parameters and the (fixed) pruning mask; [`Selector::select`] then costs
/// `O(M)` sequential work for the weight-based methods (one pass to build keys, a radix histogram
/// plus `select_nth_unstable` on one bucket for the threshold, one pass to mark the winners) and
/// `O(k)` random draws plus one pass over a bitset for random selection, without sorting.
///
/// **The returned mask is the combined mask**: selection AND pruning. Selection only picks among
/// unpruned coordinates, so the result is a subset of the pruning mask and the trainer applies it
/// as is (before clipping, to the noise and to the update); it must not AND it again (harmless,
/// but wasted work).
#[derive(Debug, Clone)]
pub struct Selector {
    cfg: SelectorConfig,
    pruning: ParamMask,
    /// Per parameter: whether selection applies to it.
    selectable: Vec<bool>,
    /// Shapes of all parameters (to validate inputs and build the output).
    shapes: Vec<Vec<usize>>,
    /// Element index of each candidate (unpruned coordinate of a selectable parameter), grouped
    /// by parameter in registration order.
    cand_elem: Vec<u32>,
    /// `seg[p]..seg[p + 1]`: the candidates of parameter `p` (empty for non-selectable ones).
    seg: Vec<usize>,
    /// One bit per candidate: selected in the current step.
    bits: Vec<u64>,
    /// Weight-based: ordering keys of the candidates.
    keys: Vec<u32>,
    /// Weight-based: the keys of the threshold's radix bucket.
    scratch: Vec<u32>,
    /// Weight-based: radix histogram of the high 16 key bits.
    hist: Vec<u32>,
}

/// Ranges below this size skip the radix histogram.
const RADIX_MIN: usize = 1 << 17;

impl Selector {
    /// A selector over `store`'s parameters, selecting among the coordinates `pruning` keeps
    /// (`None`: nothing is pruned). Errors on an invalid configuration or a pruning mask over a
    /// different number of parameters.
    pub fn new(
        store: &ParamStore,
        pruning: Option<&ParamMask>,
        cfg: SelectorConfig,
    ) -> Result<Self> {
        cfg.rate.validate()?;
        let pruning = match pruning {
            Some(m) if m.len() != store.len() => {
                return Err(SelectError::InvalidConfig(format!(
                    "pruning mask covers {} parameters, the store has {}",
                    m.len(),
                    store.len()
                )));
            }
            Some(m) => m.clone(),
            None => ParamMask::dense(store),
        };
        if store.num_scalars() >= u32::MAX as usize {
            return Err(SelectError::InvalidConfig(
                "selection supports fewer than 2^32 coordinates".to_string(),
            ));
        }
        let selectable: Vec<bool> = store
            .iter()
            .map(|(_, p)| cfg.select_non_weights || p.role == ParamRole::Weight)
            .collect();
        let mut cand_elem = Vec::new();
        let mut seg = vec![0usize];
        for (id, p) in store.iter() {
            if selectable[id.0] {
                match pruning.get(id) {
                    None => cand_elem.extend(0..p.value.numel() as u32),
                    Some(m) => cand_elem.extend(
                        m.to_vec()
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| **v != 0.0)
                            .map(|(e, _)| e as u32),
                    ),
                }
            }
            seg.push(cand_elem.len());
        }
        let m = cand_elem.len();
        let keys = match cfg.method {
            SelectMethod::Random => Vec::new(),
            _ => vec![0; m],
        };
        Ok(Selector {
            cfg,
            pruning,
            selectable,
            shapes: store
                .iter()
                .map(|(_, p)| p.value.shape().to_vec())
                .collect(),
            cand_elem,
            seg,
            bits: vec![0; m.div_ceil(64)],
            keys,
            scratch: Vec::new(),
            hist: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SelectorConfig {
        &self.cfg
    }

    /// The pruning mask selection works within.
    pub fn pruning(&self) -> &ParamMask {
        &self.pruning
    }

    /// Number of selectable (unpruned) coordinates `M`.
    pub fn candidates(&self) -> usize {
        self.cand_elem.len()
    }

    /// The rate at `step`.
    pub fn rate_at(&self, step: u64) -> f64 {
        self.cfg.rate.rate(step)
    }

    /// Number of coordinates selected at `step` (over the selectable ones).
    pub fn selected_count(&self, step: u64) -> usize {
        self.ranges(self.rate_at(step)).iter().map(|r| r.2).sum()
    }

    /// `(start, end, k)` candidate ranges and their budgets.
    fn ranges(&self, rate: f64) -> Vec<(usize, usize, usize)> {
        match self.cfg.budget {
            Budget::Global => vec![(0, self.candidates(), budget(rate, self.candidates()))],
            Budget::LayerWise => (0..self.shapes.len())
                .map(|p| {
                    let (a, b) = (self.seg[p], self.seg[p + 1]);
                    (a, b, budget(rate, b - a))
                })
                .collect(),
        }
    }

    /// The combined (selection AND pruning) mask of step `step`.
    ///
    /// `store` holds the current weights (read by [`SelectMethod::Magnitude`]; checked against
    /// the shapes the selector was built for); `public` is required by, and only read by,
    /// [`SelectMethod::PublicGradient`]. Parameters not subject to selection keep their pruning
    /// entry. Reproducible: the same inputs and step give the same mask, whatever happened at
    /// other steps.
    pub fn select(
        &mut self,
        step: u64,
        store: &ParamStore,
        public: Option<&PublicGradient>,
    ) -> Result<ParamMask> {
        self.check_store(store)?;
        let ranges = self.ranges(self.rate_at(step));
        self.bits.iter_mut().for_each(|w| *w = 0);
        match self.cfg.method {
            SelectMethod::Random => self.select_random(step, &ranges),
            SelectMethod::Magnitude => {
                let values: Vec<&[f32]> = store
                    .iter()
                    .map(|(_, p)| cpu(&p.value))
                    .collect::<Result<_>>()?;
                self.fill_keys(&values, store)?;
                self.select_top(&ranges);
            }
            SelectMethod::PublicGradient => {
                let g = public.ok_or(SelectError::MissingPublicGradient)?;
                if g.grads.len() != self.shapes.len() {
                    return Err(SelectError::InvalidConfig(format!(
                        "public gradient has {} tensors, the store {}",
                        g.grads.len(),
                        self.shapes.len()
                    )));
                }
                for ((_, p), t) in store.iter().zip(&g.grads) {
                    if t.shape() != p.value.shape() {
                        return Err(SelectError::Mismatch {
                            param: p.name.clone(),
                            reason: format!(
                                "public gradient shape {:?}, parameter {:?}",
                                t.shape(),
                                p.value.shape()
                            ),
                        });
                    }
                }
                let values: Vec<&[f32]> = g.grads.iter().map(cpu).collect::<Result<_>>()?;
                self.fill_keys(&values, store)?;
                self.select_top(&ranges);
            }
        }
        let masks = (0..self.shapes.len())
            .map(|p| {
                if !self.selectable[p] {
                    return Ok(self.pruning.get(sparsedp_nn::ParamId(p)).cloned());
                }
                // `Tensor::zeros` reuses large buffers released by earlier steps' masks.
                let mut t = Tensor::zeros(&self.shapes[p]);
                let v = t.as_mut_slice().ok_or_else(|| {
                    SelectError::InvalidConfig("selection needs CPU tensors".to_string())
                })?;
                for_each_bit(&self.bits, self.seg[p], self.seg[p + 1], |c| {
                    v[self.cand_elem[c] as usize] = 1.0;
                });
                Ok(Some(t))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ParamMask::new(store, masks)?)
    }

    fn check_store(&self, store: &ParamStore) -> Result<()> {
        if store.len() != self.shapes.len() {
            return Err(SelectError::InvalidConfig(format!(
                "selector built for {} parameters, store has {}",
                self.shapes.len(),
                store.len()
            )));
        }
        for ((_, p), s) in store.iter().zip(&self.shapes) {
            if p.value.shape() != s.as_slice() {
                return Err(SelectError::Mismatch {
                    param: p.name.clone(),
                    reason: format!("shape {:?}, selector built for {s:?}", p.value.shape()),
                });
            }
        }
        Ok(())
    }

    /// Floyd's algorithm per range: a uniform `k`-subset from `k` draws, recorded in the bitset.
    fn select_random(&mut self, step: u64, ranges: &[(usize, usize, usize)]) {
        let mut rng = ChaCha20Rng::seed_from_u64(self.cfg.seed);
        rng.set_stream(step);
        for &(a, b, k) in ranges {
            let n = b - a;
            for j in n - k..n {
                let t = rng.random_range(0..=j);
                let pos = if get_bit(&self.bits, a + t) {
                    a + j
                } else {
                    a + t
                };
                set_bit(&mut self.bits, pos);
            }
        }
    }

    /// Keys of the candidates: the bits of `|v|`, which order like the values for finite
    /// non-negative floats.
    ///
    /// With a global budget over a large range, the radix histogram of the keys is built in the
    /// same pass (see [`Selector::kth_largest`]).
    fn fill_keys(&mut self, values: &[&[f32]], store: &ParamStore) -> Result<()> {
        let with_hist = self.cfg.budget == Budget::Global && self.candidates() >= RADIX_MIN;
        if with_hist {
            self.hist.clear();
            self.hist.resize(1 << 16, 0);
        }
        for (p, v) in values.iter().enumerate() {
            let (a, b) = (self.seg[p], self.seg[p + 1]);
            let mut bad = false;
            let keys = &mut self.keys[a..b];
            let dense = b - a == v.len() && self.selectable[p];
            let mut put = |key: &mut u32, x: f32| {
                let bits = x.to_bits() & 0x7fff_ffff;
                bad |= bits >= 0x7f80_0000;
                *key = bits;
            };
            if dense {
                // Every element is a candidate: read the values directly.
                keys.iter_mut().zip(v.iter()).for_each(|(k, &x)| put(k, x));
            } else {
                for (k, &e) in keys.iter_mut().zip(&self.cand_elem[a..b]) {
                    put(k, v[e as usize]);
                }
            }
            if with_hist {
                for &k in keys.iter() {
                    self.hist[(k >> 16) as usize] += 1;
                }
            }
            if bad {
                let name = &store.get(sparsedp_nn::ParamId(p)).name;
                return Err(SelectError::NonFinite(format!(
                    "NaN or infinity in '{name}' read by {} selection",
                    self.cfg.method.name()
                )));
            }
        }
        Ok(())
    }

    /// Marks the `k` largest keys of each range; ties go to the smaller candidate index.
    fn select_top(&mut self, ranges: &[(usize, usize, usize)]) {
        for &(a, b, k) in ranges {
            if k == 0 {
                continue;
            }
            let (threshold, above) = self.kth_largest(a, b, k);
            let keys = &self.keys[a..b];
            let mut ties = k - above;
            for (i, &x) in keys.iter().enumerate() {
                if x > threshold || (x == threshold && ties > 0) {
                    if x == threshold {
                        ties -= 1;
                    }
                    set_bit(&mut self.bits, a + i);
                }
            }
        }
    }

    /// The `k`-th largest key `t` in `keys[a..b]` (`1 <= k <= b - a`) and the number of keys
    /// strictly above it. For large ranges a histogram of the high 16 bits (built by
    /// [`Selector::fill_keys`] for a global budget) finds the bucket holding `t`, and
    /// `select_nth_unstable` runs on that bucket only; small ranges use `select_nth_unstable`
    /// directly.
    fn kth_largest(&mut self, a: usize, b: usize, k: usize) -> (u32, usize) {
        let keys = &self.keys[a..b];
        let n = keys.len();
        self.scratch.clear();
        if n < RADIX_MIN {
            self.scratch.extend_from_slice(keys);
            let t = *self.scratch.select_nth_unstable(n - k).1;
            let above = self.scratch[n - k + 1..].iter().filter(|&&x| x > t).count();
            return (t, above);
        }
        let global = a == 0 && b == self.candidates() && self.cfg.budget == Budget::Global;
        if !global {
            self.hist.clear();
            self.hist.resize(1 << 16, 0);
            for &x in keys {
                self.hist[(x >> 16) as usize] += 1;
            }
        }
        // Walk buckets from the top until they hold k keys.
        let mut above = 0usize;
        let mut bucket = 0u32;
        for (h, &c) in self.hist.iter().enumerate().rev() {
            if above + c as usize >= k {
                bucket = h as u32;
                break;
            }
            above += c as usize;
        }
        self.scratch
            .extend(keys.iter().copied().filter(|&x| x >> 16 == bucket));
        let r = k - above; // rank of the threshold inside the bucket, 1-based from the top
        let len = self.scratch.len();
        let t = *self.scratch.select_nth_unstable(len - r).1;
        let in_bucket = self.scratch[len - r + 1..]
            .iter()
            .filter(|&&x| x > t)
            .count();
        (t, above + in_bucket)
    }
}

fn get_bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] >> (i % 64) & 1 == 1
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

/// Calls `f(i)` for every set bit `i` in `[a, b)`, in increasing order.
fn for_each_bit(bits: &[u64], a: usize, b: usize, mut f: impl FnMut(usize)) {
    if a >= b {
        return;
    }
    let first = a / 64;
    for (w, &word) in bits[first..b.div_ceil(64)].iter().enumerate() {
        let w = first + w;
        let mut word = word;
        while word != 0 {
            let i = w * 64 + word.trailing_zeros() as usize;
            word &= word - 1;
            if i >= a && i < b {
                f(i);
            }
        }
    }
}

fn cpu(t: &Tensor) -> Result<&[f32]> {
    t.as_slice()
        .ok_or_else(|| SelectError::InvalidConfig("selection needs CPU tensors".to_string()))
}

/// Budget of a range of `m` candidates: `round(rate * m)`, at least one when `m > 0`.
fn budget(rate: f64, m: usize) -> usize {
    if m == 0 {
        0
    } else {
        ((rate * m as f64).round() as usize).clamp(1, m)
    }
}
