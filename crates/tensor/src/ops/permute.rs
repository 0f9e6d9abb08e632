//! Dimension permutation (the only op that materialises a strided view).

use rayon::prelude::*;

use crate::tensor::numel;

/// CPU kernel: output dimension `i` is input dimension `perm[i]`.
pub(crate) fn cpu_permute(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let r = shape.len();
    let n = numel(shape);
    if r == 0 || n == 0 {
        return crate::buffers::copied(x);
    }
    let mut in_strides = vec![1; r];
    for i in (0..r.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let last = out_shape[r - 1];
    let ls = strides[r - 1];
    // Every row of the output is written below.
    let mut out = crate::buffers::for_overwrite(n);
    out.par_chunks_mut(last).enumerate().for_each(|(row, dst)| {
        let mut rem = row;
        let mut off = 0;
        for d in (0..r - 1).rev() {
            off += (rem % out_shape[d]) * strides[d];
            rem /= out_shape[d];
        }
        for (k, v) in dst.iter_mut().enumerate() {
            *v = x[off + k * ls];
        }
    });
    out
}
