//! The point groups of the plane that map the square pixel grid onto itself: the trivial group,
//! the rotations by multiples of 90 degrees (C4, whose convolutions are "p4") and the rotations
//! and reflections (the dihedral group D4, "p4m").
//!
//! An element acts on the pixel grid of a square `n x n` array through a 2x2 integer orthogonal
//! matrix `A_g` on doubled, centred coordinates `(2i - (n-1), 2j - (n-1))` (row `i`, column
//! `j`), so the action is exact for odd and even `n`. A signal `f` transforms as
//! `(g . f)[p] = f[A_g^{-1} p]`, and a *regular field* (a feature map with one channel per group
//! element, `F[h, p]`) as `(g . F)[h, p] = F[g^{-1} h, A_g^{-1} p]`.

use crate::error::{NnError, Result};
use sparsedp_tensor::Tensor;

/// A symmetry group of the square grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// Only the identity: an ordinary CNN (the dense baseline with the same architecture).
    Trivial,
    /// Rotations by `r * 90` degrees, `r = 0..4` (p4 convolutions).
    C4,
    /// Rotations and reflections, the dihedral group of the square (p4m convolutions).
    D4,
}

/// An integer 2x2 matrix `[[a, b], [c, d]]`.
type Mat = [[i64; 2]; 2];

fn mat_mul(x: &Mat, y: &Mat) -> Mat {
    let mut z = [[0; 2]; 2];
    for (i, row) in z.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = x[i][0] * y[0][j] + x[i][1] * y[1][j];
        }
    }
    z
}

/// Rotation by 90 degrees and reflection of the column axis, on `(row, column)` coordinates.
const ROT: Mat = [[0, -1], [1, 0]];
const FLIP: Mat = [[1, 0], [0, -1]];
const ID: Mat = [[1, 0], [0, 1]];

impl Group {
    /// Number of elements `|G|`.
    pub fn order(self) -> usize {
        match self {
            Group::Trivial => 1,
            Group::C4 => 4,
            Group::D4 => 8,
        }
    }

    /// Short name: `trivial`, `p4`, `p4m`.
    pub fn name(self) -> &'static str {
        match self {
            Group::Trivial => "trivial",
            Group::C4 => "p4",
            Group::D4 => "p4m",
        }
    }

    /// The matrix of element `g`: element `m * 4 + r` is `ROT^r FLIP^m` (rotation by `r * 90`
    /// degrees after `m` reflections); element 0 is the identity.
    pub fn matrix(self, g: usize) -> [[i64; 2]; 2] {
        assert!(
            g < self.order(),
            "element {g} of a group of order {}",
            self.order()
        );
        let (r, m) = (g % 4, g / 4);
        let mut a = if m == 1 { FLIP } else { ID };
        for _ in 0..r {
            a = mat_mul(&ROT, &a);
        }
        a
    }

    fn element_of(self, a: &Mat) -> usize {
        (0..self.order())
            .find(|&g| self.matrix(g) == *a)
            .expect("the group is closed")
    }

    /// The product `g h` (first `h`, then `g`).
    pub fn compose(self, g: usize, h: usize) -> usize {
        self.element_of(&mat_mul(&self.matrix(g), &self.matrix(h)))
    }

    /// The inverse `g^{-1}`.
    pub fn inverse(self, g: usize) -> usize {
        let a = self.matrix(g);
        // Orthogonal: the inverse is the transpose.
        self.element_of(&[[a[0][0], a[1][0]], [a[0][1], a[1][1]]])
    }

    /// Spatial index map of element `g` on an `n x n` grid: entry `q = i * n + j` of the result
    /// is the flat index of the source pixel `A_g^{-1} (i, j)`, so that
    /// `(g . f)[q] = f[map[q]]`.
    pub fn spatial_map(self, g: usize, n: usize) -> Vec<usize> {
        let inv = self.matrix(self.inverse(g));
        let c = n as i64 - 1;
        let mut out = Vec::with_capacity(n * n);
        for i in 0..n as i64 {
            for j in 0..n as i64 {
                let (y, x) = (2 * i - c, 2 * j - c);
                let ys = inv[0][0] * y + inv[0][1] * x;
                let xs = inv[1][0] * y + inv[1][1] * x;
                let (si, sj) = ((ys + c) / 2, (xs + c) / 2);
                out.push((si * n as i64 + sj) as usize);
            }
        }
        out
    }

    /// `g . x` for images `x: [B, C, n, n]` (every channel transforms as a scalar field).
    pub fn transform_image(self, g: usize, x: &Tensor) -> Result<Tensor> {
        self.transform(g, x, false)
    }

    /// `g . x` for regular feature maps `x: [B, C * |G|, n, n]` (channel `c * |G| + h` is copy
    /// `h` of field `c`): `(g . x)[c, h, p] = x[c, g^{-1} h, A_g^{-1} p]`.
    pub fn transform_fields(self, g: usize, x: &Tensor) -> Result<Tensor> {
        self.transform(g, x, true)
    }

    fn transform(self, g: usize, x: &Tensor, regular: bool) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 || s[2] != s[3] {
            return Err(NnError::InvalidBatch(format!(
                "group actions need square maps [B, C, n, n], got {s:?}"
            )));
        }
        let (b, ch, n) = (s[0], s[1], s[2]);
        let order = self.order();
        if regular && !ch.is_multiple_of(order) {
            return Err(NnError::InvalidBatch(format!(
                "{ch} channels are not whole fields of {order} copies"
            )));
        }
        let space = self.spatial_map(g, n);
        let ginv = self.inverse(g);
        let v = x.to_vec();
        let mut out = vec![0.0f32; v.len()];
        let hw = n * n;
        for bi in 0..b {
            for c in 0..ch {
                let src_c = if regular {
                    let (field, h) = (c / order, c % order);
                    field * order + self.compose(ginv, h)
                } else {
                    c
                };
                let dst = &mut out[(bi * ch + c) * hw..(bi * ch + c + 1) * hw];
                let src = &v[(bi * ch + src_c) * hw..(bi * ch + src_c + 1) * hw];
                for (d, &q) in dst.iter_mut().zip(&space) {
                    *d = src[q];
                }
            }
        }
        Ok(Tensor::from_vec(out, s)?.to_device(x.device())?)
    }
}
