//! The CPU path: the same passes as the GPU, generic over `f32` and `f64`.
//!
//! It is the reference for the differential tests and a fair competitor in benchmarks: per
//! layer, each direction's time loop runs in blocks of batch rows on rayon's threads
//! (`blocks`): per step one GEMM ([`crate::Float::gemm`], through the `gemm` crate) and the
//! cell's pointwise step ([`crate::cell::CellMath`]). The step's GEMM is
//! `[x_t | h_{t-1}]·[W_ih | W_hh]ᵀ`, `[rows, I + R] × [I + R, G·H]`, where `input_per_step`
//! says so (a dense input, two blocks or more, biases that fold); otherwise the input
//! projection of all steps is one GEMM before the loop (cut into blocks on rayon's threads
//! when large) and the step's is `[rows, R] × [R, G·H]`.

mod backward;
mod blocks;
mod packed;
mod pool;

pub use backward::backward;
pub(crate) use backward::backward_input;

use crate::cell::CellMath;
use crate::dropout::Dropout;
use crate::error::Result;
use crate::params::RnnParams;
pub use crate::state::{ForwardOutput, Gradients, State, check_inputs};
use crate::tensor::{Float, Tensor};
use blocks::Shared;
pub(crate) use packed::PackedWeights;
use packed::{Packing, ROW_PAD};
use std::sync::Arc;

/// What a forward pass keeps for the backward pass: every layer's output `[T, B, D·R]`
/// (the last is the model's output; `R` is [`crate::RnnConfig::real_hidden_size`]), and for
/// cells that need them every layer's cell states `c_t` `[T, B, D·H]`, saved activations
/// `[D, T, B, S·H]` ([`crate::cell::CellSpec::saved_units`]) and, with a projection, the
/// unprojected `m_t = o⊙tanh(c_t)` `[T, B, D·H]`; in training with dropout, the masked
/// outputs that fed the layers above and the [`Dropout`] that drew the masks.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace<T: Float = f32> {
    ys: Vec<Tensor<T>>,
    /// Layer `l`'s output after the mask, the input of layer `l + 1` (`L - 1` of them), with
    /// dropout; empty without.
    dropped: Vec<Tensor<T>>,
    /// The masks' generator, `Some` only when `p > 0`: the backward pass regenerates the masks
    /// from it (cheaper than storing them, and the GPU does the same).
    dropout: Option<Dropout>,
    cs: Vec<Vec<T>>,
    saved: Vec<Vec<T>>,
    ms: Vec<Vec<T>>,
    /// Every batch row's sequence length (`T` for all when the batch is not variable-length).
    lengths: Vec<usize>,
}

/// A trace's buffers go back to this thread's kept buffers, for the next pass.
impl<T: Float> Drop for Trace<T> {
    fn drop(&mut self) {
        let tensors = self.ys.drain(..).chain(self.dropped.drain(..));
        for t in tensors {
            pool::recycle(t.into_data());
        }
        for v in self
            .cs
            .drain(..)
            .chain(self.saved.drain(..))
            .chain(self.ms.drain(..))
        {
            pool::recycle(v);
        }
    }
}

impl<T: Float> Trace<T> {
    /// Every layer's output, `[T, B, D·H]` each.
    pub fn layer_outputs(&self) -> &[Tensor<T>] {
        &self.ys
    }

    /// The input of layer `l >= 1`: layer `l - 1`'s output, after its dropout mask in training.
    fn layer_input(&self, l: usize) -> &Tensor<T> {
        self.dropped.get(l - 1).unwrap_or(&self.ys[l - 1])
    }
}

/// Runs the stack forward, returning the output, the final state and the [`Trace`] the
/// backward pass needs.
///
/// # Errors
/// As [`check_inputs`].
pub fn forward_trace<'a, T: Float>(
    params: &RnnParams<T>,
    input: &Tensor<T>,
    state: impl Into<State<'a, T>>,
) -> Result<(ForwardOutput<T>, Trace<T>)> {
    let state = state.into();
    check_inputs(params.config(), input, state)?;
    forward_trace_input(params, Input::Dense(input), state)
}

/// [`forward_trace`] for a variable-length batch, PyTorch's packed-sequence meaning: row `b`'s
/// sequence is its first `lengths[b]` steps (any order); `output` keeps `T` steps, zero past
/// each row's end (as `pad_packed_sequence(..., total_length=T)`); `h_n` (`c_n`) is each row's
/// state after its own last step; the reverse direction starts at each row's own end.
///
/// # Errors
/// As [`check_inputs`]; [`crate::Error::Config`] naming `lengths` (the count, or an entry
/// outside `1..=T` with its index and value).
pub fn forward_trace_with_lengths<'a, T: Float>(
    params: &RnnParams<T>,
    input: &Tensor<T>,
    state: impl Into<State<'a, T>>,
    lengths: &[usize],
) -> Result<(ForwardOutput<T>, Trace<T>)> {
    let state = state.into();
    let (t, b) = check_inputs(params.config(), input, state)?;
    let lengths = check_lengths(&lengths.iter().map(|&l| l as i64).collect::<Vec<_>>(), t, b)?;
    forward_trace_lengths(params, Input::Dense(input), state, &lengths)
}

/// [`forward_trace`] in training mode with dropout between layers (PyTorch's `dropout`, see
/// [`crate::dropout`]): layer `l < L - 1`'s output is multiplied by the mask that `dropout`
/// draws for layer `l` before it feeds layer `l + 1`; the returned `output` (the last layer's)
/// and `h_n`, `c_n` are not masked. [`crate::cpu::backward`] of the returned [`Trace`] passes
/// the gradient through the same masks. `lengths` as in [`forward_trace_with_lengths`]
/// (`None`: every row runs `T` steps); positions past a row's end stay zero. `dropout.p` is
/// used as given (the config's `dropout` is not read); `p = 0` is the plain pass, bit for bit.
///
/// # Errors
/// As [`forward_trace_with_lengths`]; [`crate::Error::Config`] naming `dropout` when
/// `dropout.p` is not in `[0, 1)`.
///
/// # Example
/// ```
/// use wgpu_rnn::{cpu, dropout::Dropout, Cell, RnnConfig, RnnParams, Tensor};
/// let p = RnnParams::<f64>::random(RnnConfig::new(Cell::Gru, 2, 3).layers(2), 1);
/// let x = Tensor::full(&[4, 1, 2], 0.5);
/// let d = Dropout::new(0.5, 42, 0)?;
/// let (out, trace) = cpu::forward_trace_with_dropout(&p, &x, None, None, d)?;
/// let g = cpu::backward(&p, &x, None, &trace, &Tensor::full(out.output.shape(), 1.0), None)?;
/// assert_eq!(g.input.shape(), &[4, 1, 2]);
/// # Ok::<(), wgpu_rnn::Error>(())
/// ```
pub fn forward_trace_with_dropout<'a, T: Float>(
    params: &RnnParams<T>,
    input: &Tensor<T>,
    state: impl Into<State<'a, T>>,
    lengths: Option<&[usize]>,
    dropout: Dropout,
) -> Result<(ForwardOutput<T>, Trace<T>)> {
    let state = state.into();
    let (t, b) = check_inputs(params.config(), input, state)?;
    crate::dropout::check_p(dropout.p)?;
    let lengths = match lengths {
        Some(l) => check_lengths(&l.iter().map(|&v| v as i64).collect::<Vec<_>>(), t, b)?,
        None => vec![t; b],
    };
    forward_core(
        params,
        Input::Dense(input),
        state,
        &lengths,
        Some(dropout),
        true,
    )
}

/// Layer 0's input: a dense `[T, B, I]` tensor, or token ids `[T, B]` in `0..I` whose input
/// projection is a gather of columns of `weight_ih_l0` (an embedding lookup).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a, T> {
    Dense(&'a Tensor<T>),
    Tokens { ids: &'a [u32], t: usize, b: usize },
}

impl<T: Float> Input<'_, T> {
    pub(crate) fn dims(&self) -> (usize, usize) {
        match self {
            Input::Dense(x) => (x.shape()[0], x.shape()[1]),
            Input::Tokens { t, b, .. } => (*t, *b),
        }
    }
}

/// [`forward_trace`] for checked inputs of either kind, all sequences `T` steps long.
pub(crate) fn forward_trace_input<T: Float>(
    params: &RnnParams<T>,
    input: Input<'_, T>,
    state: State<'_, T>,
) -> Result<(ForwardOutput<T>, Trace<T>)> {
    let (t_len, b) = input.dims();
    forward_trace_lengths(params, input, state, &vec![t_len; b])
}

/// [`forward_trace_input`] in training mode: with `dropout` (when `Some` and `p > 0`) between
/// the layers, as [`forward_trace_with_dropout`].
pub(crate) fn forward_trace_train<T: Float>(
    params: &RnnParams<T>,
    input: Input<'_, T>,
    state: State<'_, T>,
    dropout: Option<Dropout>,
) -> Result<(ForwardOutput<T>, Trace<T>)> {
    let (t_len, b) = input.dims();
    forward_core(params, input, state, &vec![t_len; b], dropout, true)
}

/// Whether step `t` of direction `d` is the first one (it reads `h0`, `c0`) and the last one
/// (it gives `h_n`, `c_n`) of a sequence of `len` steps: the forward direction runs
/// `0 .. len`, the reverse one `len - 1 ..= 0`, so a short sequence's reverse pass starts at
/// its own end (PyTorch's packed sequences).
pub(crate) fn first_last(d: usize, t: usize, len: usize) -> (bool, bool) {
    if d == 0 {
        (t == 0, t + 1 == len)
    } else {
        (t + 1 == len, t == 0)
    }
}

/// Checks a variable-length batch's `lengths` against `(T, B)`: `B` entries, each in `1..=T`.
///
/// # Errors
/// [`crate::Error::Config`] naming `lengths` with the offending index and value, or the count.
pub fn check_lengths(lengths: &[i64], t_len: usize, b: usize) -> Result<Vec<usize>> {
    if lengths.len() != b {
        return Err(crate::Error::config(format!(
            "lengths: expected {b} entries (one per batch row), found {}",
            lengths.len()
        )));
    }
    lengths
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if l < 1 || l as u64 > t_len as u64 {
                Err(crate::Error::config(format!(
                    "lengths[{i}]: expected 1..={t_len} (the input's T), found {l}"
                )))
            } else {
                Ok(l as usize)
            }
        })
        .collect()
}

/// [`forward_trace_input`] for a variable-length batch: row `b`'s sequence is its first
/// `lengths[b]` steps (checked by the caller, each in `1..=T`); its outputs past the end are
/// zero and its final state is the one after its own last step.
pub(crate) fn forward_trace_lengths<T: Float>(
    params: &RnnParams<T>,
    input: Input<'_, T>,
    state: State<'_, T>,
    lengths: &[usize],
) -> Result<(ForwardOutput<T>, Trace<T>)> {
    forward_core(params, input, state, lengths, None, true)
}

/// The forward pass without a trace (PyTorch's forward under `torch.no_grad()`): the saved
/// activations, a cell's largest record, are not kept, and the output is the last layer's
/// buffer itself. Lengths as in [`forward_trace_lengths`].
pub(crate) fn forward_no_grad<T: Float>(
    params: &RnnParams<T>,
    input: Input<'_, T>,
    state: State<'_, T>,
    lengths: &[usize],
) -> Result<ForwardOutput<T>> {
    Ok(forward_core(params, input, state, lengths, None, false)?.0)
}

/// The forward pass: [`forward_trace_lengths`], with `dropout` between the layers when it is
/// `Some` with `p > 0` (`p = 0` takes exactly the path without dropout). Without `keep`, the
/// saved activations are not kept (the cells write them to a scratch row per block) and the
/// returned trace serves no backward pass: [`forward_no_grad`] drops it.
fn forward_core<T: Float>(
    params: &RnnParams<T>,
    input: Input<'_, T>,
    state: State<'_, T>,
    lengths: &[usize],
    dropout: Option<Dropout>,
    keep: bool,
) -> Result<(ForwardOutput<T>, Trace<T>)> {
    let cfg = *params.config();
    let dropout = dropout.filter(|d| d.p > 0.0 && cfg.num_layers > 1);
    let cell = cfg.cell.math::<T>();
    let (t_len, b) = input.dims();
    let Widths {
        h,
        d_n,
        gh,
        r,
        s_h,
        c_len,
        m_len,
    } = Widths::of(&cfg);
    let (dr, with_c) = (d_n * r, c_len > 0);
    let ld_n = cfg.num_layers * d_n;
    let mut h_n = Tensor::zeros(&[ld_n, b, r]);
    let mut c_n = with_c.then(|| Tensor::zeros(&[ld_n, b, h]));
    let mut trace = Trace {
        ys: Vec::with_capacity(cfg.num_layers),
        dropped: Vec::new(),
        dropout,
        cs: Vec::new(),
        saved: Vec::new(),
        ms: Vec::new(),
        lengths: lengths.to_vec(),
    };
    // Work buffers and the trace's come from this thread's kept buffers (`pool`). When every
    // row runs all T steps the passes write every value of them, so they need no zeroing;
    // otherwise the values past a row's end must be zero.
    let full = lengths.iter().all(|&len| len == t_len);
    let buffer = |n| match full {
        true => pool::scratch(n),
        false => pool::zeroed(n),
    };
    let tbg = t_len * b * gh;
    // The hoisted input projections, for the layers that do not fold them into each step.
    let mut proj_x = Vec::new();
    let split = cell.splits_gate_gradients();
    for l in 0..cfg.num_layers {
        let i_l = cfg.layer_input_size(l);
        let mut y = Tensor::new(vec![t_len, b, dr], buffer(t_len * b * dr))?;
        let mut cs = buffer(t_len * b * d_n * c_len);
        let mut ms = buffer(t_len * b * d_n * m_len);
        let mut saved = buffer(if keep { d_n * t_len * b * s_h } else { 0 });
        let x = match ((l > 0).then(|| trace.layer_input(l)), input) {
            (Some(y), _) | (None, Input::Dense(y)) => Some(y),
            (None, Input::Tokens { .. }) => None,
        };
        let per_step = x.is_some() && input_per_step(split, d_n, b);
        let mut rec_w = Vec::with_capacity(d_n);
        if !per_step && proj_x.is_empty() {
            proj_x = pool::scratch(d_n * tbg);
        }
        for d in 0..d_n {
            let p = params.layer(l, d);
            let packed = |k| {
                let (w_ih, w_hh) = (p.w_ih.data(), p.w_hh.data());
                params.packed().get(l * d_n + d, k, w_ih, w_hh, gh)
            };
            // The biases: when every b_hh block folds, b_ih + b_hh starts each step's small
            // recurrent product (cheaper than a pass over the hoisted X); else b_ih and the
            // folded b_hh blocks start X, and the blocks that do not fold start the recurrent
            // product.
            let (x_bias, r_bias) = split_bias(cell, p.b_ih.as_ref(), p.b_hh.as_ref(), gh);
            let (x_init, rec_init) = match split {
                true => (Some(x_bias), r_bias),
                false => (None, x_bias),
            };
            if per_step {
                // [W_ih | W_hh]ᵀ: each step's one product [x_t | h_{t-1}]·[W_ih | W_hh]ᵀ.
                let w = packed(Packing::Stacked);
                rec_w.push((Some(w), rec_init));
                continue;
            }
            let proj_x = &mut proj_x[d * tbg..][..tbg];
            if let Some(x_bias) = &x_init {
                for row in proj_x.chunks_exact_mut(gh) {
                    row.copy_from_slice(x_bias);
                }
            }
            // X = X·W_ihᵀ for all steps at once.
            match (x, input) {
                (None, Input::Tokens { ids, .. }) => {
                    for (row, &id) in proj_x.chunks_exact_mut(gh).zip(ids) {
                        for (j, o) in row.iter_mut().enumerate() {
                            let w = p.w_ih.data()[j * i_l + id as usize];
                            *o = if x_init.is_some() { *o + w } else { w };
                        }
                    }
                }
                (None, Input::Dense(_)) => unreachable!("a dense input is `x`"),
                (Some(x), _) => {
                    T::gemm(
                        t_len * b,
                        i_l,
                        gh,
                        T::one(),
                        x.data(),
                        i_l,
                        1,
                        p.w_ih.data(),
                        1,
                        i_l,
                        if x_init.is_some() {
                            T::one()
                        } else {
                            T::zero()
                        },
                        proj_x,
                        gh,
                        1,
                    );
                }
            }
            // W_hhᵀ laid out row-major [R, G·H] (rows padded) once, for the per-step product:
            // the `gemm` crate then reads it without repacking it every step (about 2× faster
            // for B > 1, BENCHMARKS.md, issue 13); one row of h reads W_hh as it is.
            rec_w.push(((b > 1).then(|| packed(Packing::Recurrent)), rec_init));
        }
        let layer = Recurrence {
            l,
            t_len,
            keep,
            lengths,
            state,
            params,
            proj_x: &proj_x,
            x: x.filter(|_| per_step).map(|x| x.data()),
            rec_w: &rec_w,
            y: Shared::new(y.data_mut()),
            cs: Shared::new(&mut cs),
            ms: Shared::new(&mut ms),
            saved: Shared::new(&mut saved),
            h_n: Shared::new(h_n.data_mut()),
            c_n: Shared::new(c_n.as_mut().map_or(&mut [][..], |c| c.data_mut())),
        };
        // SAFETY: each item runs one direction on its own block of batch rows, and
        // `Recurrence::run` touches only those rows of the shared buffers.
        blocks::for_each_block(d_n, b, |d, rows| unsafe { layer.run(d, rows) });
        if let Some(d) = dropout
            && l + 1 < cfg.num_layers
        {
            let mut x = y.clone();
            d.apply(l, x.data_mut());
            trace.dropped.push(x);
        }
        trace.ys.push(y);
        trace.cs.push(cs);
        trace.ms.push(ms);
        trace.saved.push(saved);
    }
    pool::recycle(proj_x);
    let output = match keep {
        true => {
            let last = trace.ys.last().expect("num_layers >= 1");
            fitted(last.shape().to_vec(), pool::copy_of(last.data()))?
        }
        false => {
            let y = trace.ys.pop().expect("num_layers >= 1");
            fitted(y.shape().to_vec(), y.into_data())?
        }
    };
    Ok((ForwardOutput { output, h_n, c_n }, trace))
}

/// The widths a layer's time loop works with, from its config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Widths {
    /// H, the hidden size.
    pub h: usize,
    /// D, the directions.
    pub d_n: usize,
    /// G·H, the gate pre-activations of a row.
    pub gh: usize,
    /// R, the width of h (P with a projection, else H).
    pub r: usize,
    /// S·H, the saved activations of a row.
    pub s_h: usize,
    /// H with a cell state, else 0.
    pub c_len: usize,
    /// H with a projection (the width of m), else 0.
    pub m_len: usize,
}

impl Widths {
    pub(crate) fn of(cfg: &crate::RnnConfig) -> Self {
        let spec = crate::cell::spec(cfg.cell);
        let h = cfg.hidden_size;
        Widths {
            h,
            d_n: cfg.directions(),
            gh: spec.gates() * h,
            r: cfg.real_hidden_size(),
            s_h: spec.saved_units() * h,
            c_len: if spec.has_cell_state() { h } else { 0 },
            m_len: if cfg.proj_size > 0 { h } else { 0 },
        }
    }
}

/// `v` as the tensor of `shape` that a caller keeps. A kept buffer ([`pool`]) may be far
/// larger than the output: past a quarter more, the output gets a buffer of its own and `v`
/// goes back to the pool.
fn fitted<T: Float>(shape: Vec<usize>, v: Vec<T>) -> Result<Tensor<T>> {
    if v.capacity() > v.len() + v.len() / 4 {
        let exact = v.to_vec();
        pool::recycle(v);
        Tensor::new(shape, exact)
    } else {
        Tensor::new(shape, v)
    }
}

/// A direction's per-step product: its packed weights (none when `W_hh` is read as it is)
/// and its biases (that start it, or that the cell adds to it; [`Recurrence::rec_w`]).
type StepWeights<T> = (Option<Arc<Vec<T>>>, Vec<T>);

/// One layer's time loop, shared by its items (a direction and a block of batch rows each,
/// [`blocks::for_each_block`]): what they read, and the buffers they write at their own rows.
struct Recurrence<'a, T: Float> {
    l: usize,
    t_len: usize,
    /// Whether `saved` is kept (else it is empty and each block writes a scratch row).
    keep: bool,
    lengths: &'a [usize],
    state: State<'a, T>,
    params: &'a RnnParams<T>,
    /// The hoisted input projections `[D, T·B, G·H]` (empty with `x`).
    proj_x: &'a [T],
    /// The layer's input `[T, B, I]` when each step projects its own ([`input_per_step`]).
    x: Option<&'a [T]>,
    /// Per direction: the transposed weights of the per-step product with padded rows
    /// ([`PackedWeights`]), `[I + R, G·H]` (`[W_ih | W_hh]ᵀ`) with `x`, else `W_hhᵀ`
    /// `[R, G·H]` for B > 1 (for B = 1 `W_hh` is read as it is); and the biases `[G·H]` that
    /// start the product (with `x`, that the cell adds to it).
    rec_w: &'a [StepWeights<T>],
    /// The layer's output `[T, B, D·R]`.
    y: Shared<'a, T>,
    /// `c_t` `[T, B, D·H]` (empty without a cell state).
    cs: Shared<'a, T>,
    /// `m_t` `[T, B, D·H]` (empty without a projection).
    ms: Shared<'a, T>,
    /// The saved activations `[D, T, B, S·H]`.
    saved: Shared<'a, T>,
    /// `h_n` `[L·D, B, R]` and `c_n` `[L·D, B, H]` (empty without a cell state).
    h_n: Shared<'a, T>,
    c_n: Shared<'a, T>,
}

impl<T: Float> Recurrence<'_, T> {
    /// Runs direction `d` of the layer through time for the batch rows `rows`: per step, the
    /// rows' `h_{t-1}` (and `x_t` with `x`), one `[rows, R] × [R, G·H]` product (with `x`,
    /// `[rows, I + R] × [I + R, G·H]`), the cell's pointwise step, and with a projection one
    /// `[rows, H] × [H, P]` product.
    ///
    /// # Safety
    /// No other call at the same time may have the same direction and a row of `rows`.
    unsafe fn run(&self, d: usize, rows: std::ops::Range<usize>) {
        let cell = self.params.config().cell.math::<T>();
        let (t_len, b) = (self.t_len, self.lengths.len());
        let Widths {
            h,
            d_n,
            gh,
            r,
            s_h,
            c_len,
            m_len,
        } = Widths::of(self.params.config());
        let (ld, nr) = (self.l * d_n + d, rows.len());
        let p = self.params.layer(self.l, d);
        let proj_x = match self.x {
            Some(_) => &[][..],
            None => &self.proj_x[d * t_len * b * gh..][..t_len * b * gh],
        };
        let (w_hh_t, rec_init) = &self.rec_w[d];
        let (w_rec, rsw, csw) = match w_hh_t {
            Some(w) => (&w[..], gh + ROW_PAD, 1),
            None => (p.w_hh.data(), 1, r),
        };
        // A row of the per-step product's left operand: [x_t | h_{t-1}] when each step
        // projects its input, else h_{t-1}.
        let i_x = self.x.map_or(0, |x| x.len() / (t_len * b));
        let lda = i_x + r;
        let mut a = vec![T::zero(); nr * lda];
        let mut c_prev = vec![T::zero(); nr * c_len];
        // Every step writes it whole: the product alone with `x` (the cell adds the biases,
        // as its input term), else the product on top of the biases that start it.
        let mut rec = pool::scratch(nr * gh);
        // Without `keep`, every row's saved activations go to one row that stays in L1.
        let mut scratch = vec![T::zero(); if self.keep { 0 } else { s_h }];
        for s in 0..t_len {
            let t = if d == 0 { s } else { t_len - 1 - s };
            let tp = if d == 0 { t.wrapping_sub(1) } else { t + 1 };
            // h_{t-1} per row: h0 (c0) at the row's first step, else its previous output.
            for (k, bi) in rows.clone().enumerate() {
                let len = self.lengths[bi];
                let (first, _) = first_last(d, t, len);
                let (xp, hp) = a[k * lda..][..lda].split_at_mut(i_x);
                let cp = &mut c_prev[k * c_len..][..c_len];
                if let Some(x) = self.x {
                    xp.copy_from_slice(&x[(t * b + bi) * i_x..][..i_x]);
                }
                if first {
                    initial_row(self.state.h, (ld * b + bi) * r, hp);
                    initial_row(self.state.c, (ld * b + bi) * c_len, cp);
                } else if t < len && tp < t_len {
                    let at = (tp * b + bi) * d_n + d;
                    // SAFETY: row `bi` is this item's (the caller's contract).
                    unsafe {
                        hp.copy_from_slice(self.y.at(at * r, r));
                        cp.copy_from_slice(self.cs.at(at * c_len, c_len));
                    }
                }
            }
            // R = [x_t |] h_{t-1}·[W_ih |] W_hhᵀ (+ its biases without `x`).
            if self.x.is_none() {
                for row in rec.chunks_exact_mut(gh) {
                    row.copy_from_slice(rec_init);
                }
            }
            T::gemm(
                nr,
                lda,
                gh,
                T::one(),
                &a,
                lda,
                1,
                w_rec,
                rsw,
                csw,
                if self.x.is_some() {
                    T::zero()
                } else {
                    T::one()
                },
                &mut rec,
                gh,
                1,
            );
            for (k, bi) in rows.clone().enumerate() {
                if t >= self.lengths[bi] {
                    continue; // past the row's end: its output stays zero
                }
                let row = t * b + bi;
                let at = row * d_n + d;
                // SAFETY: row `bi` is this item's.
                unsafe {
                    // The cell's h = o⊙tanh(c) goes to y, or with a projection to m, whose
                    // image under W_hr is y's h.
                    let out = match m_len > 0 {
                        true => self.ms.at(at * m_len, m_len),
                        false => self.y.at(at * r, r),
                    };
                    let saved = match self.keep {
                        true => self.saved.at((d * t_len * b + row) * s_h, s_h),
                        false => &mut scratch[..],
                    };
                    // The cell's input term: with `x` the biases (the product holds the rest).
                    let x = match self.x {
                        Some(_) => &rec_init[..],
                        None => &proj_x[row * gh..][..gh],
                    };
                    cell.forward(
                        x,
                        &rec[k * gh..][..gh],
                        &a[k * lda + i_x..][..r],
                        &c_prev[k * c_len..][..c_len],
                        out,
                        self.cs.at(at * c_len, c_len),
                        saved,
                    );
                }
            }
            // h_t = m_t·W_hrᵀ for the block's rows at once (m is zero past a row's end).
            if let Some(w_hr) = &p.w_hr {
                let at = (t * b + rows.start) * d_n + d;
                let m = self.ms.matrix(at * m_len, nr, d_n * m_len, m_len);
                let y = self.y.matrix(at * r, nr, d_n * r, r);
                // SAFETY: both matrices are in bounds (`matrix` checks) and their rows are
                // this item's.
                unsafe {
                    crate::tensor::gemm_raw(
                        nr,
                        h,
                        r,
                        T::one(),
                        m,
                        [d_n * m_len, 1],
                        w_hr.data().as_ptr(),
                        [1, h],
                        T::zero(),
                        y,
                        [d_n * r, 1],
                    );
                }
            }
            for bi in rows.clone() {
                let len = self.lengths[bi];
                let at = (t * b + bi) * d_n + d;
                if t < len && first_last(d, t, len).1 {
                    let to = ld * b + bi;
                    // SAFETY: row `bi` is this item's.
                    unsafe {
                        self.h_n.at(to * r, r).copy_from_slice(self.y.at(at * r, r));
                        self.c_n
                            .at(to * c_len, c_len)
                            .copy_from_slice(self.cs.at(at * c_len, c_len));
                    }
                }
            }
        }
        pool::recycle(rec);
    }
}

/// Whether a layer with a dense input computes its input projection inside each step, as
/// one product `[x_t | h_{t-1}]·[W_ih | W_hh]ᵀ` per block of rows, instead of hoisting
/// `X·W_ihᵀ` for all steps before the time loop: for cells whose biases all fold (the sum
/// cannot be split), with at least two items ([`blocks::for_each_block`]) of 8 to 16 rows
/// each, so that the cores that the hoisted product would have used run items. It saves the
/// hoisted phase and the round trip of `[T, B, G·H]` through memory. Forward passes on this
/// project's 2-core AMD EPYC, 150 pairs alternated in one process (medians, hoisted →
/// per step): `lstm_mid` 8.12 → 7.93 ms, `mid` 1.86 → 1.79, `large` 12.0 → 9.4,
/// `deep_bidir` 2.24 → 1.65 (BENCHMARKS.md, issue 13). By shape alone, so that on any
/// thread count the same products run.
fn input_per_step(split: bool, d_n: usize, b: usize) -> bool {
    !split && b >= blocks::BLOCK_ROWS && d_n * blocks::row_blocks(b).len() >= 2
}

/// Copies `dst.len()` values of `state` from `at` into `dst`, zeros when absent.
pub(crate) fn initial_row<T: Float>(state: Option<&Tensor<T>>, at: usize, dst: &mut [T]) {
    match state {
        Some(s) => dst.copy_from_slice(&s.data()[at..][..dst.len()]),
        None => dst.fill(T::zero()),
    }
}

/// The biases of one layer and direction split between the hoisted projection and the
/// recurrent product, `[G·H]` each: `(b_ih + folded b_hh, unfolded b_hh)`, zeros without bias.
pub(crate) fn split_bias<T: Float>(
    cell: &dyn CellMath<T>,
    b_ih: Option<&Tensor<T>>,
    b_hh: Option<&Tensor<T>>,
    gh: usize,
) -> (Vec<T>, Vec<T>) {
    let (mut x, mut r) = (vec![T::zero(); gh], vec![T::zero(); gh]);
    if let (Some(bi), Some(bh)) = (b_ih, b_hh) {
        let h = gh / cell.gates();
        for (k, (&u, &v)) in bi.data().iter().zip(bh.data()).enumerate() {
            if cell.folds_hh_bias(k / h) {
                x[k] = u + v;
            } else {
                x[k] = u;
                r[k] = v;
            }
        }
    }
    (x, r)
}

/// Runs the stack forward on the CPU: PyTorch's `nn.RNN.forward(input, h0)` (or
/// `nn.LSTM.forward(input, (h0, c0))`).
///
/// `input` is `[T, B, I]` (time-major), `state` the initial [`State`] (zeros when `None`).
/// Keeps nothing for a backward pass (PyTorch's forward under `torch.no_grad()`; see
/// [`forward_trace`] for one that does).
///
/// # Errors
/// [`crate::Error::Shape`] naming `input`, `h0` or `c0` when a shape disagrees with the
/// config; as [`check_inputs`] otherwise.
///
/// # Example
/// ```
/// use wgpu_rnn::{cpu, Cell, RnnConfig, RnnParams, Tensor};
/// let p = RnnParams::<f64>::random(RnnConfig::new(Cell::RnnTanh, 2, 3), 1);
/// let x = Tensor::zeros(&[4, 1, 2]);
/// let out = cpu::forward(&p, &x, None).unwrap();
/// assert_eq!(out.output.shape(), &[4, 1, 3]);
/// ```
pub fn forward<'a, T: Float>(
    params: &RnnParams<T>,
    input: &Tensor<T>,
    state: impl Into<State<'a, T>>,
) -> Result<ForwardOutput<T>> {
    let state = state.into();
    let (t, b) = check_inputs(params.config(), input, state)?;
    forward_no_grad(params, Input::Dense(input), state, &vec![t; b])
}
