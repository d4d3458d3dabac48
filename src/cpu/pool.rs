//! Buffers the CPU passes reuse between calls on one thread. A pass of a batched model works
//! in tens of MB of fresh buffers; the allocator gives buffers that large back to the kernel
//! when they are freed, so without reuse every pass maps them again and faults in every page
//! (about 9 ms of a 36 ms `lstm_mid` forward pass, BENCHMARKS.md, issue 13). A thread keeps
//! at most [`MAX_KEPT`] of its freed large buffers; a pass takes the smallest kept buffer that
//! fits each request.

use std::any::Any;
use std::cell::RefCell;

use crate::tensor::Float;

/// Buffers below this many values are not kept: the allocator serves them from its own free
/// lists without the kernel.
const MIN_KEPT: usize = 1 << 14;

/// Most buffers one thread keeps.
pub(crate) const MAX_KEPT: usize = 24;

thread_local! {
    static KEPT: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// `n` zeros, in a kept buffer when one is large enough.
pub(crate) fn zeroed<T: Float>(n: usize) -> Vec<T> {
    take(n, true)
}

/// `n` values of unspecified content (zeros, or what a kept buffer held last), for a buffer
/// that the pass writes whole before it reads it: a kept buffer is not zeroed first.
pub(crate) fn scratch<T: Float>(n: usize) -> Vec<T> {
    take(n, false)
}

fn take<T: Float>(n: usize, zero: bool) -> Vec<T> {
    if n >= MIN_KEPT {
        let found = KEPT.with_borrow_mut(|kept| {
            let best = kept
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let v = b.downcast_ref::<Vec<T>>()?;
                    (v.capacity() >= n).then_some((i, v.capacity()))
                })
                .min_by_key(|&(_, c)| c)
                .map(|(i, _)| i);
            best.map(|i| kept.swap_remove(i))
        });
        if let Some(b) = found {
            let mut v = *b.downcast::<Vec<T>>().expect("matched its type above");
            if zero {
                v.clear();
            }
            v.truncate(n);
            v.resize(n, T::zero());
            return v;
        }
    }
    vec![T::zero(); n]
}

/// A copy of `src` in a kept buffer when one is large enough.
pub(crate) fn copy_of<T: Float>(src: &[T]) -> Vec<T> {
    let mut v = scratch(src.len());
    v.copy_from_slice(src);
    v
}

/// Keeps `v` for a later [`zeroed`] on this thread (the oldest kept buffer goes when
/// [`MAX_KEPT`] are kept).
pub(crate) fn recycle<T: Float>(v: Vec<T>) {
    if v.capacity() < MIN_KEPT {
        return;
    }
    KEPT.with_borrow_mut(|kept| {
        if kept.len() >= MAX_KEPT {
            kept.remove(0);
        }
        kept.push(Box::new(v));
    });
}
