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
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let (hi0, lo0) = mul_hi_lo(M0, c[0]);
        let (hi1, lo1) = mul_hi_lo(M1, c[2]);
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
    pub fn apply<T: Float>(&self, layer: usize, data: &mut [T]) {
        let threshold = self.threshold();
        let scale = T::from_f32(self.scale()).expect("a finite f32 converts");
        for (q, chunk) in data.chunks_mut(4).enumerate() {
            let u = self.block(layer, q as u32);
            for (x, &u) in chunk.iter_mut().zip(&u) {
                *x = *x * if u >= threshold { scale } else { T::zero() };
            }
        }
    }
}

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
}
