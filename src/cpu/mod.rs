//! The CPU path: the same passes as the GPU, generic over `f32` and `f64`.
//!
//! It is the reference for the differential tests and a fair competitor in benchmarks: the
//! input projection is one GEMM over all steps and each step one `[B, H] × [H, H]` GEMM, both
//! through the `matrixmultiply` crate.

mod backward;

pub(crate) use backward::backward_input;
pub use backward::{Gradients, backward};

use crate::config::{Cell, RnnConfig};
use crate::error::Result;
use crate::params::RnnParams;
use crate::tensor::{Float, Tensor};

/// What a forward pass returns: `output` `[T, B, D·H]` (forward direction first) and
/// `h_n` `[L·D, B, H]` (index `layer·D + direction`).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardOutput<T = f32> {
    /// Hidden states of the top layer for every step, `[T, B, D·H]`.
    pub output: Tensor<T>,
    /// Final hidden state of every layer and direction, `[L·D, B, H]`.
    pub h_n: Tensor<T>,
}

/// Checks the shapes of a forward pass's inputs and returns `(T, B)`.
///
/// # Errors
/// [`crate::Error::Shape`] naming `input` or `h0`; [`crate::Error::Config`] when `T` or `B` is 0.
pub fn check_inputs<T: Float>(
    config: &RnnConfig,
    input: &Tensor<T>,
    h0: Option<&Tensor<T>>,
) -> Result<(usize, usize)> {
    let s = input.shape();
    if s.len() != 3 || s[2] != config.input_size {
        let (t, b) = match s {
            [t, b, ..] => (*t, *b),
            _ => (0, 0),
        };
        return Err(crate::Error::shape("input", &[t, b, config.input_size], s));
    }
    let (t, b) = (s[0], s[1]);
    if t == 0 || b == 0 {
        return Err(crate::Error::config(format!(
            "input: expected seq_len >= 1 and batch >= 1, found shape {s:?}"
        )));
    }
    input.expect_finite("input")?;
    if let Some(h0) = h0 {
        let ld = config.num_layers * config.directions();
        h0.expect_shape("h0", &[ld, b, config.hidden_size])?;
        h0.expect_finite("h0")?;
    }
    Ok((t, b))
}

/// The cell's nonlinearity, with PyTorch's float semantics for values that became
/// non-finite during the computation: `relu(NaN) = NaN` (`max(NaN, 0)` would give 0),
/// `tanh(±inf) = ±1`, `tanh(NaN) = NaN`.
pub(crate) fn activate<T: Float>(cell: Cell, v: T) -> T {
    match cell {
        Cell::RnnTanh => v.tanh(),
        Cell::RnnRelu => {
            if v > T::zero() || v.is_nan() {
                v
            } else {
                T::zero()
            }
        }
    }
}

/// Runs the stack forward, returning the output, `h_n` and every layer's output
/// (`[T, B, D·H]` each; the last is `output`), which the backward pass needs.
///
/// # Errors
/// As [`check_inputs`].
pub fn forward_trace<T: Float>(
    params: &RnnParams<T>,
    input: &Tensor<T>,
    h0: Option<&Tensor<T>>,
) -> Result<(ForwardOutput<T>, Vec<Tensor<T>>)> {
    check_inputs(params.config(), input, h0)?;
    forward_trace_input(params, Input::Dense(input), h0)
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

/// [`forward_trace`] for checked inputs of either kind.
pub(crate) fn forward_trace_input<T: Float>(
    params: &RnnParams<T>,
    input: Input<'_, T>,
    h0: Option<&Tensor<T>>,
) -> Result<(ForwardOutput<T>, Vec<Tensor<T>>)> {
    let cfg = *params.config();
    let (t_len, b) = input.dims();
    let (h, d_n) = (cfg.hidden_size, cfg.directions());
    let dh = d_n * h;
    let mut h_n = Tensor::zeros(&[cfg.num_layers * d_n, b, h]);
    let mut outputs: Vec<Tensor<T>> = Vec::with_capacity(cfg.num_layers);
    let mut proj = vec![T::zero(); t_len * b * h];
    let mut h_prev = vec![T::zero(); b * h];
    for l in 0..cfg.num_layers {
        let i_l = cfg.layer_input_size(l);
        let mut y = Tensor::zeros(&[t_len, b, dh]);
        for d in 0..d_n {
            let p = params.layer(l, d);
            // P = X·W_ihᵀ + b_ih + b_hh for all steps at once.
            match (&p.b_ih, &p.b_hh) {
                (Some(bi), Some(bh)) => {
                    for row in proj.chunks_exact_mut(h) {
                        for ((o, &u), &v) in row.iter_mut().zip(bi.data()).zip(bh.data()) {
                            *o = u + v;
                        }
                    }
                }
                _ => proj.fill(T::zero()),
            }
            match (outputs.last(), input) {
                (None, Input::Tokens { ids, .. }) => {
                    for (row, &id) in proj.chunks_exact_mut(h).zip(ids) {
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
                        h,
                        T::one(),
                        x.data(),
                        i_l,
                        1,
                        p.w_ih.data(),
                        1,
                        i_l,
                        T::one(),
                        &mut proj,
                        h,
                        1,
                    );
                }
            }
            let ld = l * d_n + d;
            for s in 0..t_len {
                let t = if d == 0 { s } else { t_len - 1 - s };
                if s == 0 {
                    match h0 {
                        Some(h0) => h_prev.copy_from_slice(&h0.data()[ld * b * h..][..b * h]),
                        None => h_prev.fill(T::zero()),
                    }
                } else {
                    let tp = if d == 0 { t - 1 } else { t + 1 };
                    for bi in 0..b {
                        h_prev[bi * h..][..h]
                            .copy_from_slice(&y.data()[(tp * b + bi) * dh + d * h..][..h]);
                    }
                }
                let yt = &mut y.data_mut()[t * b * dh..][..b * dh];
                for bi in 0..b {
                    yt[bi * dh + d * h..][..h].copy_from_slice(&proj[(t * b + bi) * h..][..h]);
                }
                // h_t = act(P_t + h_{t-1}·W_hhᵀ), written in place in y.
                T::gemm(
                    b,
                    h,
                    h,
                    T::one(),
                    &h_prev,
                    h,
                    1,
                    p.w_hh.data(),
                    1,
                    h,
                    T::one(),
                    &mut yt[d * h..],
                    dh,
                    1,
                );
                for bi in 0..b {
                    for v in &mut yt[bi * dh + d * h..][..h] {
                        *v = activate(cfg.cell, *v);
                    }
                }
            }
            let t_last = if d == 0 { t_len - 1 } else { 0 };
            for bi in 0..b {
                h_n.data_mut()[(ld * b + bi) * h..][..h]
                    .copy_from_slice(&y.data()[(t_last * b + bi) * dh + d * h..][..h]);
            }
        }
        outputs.push(y);
    }
    let output = outputs.last().expect("num_layers >= 1").clone();
    Ok((ForwardOutput { output, h_n }, outputs))
}

/// Runs the stack forward on the CPU: PyTorch's `nn.RNN.forward(input, h0)`.
///
/// `input` is `[T, B, I]` (time-major), `h0` is `[L·D, B, H]` (zeros when `None`).
///
/// # Errors
/// [`crate::Error::Shape`] naming `input` or `h0` when a shape disagrees with the config.
///
/// # Example
/// ```
/// use wgpu_rnn::{cpu, Cell, RnnConfig, RnnParams, Tensor};
/// let p = RnnParams::<f64>::random(RnnConfig::new(Cell::RnnTanh, 2, 3), 1);
/// let x = Tensor::zeros(&[4, 1, 2]);
/// let out = cpu::forward(&p, &x, None).unwrap();
/// assert_eq!(out.output.shape(), &[4, 1, 3]);
/// ```
pub fn forward<T: Float>(
    params: &RnnParams<T>,
    input: &Tensor<T>,
    h0: Option<&Tensor<T>>,
) -> Result<ForwardOutput<T>> {
    Ok(forward_trace(params, input, h0)?.0)
}
