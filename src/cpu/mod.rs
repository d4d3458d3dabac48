//! The CPU path: the same passes as the GPU, generic over `f32` and `f64`.
//!
//! It is the reference for the differential tests and a fair competitor in benchmarks: the
//! input projection of all gates is one GEMM over all steps and each step one
//! `[B, H] × [H, G·H]` GEMM, both through the `gemm` crate ([`crate::Float::gemm`]), then the cell's pointwise
//! step ([`crate::cell::CellMath`]).

mod backward;
mod pool;

pub use backward::backward;
pub(crate) use backward::backward_input;

use crate::cell::CellMath;
use crate::dropout::Dropout;
use crate::error::Result;
use crate::params::RnnParams;
pub use crate::state::{ForwardOutput, Gradients, State, check_inputs};
use crate::tensor::{Float, Tensor};

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
    forward_core(params, Input::Dense(input), state, &lengths, Some(dropout))
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
    forward_core(params, input, state, &vec![t_len; b], dropout)
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
    forward_core(params, input, state, lengths, None)
}

/// The forward pass: [`forward_trace_lengths`], with `dropout` between the layers when it is
/// `Some` with `p > 0` (`p = 0` takes exactly the path without dropout).
fn forward_core<T: Float>(
    params: &RnnParams<T>,
    input: Input<'_, T>,
    state: State<'_, T>,
    lengths: &[usize],
    dropout: Option<Dropout>,
) -> Result<(ForwardOutput<T>, Trace<T>)> {
    let cfg = *params.config();
    let dropout = dropout.filter(|d| d.p > 0.0 && cfg.num_layers > 1);
    let cell = cfg.cell.math::<T>();
    let (t_len, b) = input.dims();
    let (h, d_n, g) = (cfg.hidden_size, cfg.directions(), cell.gates());
    // R: the width of h (P with a projection, else H).
    let (r, proj) = (cfg.real_hidden_size(), cfg.proj_size > 0);
    let (dr, gh, s_h) = (d_n * r, g * h, cell.saved_units() * h);
    let with_c = cell.has_cell_state();
    let c_len = if with_c { h } else { 0 };
    let m_len = if proj { h } else { 0 };
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
    // Work buffers and the trace's come from this thread's kept buffers (`pool`).
    let mut proj_x = pool::zeroed(t_len * b * gh);
    let mut rec = pool::zeroed(b * gh);
    let mut h_prev = vec![T::zero(); b * r];
    let mut c_prev = vec![T::zero(); b * c_len];
    for l in 0..cfg.num_layers {
        let i_l = cfg.layer_input_size(l);
        let mut y = Tensor::new(vec![t_len, b, dr], pool::zeroed(t_len * b * dr))?;
        let mut cs = pool::zeroed(t_len * b * d_n * c_len);
        let mut ms = pool::zeroed(t_len * b * d_n * m_len);
        let mut saved = pool::zeroed(d_n * t_len * b * s_h);
        for d in 0..d_n {
            let p = params.layer(l, d);
            // X = X·W_ihᵀ + b_ih + the b_hh blocks that fold, for all steps at once; the
            // blocks that do not fold are added to the recurrent product instead.
            let (x_bias, r_bias) = split_bias(cell, p.b_ih.as_ref(), p.b_hh.as_ref(), gh);
            for row in proj_x.chunks_exact_mut(gh) {
                row.copy_from_slice(&x_bias);
            }
            let below = (l > 0).then(|| trace.layer_input(l));
            match (below, input) {
                (None, Input::Tokens { ids, .. }) => {
                    for (row, &id) in proj_x.chunks_exact_mut(gh).zip(ids) {
                        for (j, o) in row.iter_mut().enumerate() {
                            *o = *o + p.w_ih.data()[j * i_l + id as usize];
                        }
                    }
                }
                (x, _) => {
                    let x = match (x, input) {
                        (Some(y), _) => y,
                        (None, Input::Dense(x)) => x,
                        (None, Input::Tokens { .. }) => unreachable!("matched above"),
                    };
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
                        T::one(),
                        &mut proj_x,
                        gh,
                        1,
                    );
                }
            }
            let ld = l * d_n + d;
            // W_hhᵀ laid out row-major [R, G·H] once, for the per-step product: the `gemm`
            // crate then reads it without repacking it every step (about 2× faster for B > 1,
            // BENCHMARKS.md, issue 13); one row of h reads W_hh as it is.
            let w_hh_t = (b > 1).then(|| transpose(p.w_hh.data(), gh, r));
            let (w_rec, rsw, csw) = match &w_hh_t {
                Some(w) => (&w[..], gh, 1),
                None => (p.w_hh.data(), 1, r),
            };
            for s in 0..t_len {
                let t = if d == 0 { s } else { t_len - 1 - s };
                let tp = if d == 0 { t.wrapping_sub(1) } else { t + 1 };
                // h_{t-1} per row: h0 (c0) at the row's first step, else its previous output.
                for (bi, &len) in lengths.iter().enumerate() {
                    let (first, _) = first_last(d, t, len);
                    let (hp, cp) = (
                        &mut h_prev[bi * r..][..r],
                        &mut c_prev[bi * c_len..][..c_len],
                    );
                    if first {
                        initial_row(state.h, (ld * b + bi) * r, hp);
                        initial_row(state.c, (ld * b + bi) * c_len, cp);
                    } else if t < len && tp < t_len {
                        let at = (tp * b + bi) * d_n + d;
                        hp.copy_from_slice(&y.data()[at * r..][..r]);
                        cp.copy_from_slice(&cs[at * c_len..][..c_len]);
                    }
                }
                // R = h_{t-1}·W_hhᵀ + the b_hh blocks that do not fold (if any).
                let split = cell.splits_gate_gradients();
                if split {
                    for row in rec.chunks_exact_mut(gh) {
                        row.copy_from_slice(&r_bias);
                    }
                }
                T::gemm(
                    b,
                    r,
                    gh,
                    T::one(),
                    &h_prev,
                    r,
                    1,
                    w_rec,
                    rsw,
                    csw,
                    if split { T::one() } else { T::zero() },
                    &mut rec,
                    gh,
                    1,
                );
                for (bi, &len) in lengths.iter().enumerate() {
                    if t >= len {
                        continue; // past the row's end: its output stays zero
                    }
                    let row = t * b + bi;
                    let at = row * d_n + d;
                    // The cell's h = o⊙tanh(c) goes to y, or with a projection to m, whose
                    // image under W_hr is y's h.
                    let out = match proj {
                        true => &mut ms[at * m_len..][..m_len],
                        false => &mut y.data_mut()[at * r..][..r],
                    };
                    cell.forward(
                        &proj_x[row * gh..][..gh],
                        &rec[bi * gh..][..gh],
                        &h_prev[bi * r..][..r],
                        &c_prev[bi * c_len..][..c_len],
                        out,
                        &mut cs[at * c_len..][..c_len],
                        &mut saved[(d * t_len * b + row) * s_h..][..s_h],
                    );
                }
                // h_t = m_t·W_hrᵀ for the step's rows at once (m is zero past a row's end).
                if let Some(w_hr) = &p.w_hr {
                    let at = t * b * d_n + d;
                    T::gemm(
                        b,
                        h,
                        r,
                        T::one(),
                        &ms[at * m_len..],
                        d_n * m_len,
                        1,
                        w_hr.data(),
                        1,
                        h,
                        T::zero(),
                        &mut y.data_mut()[at * r..],
                        d_n * r,
                        1,
                    );
                }
                for (bi, &len) in lengths.iter().enumerate() {
                    let at = (t * b + bi) * d_n + d;
                    if t < len && first_last(d, t, len).1 {
                        let to = ld * b + bi;
                        h_n.data_mut()[to * r..][..r].copy_from_slice(&y.data()[at * r..][..r]);
                        if let Some(c_n) = &mut c_n {
                            c_n.data_mut()[to * h..][..h]
                                .copy_from_slice(&cs[at * c_len..][..c_len]);
                        }
                    }
                }
            }
        }
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
    pool::recycle(rec);
    let last = trace.ys.last().expect("num_layers >= 1");
    let output = Tensor::new(last.shape().to_vec(), pool::copy_of(last.data()))?;
    Ok((ForwardOutput { output, h_n, c_n }, trace))
}

/// `w` `[rows, cols]` row-major, transposed: `[cols, rows]` row-major.
fn transpose<T: Float>(w: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::zero(); rows * cols];
    for (i, row) in w.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
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
    Ok(forward_trace(params, input, state)?.0)
}
