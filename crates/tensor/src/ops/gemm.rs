//! The single-precision GEMM primitive every heavy kernel (matmul, conv2d) is built on.
//!
//! Two engines are available and selectable at run time ([`set_gemm_engine`]): the system
//! OpenBLAS (Debian `libopenblas-dev`, called through `cblas-sys`) and the pure-Rust
//! `matrixmultiply`. OpenBLAS is the default because it measured faster on the development VM
//! (see `docs/benchmarks.md`).
//!
//! # Threading: one level only
//! The machine has few cores and OpenBLAS brings its own thread pool, so calling a threaded BLAS
//! from inside rayon tasks would oversubscribe the CPU (2 rayon workers x 2 BLAS threads on 2
//! cores) and thrash caches. We therefore parallelise at exactly one level, rayon:
//! OpenBLAS is switched to one thread the first time a GEMM runs, and
//! * conv2d and batched matmul split work across examples with rayon and call the serial GEMM,
//! * a single large GEMM (`sgemm`) is split into row panels of `C`, two per rayon thread, each
//!   a serial BLAS call. Nested calls from inside rayon tasks stay inside rayon's fixed pool, so
//!   no extra threads appear.
//!
//! Measured on the 2-core development VM (see `docs/benchmarks.md`), rayon panels over
//! single-threaded OpenBLAS reach about 90% of OpenBLAS's own two-thread sgemm at 1024^3, and
//! the per-example parallelism of conv kernels needs no BLAS threads at all, so the single
//! level costs little where one big GEMM runs and avoids oversubscription everywhere else.

use std::os::raw::c_int;
use std::sync::Once;
use std::sync::atomic::{AtomicU8, Ordering};

use cblas_sys::{CBLAS_LAYOUT, CBLAS_TRANSPOSE, cblas_sgemm};

use crate::error::{Result, TensorError};

// Links the system OpenBLAS (Debian `libopenblas-dev` provides `libopenblas.so`). `openblas-src`
// is not used: with `default-features = false` and the `system` feature, its 0.10 release still
// builds `openblas-build`, which refuses to compile without one of its TLS downloader features.
// The linker flag is all we need.
#[link(name = "openblas")]
unsafe extern "C" {
    fn openblas_set_num_threads(num_threads: c_int);
    fn openblas_get_num_threads() -> c_int;
}

/// Which GEMM implementation the CPU backend uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmEngine {
    /// System OpenBLAS (`cblas_sgemm`), run single-threaded under rayon. The default.
    OpenBlas,
    /// The pure-Rust `matrixmultiply` crate, single-threaded under rayon.
    MatrixMultiply,
}

static ENGINE: AtomicU8 = AtomicU8::new(0);
static BLAS_INIT: Once = Once::new();

/// Selects the GEMM engine for all later CPU kernels (process-wide).
pub fn set_gemm_engine(engine: GemmEngine) {
    ENGINE.store(
        match engine {
            GemmEngine::OpenBlas => 0,
            GemmEngine::MatrixMultiply => 1,
        },
        Ordering::Relaxed,
    );
}

/// The GEMM engine currently in use.
pub fn gemm_engine() -> GemmEngine {
    match ENGINE.load(Ordering::Relaxed) {
        0 => GemmEngine::OpenBlas,
        _ => GemmEngine::MatrixMultiply,
    }
}

fn init_blas() {
    // SAFETY: plain FFI call into OpenBLAS with a valid thread count.
    BLAS_INIT.call_once(|| unsafe { openblas_set_num_threads(1) });
}

/// Sets OpenBLAS's own thread count. The backend keeps it at 1 (see the module docs); the
/// benchmark raises it temporarily to measure raw multi-threaded OpenBLAS. Do not call it while
/// other threads are running GEMMs.
pub fn set_blas_threads(n: usize) {
    init_blas();
    // SAFETY: plain FFI call with a positive thread count.
    unsafe { openblas_set_num_threads(n.clamp(1, c_int::MAX as usize) as c_int) };
}

/// OpenBLAS's current thread count.
pub fn blas_threads() -> usize {
    init_blas();
    // SAFETY: plain FFI call without arguments.
    unsafe { openblas_get_num_threads() as usize }
}

/// Calls `cblas_sgemm` directly (row-major, `C = A B` with `A: m x k`, `B: k x n`, tight
/// strides) with whatever thread count OpenBLAS has; used by the benchmark to measure raw
/// OpenBLAS. Slices shorter than their shapes need are a [`TensorError::LengthMismatch`], and
/// so are dimensions beyond OpenBLAS's 32-bit integers.
pub fn raw_openblas_sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
) -> Result<()> {
    for (need, got) in [
        (m.checked_mul(k), a.len()),
        (k.checked_mul(n), b.len()),
        (m.checked_mul(n), c.len()),
    ] {
        let need = need.unwrap_or(usize::MAX);
        if got < need || [m, n, k].iter().any(|&d| d > c_int::MAX as usize) {
            return Err(TensorError::LengthMismatch {
                op: "raw_openblas_sgemm",
                expected: need,
                actual: got,
            });
        }
    }
    init_blas();
    // SAFETY: slices are long enough for row-major m x k, k x n, m x n with tight strides.
    unsafe {
        cblas_sgemm(
            CBLAS_LAYOUT::CblasRowMajor,
            CBLAS_TRANSPOSE::CblasNoTrans,
            CBLAS_TRANSPOSE::CblasNoTrans,
            m as c_int,
            n as c_int,
            k as c_int,
            1.0,
            a.as_ptr(),
            k as c_int,
            b.as_ptr(),
            n as c_int,
            0.0,
            c.as_mut_ptr(),
            n as c_int,
        )
    };
    Ok(())
}

/// Describes one operand of a GEMM: its data, leading dimension and whether it is transposed.
///
/// `op(A)` is `rows x cols` of the product; if `trans` is false the data is stored row-major as
/// `rows x ld` (ld >= cols), otherwise as `cols x ld` (ld >= rows) and read transposed.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub ld: usize,
    pub trans: bool,
}

impl<'a> Operand<'a> {
    pub(crate) fn new(data: &'a [f32], ld: usize, trans: bool) -> Self {
        Operand { data, ld, trans }
    }

    /// Minimum length the slice needs for an op(X) of `rows x cols`.
    fn needed(&self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            return 0;
        }
        if self.trans {
            (cols - 1) * self.ld + rows
        } else {
            (rows - 1) * self.ld + cols
        }
    }

    /// The operand restricted to rows `r0..` of op(X) (used to split M).
    fn rows_from(&self, r0: usize) -> Operand<'a> {
        let off = if self.trans { r0 } else { r0 * self.ld };
        Operand {
            data: &self.data[off.min(self.data.len())..],
            ..*self
        }
    }
}

/// `C = alpha * op(A) op(B) + beta * C` on the calling thread, C row-major `m x n` with leading
/// dimension `ldc`. With `beta == 0` the old contents of C are ignored (never read).
///
/// Panics only on internal misuse (slices too short): callers in this crate validate shapes first.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_serial(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Operand<'_>,
    b: Operand<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.data.len() >= a.needed(m, k), "gemm: A too short");
    assert!(b.data.len() >= b.needed(k, n), "gemm: B too short");
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: C too short");
    if k == 0 {
        for i in 0..m {
            for v in &mut c[i * ldc..i * ldc + n] {
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return;
    }
    match gemm_engine() {
        GemmEngine::OpenBlas => {
            init_blas();
            let t = |x: bool| {
                if x {
                    CBLAS_TRANSPOSE::CblasTrans
                } else {
                    CBLAS_TRANSPOSE::CblasNoTrans
                }
            };
            // SAFETY: the asserts above guarantee every access cblas makes is in bounds.
            unsafe {
                cblas_sgemm(
                    CBLAS_LAYOUT::CblasRowMajor,
                    t(a.trans),
                    t(b.trans),
                    m as c_int,
                    n as c_int,
                    k as c_int,
                    alpha,
                    a.data.as_ptr(),
                    a.ld.max(1) as c_int,
                    b.data.as_ptr(),
                    b.ld.max(1) as c_int,
                    beta,
                    c.as_mut_ptr(),
                    ldc.max(1) as c_int,
                )
            }
        }
        GemmEngine::MatrixMultiply => {
            let (rsa, csa) = if a.trans { (1, a.ld) } else { (a.ld, 1) };
            let (rsb, csb) = if b.trans { (1, b.ld) } else { (b.ld, 1) };
            // SAFETY: the asserts above bound every element matrixmultiply touches.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    alpha,
                    a.data.as_ptr(),
                    rsa as isize,
                    csa as isize,
                    b.data.as_ptr(),
                    rsb as isize,
                    csb as isize,
                    beta,
                    c.as_mut_ptr(),
                    ldc as isize,
                    1,
                )
            }
        }
    }
}

/// Smallest row panel worth a task of its own.
const MIN_PANEL_ROWS: usize = 64;

/// Below this many multiply-adds a GEMM is not worth splitting across threads.
const PAR_MIN_FLOPS: usize = 1 << 21;

/// Parallel `C = alpha * op(A) op(B) + beta * C`: splits C into one panel per rayon thread
/// (row panels) and runs a serial GEMM per panel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Operand<'_>,
    b: Operand<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let threads = rayon::current_num_threads();
    if threads <= 1 || m.saturating_mul(n).saturating_mul(k) < PAR_MIN_FLOPS {
        return sgemm_serial(m, n, k, alpha, a, b, beta, c, ldc);
    }
    if m < 2 * MIN_PANEL_ROWS {
        // Too few rows to split; column panels would need aliasing `&mut` views of C.
        return sgemm_serial(m, n, k, alpha, a, b, beta, c, ldc);
    }
    // Row panels of C are disjoint contiguous ranges: split by chunks of ldc * rows. Two
    // panels per thread: a spare panel lets work stealing absorb a core taken by another
    // process, while every extra panel re-packs all of B (four per thread cost ~15% of a
    // 1024^3 product in packing on the development VM).
    let panels = (2 * threads).min(m / MIN_PANEL_ROWS).max(2);
    let rows = m.div_ceil(panels);
    let panels = split_rows(c, rows * ldc, m, rows);
    rayon::scope(|s| {
        for (i, panel) in panels.into_iter().enumerate() {
            let r0 = i * rows;
            let mr = rows.min(m - r0);
            s.spawn(move |_| sgemm_serial(mr, n, k, alpha, a.rows_from(r0), b, beta, panel, ldc));
        }
    });
}

fn split_rows(c: &mut [f32], chunk: usize, m: usize, rows: usize) -> Vec<&mut [f32]> {
    let panels = m.div_ceil(rows);
    let mut out = Vec::with_capacity(panels);
    let mut rest = c;
    for _ in 0..panels {
        let take = chunk.min(rest.len());
        let (head, tail) = rest.split_at_mut(take);
        out.push(head);
        rest = tail;
    }
    out
}
