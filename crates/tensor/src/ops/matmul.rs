//! Matrix products: 2-D `matmul`, batched `matmul` and their backward, with transposed operands
//! expressed as flags (no transposed copies are made; BLAS reads the operand transposed).

use rayon::prelude::*;

use crate::backend::{BackendOps, CpuBackend};
use crate::device::Storage;
use crate::error::{Result, mismatch};
use crate::ops::gemm::{Operand, sgemm, sgemm_serial};
use crate::tensor::{Tensor, check_same_device};

/// Geometry of a (batched) product `C[b] = op(A[b]) op(B[b])`, validated by [`Tensor::matmul_t`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulSpec {
    /// Number of products.
    pub batch: usize,
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// A is stored transposed (`k x m`).
    pub trans_a: bool,
    /// B is stored transposed (`n x k`).
    pub trans_b: bool,
    /// A has one matrix per batch entry (otherwise it is shared).
    pub a_batched: bool,
    /// B has one matrix per batch entry (otherwise it is shared).
    pub b_batched: bool,
}

/// CPU kernel for [`MatmulSpec`]; returns C as `batch x m x n`.
pub(crate) fn cpu_matmul(a: &[f32], b: &[f32], s: MatmulSpec) -> Vec<f32> {
    let MatmulSpec {
        batch,
        m,
        n,
        k,
        trans_a,
        trans_b,
        a_batched,
        b_batched,
    } = s;
    // Every GEMM below runs with beta = 0, which never reads C (see `gemm::sgemm_serial`).
    let mut c = crate::buffers::for_overwrite(batch * m * n);
    let lda = if trans_a { m } else { k };
    let ldb = if trans_b { k } else { n };
    if batch == 0 || m == 0 || n == 0 {
        return c;
    }
    if a_batched && !b_batched && !trans_a {
        // A stack of row-major A's with a shared B is one tall GEMM: (batch*m) x k times k x n.
        sgemm(
            batch * m,
            n,
            k,
            1.0,
            Operand::new(a, lda, false),
            Operand::new(b, ldb, trans_b),
            0.0,
            &mut c,
            n,
        );
        return c;
    }
    let a_stride = if a_batched { m * k } else { 0 };
    let b_stride = if b_batched { k * n } else { 0 };
    let one = |i: usize, ci: &mut [f32], parallel: bool| {
        let ao = Operand::new(&a[i * a_stride..], lda, trans_a);
        let bo = Operand::new(&b[i * b_stride..], ldb, trans_b);
        if parallel {
            sgemm(m, n, k, 1.0, ao, bo, 0.0, ci, n);
        } else {
            sgemm_serial(m, n, k, 1.0, ao, bo, 0.0, ci, n);
        }
    };
    if batch >= rayon::current_num_threads() {
        // Parallelise over the batch; each product runs single-threaded (one level only).
        c.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, ci)| one(i, ci, false));
    } else {
        for (i, ci) in c.chunks_mut(m * n).enumerate() {
            one(i, ci, true);
        }
    }
    c
}

impl Tensor {
    /// Matrix product `self @ rhs`; see [`Tensor::matmul_t`] for the accepted ranks.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_t(rhs, false, false)
    }

    /// Batched product `self @ rhs` of rank-3 tensors `[B, m, k] @ [B, k, n] -> [B, m, n]`.
    pub fn bmm(&self, rhs: &Tensor) -> Result<Tensor> {
        if self.rank() != 3 || rhs.rank() != 3 {
            return Err(mismatch("bmm", self.shape(), rhs.shape()));
        }
        self.matmul_t(rhs, false, false)
    }

    /// `op(self) @ op(rhs)` where `op` transposes the last two dimensions when the flag is set;
    /// the transpose is folded into the GEMM call, never materialised.
    ///
    /// Accepted ranks: `2 x 2` (`[m,k] @ [k,n]`), `3 x 3` with equal batch, `3 x 2` (the right
    /// operand is shared by every batch entry) and `2 x 3` (the left operand is shared).
    pub fn matmul_t(&self, rhs: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        check_same_device("matmul", self, rhs)?;
        let (sa, sb) = (self.shape(), rhs.shape());
        let err = || mismatch("matmul", sa, sb);
        let (a_batch, ar, ac) = split_matrix(sa).ok_or_else(err)?;
        let (b_batch, br, bc) = split_matrix(sb).ok_or_else(err)?;
        let (m, ka) = if trans_a { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if trans_b { (bc, br) } else { (br, bc) };
        if ka != kb {
            return Err(err());
        }
        let batch = match (a_batch, b_batch) {
            (Some(x), Some(y)) if x == y => Some(x),
            (Some(_), Some(_)) => return Err(err()),
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) => None,
        };
        let spec = MatmulSpec {
            batch: batch.unwrap_or(1),
            m,
            n,
            k: ka,
            trans_a,
            trans_b,
            a_batched: a_batch.is_some(),
            b_batched: b_batch.is_some(),
        };
        let shape = match batch {
            Some(bt) => vec![bt, m, n],
            None => vec![m, n],
        };
        let storage = match (self.storage(), rhs.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(CpuBackend.matmul(a, b, spec)),
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(a), Storage::Wgpu(b)) => {
                crate::device::on_gpu("matmul", spec.batch * spec.m * spec.n, |g| {
                    g.matmul(a, b, spec)
                })?
            }
            #[allow(unreachable_patterns)]
            _ => return Err(crate::tensor::mixed_devices("matmul")),
        };
        Ok(Tensor::from_storage(storage, shape))
    }

    /// Gradients of `C = op(A) @ op(B)` with respect to the stored `A` and `B`, given `dC`.
    ///
    /// Shapes match [`Tensor::matmul_t`]; a shared (rank-2) operand of a batched product gets
    /// its gradient summed over the batch.
    pub fn matmul_backward(
        a: &Tensor,
        b: &Tensor,
        grad: &Tensor,
        trans_a: bool,
        trans_b: bool,
    ) -> Result<(Tensor, Tensor)> {
        let expect = a.matmul_t(b, trans_a, trans_b)?;
        if expect.shape() != grad.shape() {
            return Err(mismatch("matmul_backward", expect.shape(), grad.shape()));
        }
        // dA (as stored): !ta -> dC op(B)^T;  ta -> op(B) dC^T.
        let da = if trans_a {
            b.matmul_t(grad, trans_b, true)?
        } else {
            grad.matmul_t(b, false, !trans_b)?
        };
        // dB (as stored): !tb -> op(A)^T dC;  tb -> dC^T op(A).
        let db = if trans_b {
            grad.matmul_t(a, true, trans_a)?
        } else {
            a.matmul_t(grad, !trans_a, false)?
        };
        let da = if a.rank() == 2 && da.rank() == 3 {
            da.sum_axis(0, false)?
        } else {
            da
        };
        let db = if b.rank() == 2 && db.rank() == 3 {
            db.sum_axis(0, false)?
        } else {
            db
        };
        Ok((da, db))
    }
}

/// `[r, c] -> (None, r, c)`, `[b, r, c] -> (Some(b), r, c)`, other ranks -> `None`.
fn split_matrix(s: &[usize]) -> Option<(Option<usize>, usize, usize)> {
    match *s {
        [r, c] => Some((None, r, c)),
        [b, r, c] => Some((Some(b), r, c)),
        _ => None,
    }
}
