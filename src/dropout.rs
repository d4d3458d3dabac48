//! Dropout between layers in training, with masks from a counter-based generator.
//!
//! PyTorch's `nn.RNN(..., dropout=p)` (and `nn.LSTM`, `nn.GRU`): in training, the output of
//! every layer but the last is multiplied by a mask before it feeds the layer above; each
//! element is zeroed with probability `p` and the others are scaled by `1/(1-p)`, so the
//! expectation is unchanged. Inference never drops.
//!
//! The mask is a pure function of `(seed, step, layer, index)`, where `step` counts training
//! steps (the optimizer steps taken before this one), `layer` is the layer whose output is
//! dropped and `index` the element's flat index `(t·B + b)·D·H + j` in that output
//! `[T, B, D·H]`. It comes from Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random
//! numbers: as easy as 1, 2, 3", SC 2011), which is implemented with the same u32 arithmetic
//! here and in `shaders/dropout.wgsl`, so the GPU and the CPU draw the same masks and a run is
//! reproducible from its seed (and continues exactly from a checkpoint, which holds the step):
//!
//! - key `[seed mod 2³², seed >> 32]`, counter `[index >> 2, layer, step mod 2³², step >> 32]`;
//!   element `index` takes word `index & 3` of the block, `u`;
//! - the element is dropped iff `u < threshold`, `threshold = round(p·2³²)` (so `p = 0` never
//!   drops), and a kept element becomes `y·scale`, `scale = 1/(1-p)` computed in f32;
//!   a dropped one becomes `y·0` (zero, or NaN for a non-finite `y`, as PyTorch's `y·mask`).

use crate::cell::simd_fn;
use crate::error::{Error, Result};
use crate::tensor::Float;

/// Philox's multipliers and Weyl key increments (Random123's `PHILOX_M4x32_*`,
/// `PHILOX_W32_*`).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The 64-bit product `a·b` as `(high, low)` words, from 16-bit halves with u32 arithmetic
/// only: WGSL has no 64-bit integers, and `shaders/dropout.wgsl` computes it the same way.
pub fn mul_hi_lo(a: u32, b: u32) -> (u32, u32) {
    let (a0, a1) = (a & 0xFFFF, a >> 16);
    let (b0, b1) = (b & 0xFFFF, b >> 16);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    // Bits 16..48 of the product, with the carries of the low half.
    let mid = (p00 >> 16) + (p01 & 0xFFFF) + (p10 & 0xFFFF);
    let hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16);
    (hi, a.wrapping_mul(b))
}

/// Philox4x32-10: ten rounds of the Philox bijection of `counter` under `key`
/// (Salmon et al. 2011; Random123's `philox4x32_R(10, ctr, key)`).
///
/// # Example
/// ```
/// use wgpu_rnn::dropout::philox4x32_10;
/// // Random123's known-answer vector for a zero counter and key.
/// assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
/// ```
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    // The CPU multiplies in u64: the same product as `mul_hi_lo` (the shader's way, checked
    // equal by a test), several times faster.
    let mul = |a: u32, b: u32| {
        let p = u64::from(a) * u64::from(b);
        ((p >> 32) as u32, p as u32)
    };
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let (hi0, lo0) = mul(M0, c[0]);
        let (hi1, lo1) = mul(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Checks PyTorch's `dropout` argument: a probability in `[0, 1)`.
///
/// PyTorch also accepts `p = 1` (every element zeroed); here the layers above the first would
/// then only see zeros, and `1/(1-p)` is infinite, so it is refused.
///
/// # Errors
/// [`Error::Config`] naming `dropout` with the value, for NaN and anything outside `[0, 1)`.
pub fn check_p(p: f32) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(format!(
            "dropout: expected a probability in [0, 1), found {p}"
        )))
    }
}

/// Which masks a training step draws: the probability `p`, the run's `seed` and the step's
/// counter `step` (see the module docs for the generator).
///
/// # Example
/// ```
/// use wgpu_rnn::dropout::Dropout;
/// let d = Dropout::new(0.25, 7, 0)?;
/// assert_eq!(d.threshold(), 1 << 30);
/// assert_eq!(d.scale(), 1.0 / 0.75f32);
/// let kept = (0..4096).filter(|&i| d.keeps(1, i)).count();
/// assert!((2900..3250).contains(&kept)); // about 3/4 of 4096
/// # Ok::<(), wgpu_rnn::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing an element, in `[0, 1)`.
    pub p: f32,
    /// The run's seed: Philox's key.
    pub seed: u64,
    /// The training step's counter (optimizer steps taken before it).
    pub step: u64,
}

impl Dropout {
    /// The masks of step `step` of a run seeded `seed`, dropping with probability `p`.
    ///
    /// # Errors
    /// As [`check_p`].
    pub fn new(p: f32, seed: u64, step: u64) -> Result<Self> {
        check_p(p)?;
        Ok(Dropout { p, seed, step })
    }

    /// The masks of a training step: `None` for `p = 0` (no dropout: the passes take exactly
    /// the path without it), else [`Dropout`] `{ p, seed, step }` (`p` as checked by the
    /// model's config).
    pub fn in_training(p: f32, seed: u64, step: u64) -> Option<Self> {
        (p > 0.0).then_some(Dropout { p, seed, step })
    }

    /// `round(p·2³²)`: an element is dropped iff its uniform u32 is below it.
    pub fn threshold(&self) -> u32 {
        (f64::from(self.p) * 4_294_967_296.0)
            .round()
            .min(u32::MAX as f64) as u32
    }

    /// `1/(1-p)` in f32, the factor of the kept elements (the same bits on both devices).
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.p)
    }

    /// Philox's key: the seed's low and high words.
    pub fn key(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }

    /// The four uniform words of block `block` (elements `4·block .. 4·block + 4`) of layer
    /// `layer`'s output.
    pub fn block(&self, layer: usize, block: u32) -> [u32; 4] {
        let ctr = [
            block,
            layer as u32,
            self.step as u32,
            (self.step >> 32) as u32,
        ];
        philox4x32_10(ctr, self.key())
    }

    /// Whether element `index` (flat in `[T, B, D·H]`) of layer `layer`'s output is kept.
    pub fn keeps(&self, layer: usize, index: usize) -> bool {
        self.block(layer, (index >> 2) as u32)[index & 3] >= self.threshold()
    }

    /// Multiplies `data`, layer `layer`'s output (or the gradient flowing into it), by the
    /// mask in place: `x·scale` where kept, `x·0` where dropped.
    ///
    /// Every value's mask comes from its own counter, so pieces of [`APPLY_PIECE`] values run
    /// on rayon's threads with the same result as one loop.
    pub fn apply<T: Float>(&self, layer: usize, data: &mut [T]) {
        let piece = |(p, data): (usize, &mut [T])| mask_piece(self, layer, p * APPLY_PIECE, data);
        if data.len() <= APPLY_PIECE {
            piece((0, data));
        } else {
            use rayon::prelude::*;
            data.par_chunks_mut(APPLY_PIECE).enumerate().for_each(piece);
        }
    }

    /// [`Dropout::block`] of the [`LANES`] blocks from `first`, word by word: `[w][i]` is word
    /// `w` of block `first + i`. Written lane by lane so that the compiler vectorises the
    /// rounds (the products become one vector multiply of u32 pairs into u64).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lane i of four arrays: the form that vectorises
    fn lanes(&self, layer: usize, first: u32) -> [[u32; LANES]; 4] {
        let mut c: [[u32; LANES]; 4] = [
            std::array::from_fn(|i| first.wrapping_add(i as u32)),
            [layer as u32; LANES],
            [self.step as u32; LANES],
            [(self.step >> 32) as u32; LANES],
        ];
        let mut k = self.key();
        for round in 0..10 {
            if round > 0 {
                k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
            }
            for i in 0..LANES {
                let p0 = u64::from(M0) * u64::from(c[0][i]);
                let p1 = u64::from(M1) * u64::from(c[2][i]);
                let next = [
                    (p1 >> 32) as u32 ^ c[1][i] ^ k[0],
                    p1 as u32,
                    (p0 >> 32) as u32 ^ c[3][i] ^ k[1],
                    p0 as u32,
                ];
                for (w, v) in next.into_iter().enumerate() {
                    c[w][i] = v;
                }
            }
        }
        c
    }
}

/// Blocks that [`Dropout::apply`] draws at once.
const LANES: usize = 16;

simd_fn! {
    /// Masks `data`, the values of layer `layer`'s output from flat index `first` (a multiple
    /// of 4), in groups of [`LANES`] blocks.
    fn mask_piece<T: Float>(d: &Dropout, layer: usize, first: usize, data: &mut [T]) {
        let threshold = d.threshold();
        let scale = T::from_f32(d.scale()).expect("a finite f32 converts");
        for (g, group) in data.chunks_mut(4 * LANES).enumerate() {
            let u = d.lanes(layer, (first / 4 + g * LANES) as u32);
            // Word w of block i masks value 4·i + w.
            let mut f = [T::zero(); 4 * LANES];
            for (i, f) in f.chunks_exact_mut(4).enumerate() {
                for (w, f) in f.iter_mut().enumerate() {
                    *f = if u[w][i] >= threshold { scale } else { T::zero() };
                }
            }
            for (x, &f) in group.iter_mut().zip(&f) {
                *x = *x * f;
            }
        }
    }
}

/// Values per piece of [`Dropout::apply`] that one thread masks (a multiple of 4, the values
/// of one Philox block): a piece takes about 0.1 ms, far more than a fork.
pub const APPLY_PIECE: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_hi_lo_is_the_64_bit_product() {
        let mut x = 0x1234_5678u32;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let y = x.rotate_left(11) ^ 0xDEAD_BEEF;
            let p = u64::from(x) * u64::from(y);
            assert_eq!(mul_hi_lo(x, y), ((p >> 32) as u32, p as u32), "{x} * {y}");
        }
        assert_eq!(mul_hi_lo(u32::MAX, u32::MAX), (u32::MAX - 1, 1));
    }

    /// Pieces on threads give the mask of one loop over every counter.
    #[test]
    fn apply_in_pieces_is_the_mask_of_each_counter() {
        let d = Dropout::new(0.3, 7, 2).unwrap();
        let n = 3 * APPLY_PIECE + 10;
        let mut data = vec![1.0f32; n];
        d.apply(1, &mut data);
        let scale = d.scale();
        for (i, &v) in data.iter().enumerate() {
            let want = if d.block(1, (i / 4) as u32)[i % 4] >= d.threshold() {
                scale
            } else {
                0.0
            };
            assert_eq!(v, want, "value {i}");
        }
    }
}
