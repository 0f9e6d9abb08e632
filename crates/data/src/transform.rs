//! Image transforms: normalisation with fixed per-dataset constants, random crop with padding,
//! horizontal flip, and augmentation multiplicity.
//!
//! Everything here maps a `u8` C x H x W image to `f32` values; the random choices come from a
//! caller-supplied generator (see [`crate::batch`] for how it is derived).

use crate::error::{DataError, Result};
use crate::load::DatasetName;
use crate::rng;
use rand_chacha::rand_core::Rng;

/// Per-channel normalisation `(x / 255 - mean) / std`.
///
/// The constants of [`Self::for_dataset`] are the published training-set statistics of each
/// dataset. They are fixed numbers, not computed from the data at run time: normalising with
/// statistics read from private data would leak outside the DP guarantee.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalize {
    /// Normalisation with the given per-channel mean and standard deviation (in [0, 1] units).
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when the lengths differ or are zero, or a std is not
    /// positive and finite, or a mean is not finite.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.is_empty()
            || mean.len() != std.len()
            || std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || mean.iter().any(|m| !m.is_finite())
        {
            return Err(DataError::InvalidArgument {
                name: "normalisation",
                detail: format!("mean {mean:?}, std {std:?}"),
            });
        }
        Ok(Self { mean, std })
    }

    /// Identity scaling to [0, 1] (`x / 255`) for `channels` channels.
    pub fn unit(channels: usize) -> Self {
        Self {
            mean: vec![0.0; channels.max(1)],
            std: vec![1.0; channels.max(1)],
        }
    }

    /// The published constants: MNIST (0.1307; 0.3081), Fashion-MNIST (0.2860; 0.3530),
    /// CIFAR-10 (0.4914, 0.4822, 0.4465; 0.2470, 0.2435, 0.2616),
    /// CIFAR-100 (0.5071, 0.4865, 0.4409; 0.2673, 0.2564, 0.2762).
    pub fn for_dataset(name: DatasetName) -> Self {
        let (mean, std): (&[f32], &[f32]) = match name {
            DatasetName::Mnist | DatasetName::MnistSubset => (&[0.1307], &[0.3081]),
            DatasetName::FashionMnist => (&[0.2860], &[0.3530]),
            DatasetName::Cifar10 => (&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616]),
            DatasetName::Cifar100 => (&[0.5071, 0.4865, 0.4409], &[0.2673, 0.2564, 0.2762]),
        };
        Self {
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }

    /// Per-channel means.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-channel standard deviations.
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// `scale` and `shift` per channel such that the output is `x * scale + shift`.
    fn affine(&self, c: usize) -> (f32, f32) {
        let scale = 1.0 / (255.0 * self.std[c]);
        (scale, -self.mean[c] / self.std[c])
    }
}

/// How a random crop fills the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// Zeros in pixel space (the border becomes `-mean / std` after normalisation).
    Zero,
    /// Mirror without repeating the edge pixel (`dcb|abcd|cba`); needs `padding < H, W`.
    Reflect,
}

/// Random crop: pad by `padding` on every side, then cut an H x W window at a uniform offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomCrop {
    /// Pixels of padding on each side.
    pub padding: usize,
    /// How the padding is filled.
    pub mode: PadMode,
}

/// The augmentation applied to each view of an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augment {
    /// Random crop with padding, if any.
    pub crop: Option<RandomCrop>,
    /// Flip horizontally with probability 1/2.
    pub hflip: bool,
}

/// The concrete choices of one augmented view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViewParams {
    /// Vertical offset of the crop window in the padded image, in `0..=2 * padding`.
    pub dy: usize,
    /// Horizontal offset of the crop window in the padded image, in `0..=2 * padding`.
    pub dx: usize,
    /// Flip horizontally (after cropping).
    pub flip: bool,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Self = Self {
        crop: None,
        hflip: false,
    };

    /// The usual CIFAR augmentation: 4 pixels of padding (`mode`), random crop, random flip.
    pub const fn cifar(mode: PadMode) -> Self {
        Self {
            crop: Some(RandomCrop { padding: 4, mode }),
            hflip: true,
        }
    }

    /// True when no randomness is involved.
    pub fn is_identity(&self) -> bool {
        self.crop.is_none_or(|c| c.padding == 0) && !self.hflip
    }

    /// Checks the augmentation against an image size.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when reflect padding is not smaller than the image.
    pub fn validate(&self, height: usize, width: usize) -> Result<()> {
        if let Some(c) = self.crop
            && c.mode == PadMode::Reflect
            && (c.padding >= height || c.padding >= width)
        {
            return Err(DataError::InvalidArgument {
                name: "crop padding",
                detail: format!(
                    "reflect padding {} needs images larger than it, not {height} x {width}",
                    c.padding
                ),
            });
        }
        Ok(())
    }

    /// Draws the choices of one view.
    pub fn draw(&self, rng: &mut impl Rng) -> ViewParams {
        let (dy, dx) = match self.crop {
            Some(c) if c.padding > 0 => {
                let span = 2 * c.padding as u64 + 1;
                (
                    rng::below(rng, span) as usize,
                    rng::below(rng, span) as usize,
                )
            }
            _ => (0, 0),
        };
        let flip = self.hflip && rng.next_u32() & 1 == 1;
        ViewParams { dy, dx, flip }
    }

    /// Writes view `params` of the `u8` image `src` (`shape` = C x H x W) into `out`
    /// (C * H * W values), normalised by `norm`.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when the buffer lengths or channel counts disagree with
    /// `shape`, or the padding is invalid (see [`Self::validate`]).
    pub fn apply(
        &self,
        src: &[u8],
        shape: [usize; 3],
        params: ViewParams,
        norm: &Normalize,
        out: &mut [f32],
    ) -> Result<()> {
        let [c, h, w] = shape;
        let n = c * h * w;
        if src.len() != n || out.len() != n || norm.channels() != c {
            return Err(DataError::InvalidArgument {
                name: "image buffers",
                detail: format!(
                    "shape {shape:?}: source {} values, output {}, normalisation for {} channels",
                    src.len(),
                    out.len(),
                    norm.channels()
                ),
            });
        }
        self.validate(h, w)?;
        let (pad, mode) = match self.crop {
            Some(cr) => (cr.padding, cr.mode),
            None => (0, PadMode::Zero),
        };
        if params.dy > 2 * pad || params.dx > 2 * pad {
            return Err(DataError::InvalidArgument {
                name: "view offsets",
                detail: format!(
                    "({}, {}) exceed 2 * padding = {}",
                    params.dy,
                    params.dx,
                    2 * pad
                ),
            });
        }
        for ch in 0..c {
            let (scale, shift) = norm.affine(ch);
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let dst = &mut out[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                // Row in the source image, or None inside zero padding.
                let sy = source_coord(y + params.dy, pad, h, mode);
                let row = &mut dst[y * w..(y + 1) * w];
                for (x, o) in row.iter_mut().enumerate() {
                    let xc = if params.flip { w - 1 - x } else { x };
                    let sx = source_coord(xc + params.dx, pad, w, mode);
                    let v = match (sy, sx) {
                        (Some(sy), Some(sx)) => plane[sy * w + sx],
                        _ => 0,
                    };
                    *o = f32::from(v) * scale + shift;
                }
            }
        }
        Ok(())
    }
}

/// Maps a coordinate of the padded image (`0..len + 2 * pad`) to the source image.
fn source_coord(p: usize, pad: usize, len: usize, mode: PadMode) -> Option<usize> {
    if p >= pad && p - pad < len {
        return Some(p - pad);
    }
    match mode {
        PadMode::Zero => None,
        PadMode::Reflect => {
            if p < pad {
                Some(pad - p) // -k -> k
            } else {
                let over = p - pad - len; // 0 for the first pixel past the edge
                Some(len - 2 - over)
            }
        }
    }
}
