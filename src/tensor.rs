//! Host tensors and the float trait the CPU path is generic over.

use crate::error::{Error, Result};

/// The element types of the CPU path: `f32` (the engine's arithmetic) and `f64` (for
/// checking gradients against finite differences).
///
/// [`Float::gemm`] is `C ← α·A·B + β·C` on strided row/column layouts, through the `gemm`
/// crate (its kernels picked at run time: AVX-512, AVX2 + FMA, or portable code). A product of
/// at least [`SPLIT_WORK`] multiply-adds is cut into independent blocks of rows or columns, by
/// its shape alone, and the blocks run on rayon's threads: every element is computed by one
/// block in the same order whatever the number of threads, so results are bit-identical run
/// after run and from one thread count to another.
///
/// [`Float::tanh_act`] and [`Float::sigmoid_act`] are the activations of the cells: for `f64`
/// the standard library's (the reference of the differential tests), for `f32` branch-free
/// versions that the compiler vectorises where the CPU has FMA (within 2 ulp of the correctly
/// rounded value, PyTorch's values at ±inf and NaN; see `tests` below).
pub trait Float:
    num_traits::Float + num_traits::FromPrimitive + Default + std::fmt::Debug + Send + Sync + 'static
{
    /// `C[m×n] ← α·A[m×k]·B[k×n] + β·C`, where element `(i, j)` of `A` lives at
    /// `a[i·rsa + j·csa]` (likewise `B`, `C`). When `β = 0`, `C` is not read.
    ///
    /// # Panics
    /// When a slice is too short for the given dimensions and strides.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: usize,
        csa: usize,
        b: &[Self],
        rsb: usize,
        csb: usize,
        beta: Self,
        c: &mut [Self],
        rsc: usize,
        csc: usize,
    ) {
        assert!(a.len() >= span(m, k, rsa, csa), "gemm: a too short");
        assert!(b.len() >= span(k, n, rsb, csb), "gemm: b too short");
        assert!(c.len() >= span(m, n, rsc, csc), "gemm: c too short");
        // SAFETY: the asserts above bound every index of the whole product, and the slices'
        // borrows keep other threads away from them.
        unsafe {
            gemm_raw(
                m,
                k,
                n,
                alpha,
                a.as_ptr(),
                [rsa, csa],
                b.as_ptr(),
                [rsb, csb],
                beta,
                c.as_mut_ptr(),
                [rsc, csc],
            )
        }
    }

    /// `tanh`, as the cells' activation (see the trait's docs).
    fn tanh_act(self) -> Self {
        self.tanh()
    }

    /// The logistic sigmoid `1 / (1 + e^-v)`: NaN for NaN, exactly 0 where `e^-v` overflows
    /// (see the trait's docs).
    fn sigmoid_act(self) -> Self {
        Self::one() / (Self::one() + (-self).exp())
    }

    /// Converts from f64 (exact for f64, rounded for f32).
    fn from_f64_lossy(v: f64) -> Self {
        <Self as num_traits::FromPrimitive>::from_f64(v).unwrap_or_else(Self::nan)
    }

    /// Converts to f64.
    fn to_f64_lossy(self) -> f64 {
        num_traits::ToPrimitive::to_f64(&self).unwrap_or(f64::NAN)
    }
}

/// The vector instructions of this CPU that the cells' elementwise loops use: 2 for AVX-512
/// (F, VL, DQ, BW), 1 for AVX2 + FMA, 0 for the baseline (and on other architectures).
/// Detected once.
pub(crate) fn simd_level() -> u8 {
    static LEVEL: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512vl") && has!("avx512dq") && has!("avx512bw") {
                return 2;
            }
            if has!("avx2") && has!("fma") {
                return 1;
            }
        }
        0
    })
}

/// [`Float::gemm`] on raw pointers (strides as `[row, column]`), for a product whose output
/// rows interleave with rows that other threads write at the same time (the CPU passes'
/// blocks of batch rows), which no `&mut` slice may cover.
///
/// # Safety
/// Every element of the `m×k` `a`, `k×n` `b` and `m×n` `c` must be in bounds of live
/// allocations; during the call no other thread may write an element of `a` or `b`, nor read
/// or write one of `c`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_raw<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: *const T,
    sa: [usize; 2],
    b: *const T,
    sb: [usize; 2],
    beta: T,
    c: *mut T,
    sc: [usize; 2],
) {
    if m == 0 || n == 0 {
        return;
    }
    let g = Strided {
        a,
        sa,
        b,
        sb,
        c: SendPtr(c),
        sc,
        alpha,
        beta,
    };
    // SAFETY: the caller's contract bounds every index; the blocks cover disjoint rows or
    // columns of the product.
    unsafe { g.run(m, k, n) }
}

/// Multiply-adds (`m·n·k`) from which [`Float::gemm`] cuts a product into blocks that run on
/// several threads (`work / SPLIT_WORK` blocks, at most 8): a product up to it is one call on
/// one thread, since forking costs more than it saves there. Measured on this project's 2-core
/// machine (`examples/gemm_candidates.rs` and `wgpu-rnn bench --device cpu`, BENCHMARKS.md,
/// issue 13): the suite's recurrent steps (2–17 M) lose time when cut (`mid` forward 8.2–8.7 ms
/// at 2^24 against 10.9–11.0 ms at 2^20, where its step is cut in two), the input projections
/// and weight gradients (10⁸–10⁹) gain 1.6–2×.
pub const SPLIT_WORK: usize = 1 << 24;

/// The most blocks a product is cut into.
const MAX_BLOCKS: usize = 8;

fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// A raw pointer that the blocks of one product share across threads (each writes its own
/// elements).
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: the blocks of a product write disjoint elements through it, and the product ends
// before the slice it came from is used again.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// The operands of one strided product (element `(i, j)` of `A` at `a[i·sa[0] + j·sa[1]]`).
#[derive(Clone, Copy)]
struct Strided<T> {
    a: *const T,
    sa: [usize; 2],
    b: *const T,
    sb: [usize; 2],
    c: SendPtr<T>,
    sc: [usize; 2],
    alpha: T,
    beta: T,
}
// SAFETY: as SendPtr; A and B are only read.
unsafe impl<T> Send for Strided<T> {}
unsafe impl<T> Sync for Strided<T> {}

impl<T: Float> Strided<T> {
    /// Runs `C[m×n] ← α·A·B + β·C`, cut by shape into blocks of rows (when `m >= n`) or of
    /// columns, each one single-threaded call of the `gemm` crate.
    ///
    /// # Safety
    /// Every element of the `m×k`, `k×n` and `m×n` operands must be in bounds.
    unsafe fn run(self, m: usize, k: usize, n: usize) {
        let blocks = (m.saturating_mul(n).saturating_mul(k) / SPLIT_WORK)
            .clamp(1, MAX_BLOCKS)
            .min(m.max(n));
        if blocks == 1 {
            // SAFETY: as the caller's.
            unsafe { self.block(0..m, 0..n, k) };
            return;
        }
        let rows = m >= n;
        let len = if rows { m } else { n };
        rayon::scope(|s| {
            for p in 0..blocks {
                let (lo, hi) = (p * len / blocks, (p + 1) * len / blocks);
                let g = self;
                s.spawn(move |_| {
                    let (r, c) = match rows {
                        true => (lo..hi, 0..n),
                        false => (0..m, lo..hi),
                    };
                    // SAFETY: a sub-range of the caller's product; blocks are disjoint.
                    unsafe { g.block(r, c, k) };
                });
            }
        });
    }

    /// One single-threaded `gemm` call on rows `r` and columns `c` of the product.
    ///
    /// # Safety
    /// As [`Strided::run`].
    unsafe fn block(&self, r: std::ops::Range<usize>, c: std::ops::Range<usize>, k: usize) {
        let (m, n) = (r.len(), c.len());
        if m == 0 || n == 0 {
            return;
        }
        // SAFETY: in bounds by the caller's contract. The `gemm` crate computes
        // `dst ← α_g·dst + β_g·lhs·rhs`: our β scales C, our α the product.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                self.c.0.add(r.start * self.sc[0] + c.start * self.sc[1]),
                self.sc[1] as isize,
                self.sc[0] as isize,
                self.beta != T::zero(),
                self.a.add(r.start * self.sa[0]),
                self.sa[1] as isize,
                self.sa[0] as isize,
                self.b.add(c.start * self.sb[1]),
                self.sb[1] as isize,
                self.sb[0] as isize,
                self.beta,
                self.alpha,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    }
}

impl Float for f64 {}

impl Float for f32 {
    #[inline(always)]
    fn tanh_act(self) -> f32 {
        tanh_f32(self)
    }

    #[inline(always)]
    fn sigmoid_act(self) -> f32 {
        1.0 / (1.0 + exp_f32(-self))
    }
}

/// `e^x` in f32 for the activations, without branches or calls, so that loops over it
/// vectorise: Cody and Waite's range reduction `x = n·ln 2 + r` and a degree-6 polynomial for
/// `e^r` (the coefficients of Cephes' `expf`, Moshier 1992, evaluated by Estrin's scheme),
/// scaled by `2^n` built from exponent bits. Within 1 ulp for `-87.33 ≤ x ≤ 88.376`; `inf`
/// from `127.5 / log2(e) = 88.37627` up, where `2^n` overflows (the true value overflows from
/// 88.72); `e^-87.33` below (`2^n` stays normal): the activations add it to 1. NaN for NaN.
///
/// The multiply-adds are fused (`mul_add`): the same bits at every SIMD level, one
/// instruction where the CPU has FMA (the C library's `fmaf` where it has not). Against the
/// unfused form with exact subnormal scaling this took the LSTM cell from 1.64 to 1.00 ns an
/// element (hot, AVX-512, this project's AMD EPYC).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as printed
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.33, 88.72);
    // Rounded to nearest by adding and taking away 1.5·2^23 (what SSE2 vectorises; `round`
    // is a libm call without SSE4.1).
    const ROUND: f32 = 12_582_912.0;
    let shifted = xc.mul_add(LOG2E, ROUND);
    let n = shifted - ROUND;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, xc));
    // Estrin's scheme: three short chains instead of Horner's one of five steps, which left
    // the CPU waiting on latency (the LSTM cell 10% faster).
    let r2 = r * r;
    let a = 1.666_666_5e-1f32.mul_add(r, 5.000_000_1e-1);
    let b = 8.333_452e-3f32.mul_add(r, 4.166_579_6e-2);
    let c = 1.987_569_1e-4f32.mul_add(r, 1.398_199_9e-3);
    let p = r2.mul_add(r2.mul_add(c, b), a);
    let e = p.mul_add(r2, r) + 1.0;
    // n is in [-126, 128]; 2^128 is the bit pattern of inf. The integer n is read from the
    // low bits of `shifted` (its exponent is fixed by ROUND), not cast with `as i32`, whose
    // saturating semantics the compiler scalarises lane by lane; for NaN it is garbage that
    // the NaN in `e` absorbs, hence the wrapping arithmetic.
    let ni = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    e * f32::from_bits((ni.wrapping_add(127) as u32) << 23)
}

/// `tanh(x)` in f32 without branches or calls: an odd polynomial for `|x| < 0.625` (Cephes'
/// `tanhf`, Moshier 1992), else `1 - 2/(e^{2|x|} + 1)` with the sign of `x`; ±1 at ±inf, NaN
/// for NaN.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as printed
fn tanh_f32(x: f32) -> f32 {
    let ax = x.abs();
    let z = x * x;
    let p = (-5.704_988_7e-3f32).mul_add(z, 2.063_908_9e-2);
    let p = p.mul_add(z, -5.373_971_6e-2).mul_add(z, 1.333_144_2e-1);
    let small = (p.mul_add(z, -3.333_328_2e-1) * z).mul_add(x, x);
    let large = 1.0 - 2.0 / (exp_f32(2.0 * ax) + 1.0);
    // The sign of x on both branches (tanh(-0) = -0).
    if ax < 0.625 { small } else { large }.copysign(x)
}

/// A dense row-major tensor on the host.
///
/// # Example
/// ```
/// use wgpu_rnn::Tensor;
/// let x = Tensor::new(vec![2, 3], vec![0.0f32; 6]).unwrap();
/// assert_eq!(x.shape(), &[2, 3]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T = f32> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Copy> Tensor<T> {
    /// Wraps `data` with `shape`.
    ///
    /// # Errors
    /// [`Error::Config`] when `data.len()` is not the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::config(format!(
                "tensor of shape {shape:?} needs {n} elements, found {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: T) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![value; shape.iter().product()],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// Mutable access to the elements.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Elementwise conversion to another element type.
    pub fn map<U: Copy>(&self, f: impl Fn(T) -> U) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    /// Checks the shape against `expected`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `name`.
    pub fn expect_shape(&self, name: &str, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::shape(name, expected, &self.shape));
        }
        Ok(())
    }
}

impl<T: Float> Tensor<T> {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::zero())
    }

    /// Checks that every element is finite.
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming `name` and the first bad index.
    pub fn expect_finite(&self, name: &str) -> Result<()> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(index) => Err(Error::NonFinite {
                name: name.to_string(),
                index,
                value: self.data[index].to_f64_lossy(),
            }),
        }
    }

    /// Converts to another float type.
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        self.map(|v| U::from_f64_lossy(v.to_f64_lossy()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two f32 of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Every 97th f32 from -`max` to `max` (about 2·10⁷ values), and the edges.
    fn sweep(max: f32) -> impl Iterator<Item = f32> {
        let top = max.to_bits();
        (0..=top)
            .step_by(97)
            .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
            .chain([0.0, -0.0, max, -max, f32::MIN_POSITIVE, 1e-30])
    }

    #[test]
    fn exp_is_within_one_ulp_where_the_activations_need_it() {
        let mut worst = (0, 0.0);
        for x in sweep(110.0) {
            let got = exp_f32(x);
            if x > 88.3763 {
                // 2^128 from 127.5 / log2(e) = 88.37627 on.
                assert_eq!(got, f32::INFINITY, "exp({x})");
            } else if x > 88.3762 {
                continue;
            } else if x < -87.33 {
                assert_eq!(got, exp_f32(-87.33), "exp({x})");
            } else {
                let u = ulps(got, (x as f64).exp() as f32);
                if u > worst.0 {
                    worst = (u, x);
                }
            }
        }
        assert!(worst.0 <= 1, "exp: {} ulps at {}", worst.0, worst.1);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(-87.33) < 1.2e-38 && exp_f32(f32::NEG_INFINITY) == exp_f32(-87.33));
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_and_sigmoid_are_within_two_ulps_with_pytorchs_edges() {
        let (mut wt, mut ws) = ((0, 0.0), (0, 0.0));
        for x in sweep(120.0) {
            let t = tanh_f32(x);
            let u = ulps(t, (x as f64).tanh() as f32);
            if u > wt.0 {
                wt = (u, x);
            }
            let s = x.sigmoid_act();
            if x < -88.3763 {
                // e^-x overflows (where the true value overflows from 88.72): exactly 0.
                assert_eq!(s, 0.0, "sigmoid({x})");
                continue;
            }
            let u = ulps(s, (1.0 / (1.0 + (-(x as f64)).exp())) as f32);
            if u > ws.0 {
                ws = (u, x);
            }
        }
        assert!(wt.0 <= 2, "tanh: {} ulps at {}", wt.0, wt.1);
        assert!(ws.0 <= 2, "sigmoid: {} ulps at {}", ws.0, ws.1);
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f32::NEG_INFINITY.sigmoid_act(), 0.0);
        assert_eq!((-89.0f32).sigmoid_act(), 0.0, "0 where e^-v overflows");
        assert_eq!(f32::INFINITY.sigmoid_act(), 1.0);
        assert!(f32::NAN.sigmoid_act().is_nan());
    }

    /// A product cut into blocks gives the same bits on 1 thread and on 2, and agrees with a
    /// plain f64 product; strides of every kind (transposed operands, a strided C).
    #[test]
    fn gemm_blocks_are_bit_identical_on_any_thread_count() {
        let (m, k, n) = (1500, 257, 190); // 73 M multiply-adds: 4 blocks of rows
        let a: Vec<f32> = (0..m * k)
            .map(|v| ((v * 7 % 29) as f32 - 14.0) / 29.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|v| ((v * 5 % 23) as f32 - 11.0) / 23.0)
            .collect();
        let run = |threads: usize, ta: bool, beta: f32| {
            let mut c: Vec<f32> = (0..m * n * 2).map(|v| (v % 3) as f32).collect();
            let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                f32::gemm(m, k, n, 0.5, &a, rsa, csa, &b, n, 1, beta, &mut c, 1, 2 * m);
            });
            c
        };
        for ta in [false, true] {
            for beta in [0.0, 1.0] {
                let one = run(1, ta, beta);
                assert_eq!(
                    one,
                    run(2, ta, beta),
                    "ta {ta}, beta {beta}: 1 vs 2 threads"
                );
                assert_eq!(
                    one,
                    run(3, ta, beta),
                    "ta {ta}, beta {beta}: 1 vs 3 threads"
                );
                for (i, j) in [(0, 0), (m - 1, n - 1), (137, 55), (1100, 3)] {
                    let mut want = 0.0f64;
                    for p in 0..k {
                        let av = if ta { a[p * m + i] } else { a[i * k + p] };
                        want += av as f64 * b[p * n + j] as f64;
                    }
                    let c0 = ((i + j * 2 * m) % 3) as f64;
                    let want = 0.5 * want + beta as f64 * c0;
                    let got = one[i + j * 2 * m] as f64;
                    assert!((got - want).abs() < 1e-4, "({i}, {j}): {got} vs {want}");
                }
            }
        }
    }
}
