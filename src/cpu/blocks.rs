//! Blocks of batch rows, the unit of parallel work of the CPU passes' time loops.
//!
//! A batch row's recurrence depends on no other row: `h_t` of row `b` needs only `h_{t-1}` of
//! row `b`. So each direction of a layer splits its batch into blocks of rows that run their
//! whole time loop, forward or backward, on one thread each, with no synchronisation between
//! steps (one fork and one join per layer). The blocks are cut by the shape alone, never by the
//! number of threads: every value is computed by the same calls in the same order on one
//! thread or many, so results are bit-identical from one thread count to another.

use std::marker::PhantomData;
use std::ops::Range;

use rayon::prelude::*;

use crate::tensor::Float;

/// Batch rows per block: the smallest count at which a block's per-step product runs at the
/// full rate of a single-threaded GEMM. Measured on this project's 2-core AVX-512 machine
/// (`gemm` crate, `[m, 256] × [256, 1024]` and `[m, 512] × [512, 512]`): m = 16 reaches
/// 207–237 GF/s, as m = 32 and 64 do; m = 8 reaches 120–176.
pub(crate) const BLOCK_ROWS: usize = 16;

/// The batch's blocks of rows: `⌈B / 16⌉` blocks of near-equal size, in order.
pub(crate) fn row_blocks(b: usize) -> Vec<Range<usize>> {
    let n = b.div_ceil(BLOCK_ROWS).max(1);
    (0..n).map(|k| k * b / n..(k + 1) * b / n).collect()
}

/// Runs `item(d, rows)` for every direction `d < d_n` and block of [`row_blocks`]`(b)`, on
/// rayon's threads when there is more than one item.
pub(crate) fn for_each_block<F>(d_n: usize, b: usize, item: F)
where
    F: Fn(usize, Range<usize>) + Sync,
{
    let blocks = row_blocks(b);
    let n = d_n * blocks.len();
    let run = |k: usize| item(k / blocks.len(), blocks[k % blocks.len()].clone());
    if n == 1 {
        run(0);
    } else {
        (0..n).into_par_iter().for_each(run);
    }
}

/// A buffer that the items of [`for_each_block`] read and write at the same time, each only at
/// the rows it owns (its direction's and its block's, interleaved with the others' in memory,
/// which no `&mut` slice can express).
#[derive(Clone, Copy)]
pub(crate) struct Shared<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: items touch disjoint elements (the contract of `at` and `ptr`); the buffer is
// borrowed mutably for `'a`, so nothing else touches it meanwhile.
unsafe impl<T: Send> Send for Shared<'_, T> {}
unsafe impl<T: Send> Sync for Shared<'_, T> {}

impl<'a, T: Float> Shared<'a, T> {
    /// Shares `buf` for `'a`.
    pub(crate) fn new(buf: &'a mut [T]) -> Self {
        Shared {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _borrow: PhantomData,
        }
    }

    /// The `n` values from `at` (an empty slice for `n = 0`, wherever `at` is: a buffer that a
    /// cell does not have is empty).
    ///
    /// # Safety
    /// While the slice lives, no other item reads or writes them.
    ///
    /// # Panics
    /// When they are not all in the buffer.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn at(&self, at: usize, n: usize) -> &'a mut [T] {
        if n == 0 {
            return &mut [];
        }
        assert!(
            at <= self.len && n <= self.len - at,
            "Shared::at: {n} values from {at} in a buffer of {}",
            self.len
        );
        // SAFETY: in bounds (above); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), n) }
    }

    /// A pointer to a `rows × cols` matrix at `at` with row stride `stride`, for
    /// [`crate::tensor::gemm_raw`].
    ///
    /// # Panics
    /// When the matrix is not all in the buffer.
    pub(crate) fn matrix(&self, at: usize, rows: usize, stride: usize, cols: usize) -> *mut T {
        let span = if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * stride + cols
        };
        assert!(
            at <= self.len && span <= self.len - at,
            "Shared::matrix out of bounds"
        );
        // SAFETY: `at` is within the allocation (above).
        unsafe { self.ptr.add(at) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_batch_in_order() {
        for b in 1..100 {
            let blocks = row_blocks(b);
            assert_eq!(blocks.len(), b.div_ceil(BLOCK_ROWS));
            assert_eq!(blocks[0].start, 0);
            assert_eq!(blocks.last().unwrap().end, b);
            for w in blocks.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            assert!(
                blocks
                    .iter()
                    .all(|r| !r.is_empty() && r.len() <= BLOCK_ROWS)
            );
        }
    }
}
