//! The CPU path's packed weights: each layer's weights transposed for its per-step product,
//! built on first use and kept with the parameters until they change, so that passes after
//! the first (inference, above all) do not pay for them: 0.16 ms of a 6.8 ms `lstm_mid`
//! forward pass on this project's two cores.

use std::sync::{Arc, Mutex};

use crate::tensor::Float;

/// Which product of one layer and direction a packed matrix serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Packing {
    /// `[W_ih | W_hh]ᵀ` `[I + R, G·H]`: the step's input and recurrent product at once.
    Stacked,
    /// `W_hhᵀ` `[R, G·H]`: the recurrent product, the input's being hoisted.
    Recurrent,
}

/// The packed weights built from one [`crate::RnnParams`], by layer-direction (`l·D + d`)
/// and [`Packing`]; every matrix has rows padded to `G·H + ROW_PAD`. A clone starts empty,
/// and [`crate::RnnParams::layers_mut`] empties it; it takes no part in equality.
#[derive(Default)]
pub(crate) struct PackedWeights<T> {
    /// `(l·D + d, packing, matrix)`: a handful, searched in order.
    kept: Mutex<Vec<Kept<T>>>,
}

/// One packed matrix and what it packs.
type Kept<T> = (usize, Packing, Arc<Vec<T>>);

impl<T: Float> PackedWeights<T> {
    /// The packed matrix of layer-direction `ld`, built from `w_ih` `[G·H, I]` and `w_hh`
    /// `[G·H, R]` on first use.
    pub(crate) fn get(
        &self,
        ld: usize,
        packing: Packing,
        w_ih: &[T],
        w_hh: &[T],
        gh: usize,
    ) -> Arc<Vec<T>> {
        let find = |kept: &[Kept<T>]| {
            let (_, _, w) = kept.iter().find(|(l, p, _)| (*l, *p) == (ld, packing))?;
            Some(w.clone())
        };
        if let Some(w) = find(&self.lock()) {
            return w;
        }
        let w = Arc::new(match packing {
            Packing::Stacked => stacked_transpose(&[w_ih, w_hh], gh),
            Packing::Recurrent => stacked_transpose(&[w_hh], gh),
        });
        let mut kept = self.lock();
        match find(&kept) {
            Some(w) => w, // another thread built it meanwhile
            None => {
                kept.push((ld, packing, w.clone()));
                w
            }
        }
    }

    /// Forgets every packed matrix (the weights changed).
    pub(crate) fn clear(&mut self) {
        self.kept
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Kept<T>>> {
        // A panic elsewhere cannot leave a half-built entry: entries are inserted whole.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Clone for PackedWeights<T> {
    fn clone(&self) -> Self {
        PackedWeights {
            kept: Mutex::default(),
        }
    }
}

impl<T> PartialEq for PackedWeights<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> std::fmt::Debug for PackedWeights<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackedWeights")
    }
}

/// Values that [`stacked_transpose`] adds to each row: one 64-byte cache line of f32. Rows of
/// exactly 4 KiB (`G·H = 1024` f32: `lstm_mid`'s `W_hhᵀ`) put every `k` of a product in the
/// same cache sets: alone, the `gemm` crate's `[16, 256] × [256, 1024]` step then takes
/// 42.3 µs against 37.4 µs with the padding; in the whole `lstm_mid` forward pass the gain
/// is 1–4% (A/B runs alternated on this project's AMD EPYC), and nothing
/// measurable at other widths.
pub(super) const ROW_PAD: usize = 16;

/// The matrices `ws` `[rows, cols_k]` row-major side by side (`[rows, Σ cols_k]`),
/// transposed: `[Σ cols_k, rows]` with rows `rows + ROW_PAD` apart (the padding is never
/// read). In tiles of 16×16, each written row by row: a plain loop's
/// scattered stores, or a tile's stores 16 rows of 4 KiB apart (one cache set), took 0.6 ms
/// of an `lstm_mid` forward pass for its 1 MiB `W_hh`, against 0.15 ms.
fn stacked_transpose<T: Float>(ws: &[&[T]], rows: usize) -> Vec<T> {
    use rayon::prelude::*;
    const TILE: usize = 16;
    let ld = rows + ROW_PAD;
    let len = ws.iter().map(|w| w.len() / rows).sum::<usize>() * ld;
    let mut t = vec![T::zero(); len];
    // Bands of 16 rows of the result (16 columns of one matrix), each written whole.
    let mut bands = Vec::new();
    let mut rest = &mut t[..];
    for w in ws {
        let cols = w.len() / rows;
        let (part, r) = rest.split_at_mut(cols * ld);
        rest = r;
        for (k, band) in part.chunks_mut(TILE * ld).enumerate() {
            bands.push((*w, cols, k * TILE, band));
        }
    }
    let run = |(w, cols, j0, band): (&[T], usize, usize, &mut [T])| {
        for i0 in (0..rows).step_by(TILE) {
            for (j, t) in (j0..).zip(band.chunks_exact_mut(ld)) {
                for i in i0..(i0 + TILE).min(rows) {
                    t[i] = w[i * cols + j];
                }
            }
        }
    };
    match len >= PAR_TRANSPOSE {
        true => bands.into_par_iter().for_each(run),
        false => bands.into_iter().for_each(run),
    }
    t
}

/// Values from which [`stacked_transpose`] runs its bands on rayon's threads: `lstm_mid`'s
/// 384 × 1024 weights took 0.32–0.34 ms on one of this project's two cores, 0.16 on both.
const PAR_TRANSPOSE: usize = 1 << 16;
