//! The device-neutral inputs and outputs of a pass: recurrent states, a forward pass's output,
//! a backward pass's gradients. The CPU and the GPU return the same types.

use crate::config::RnnConfig;
use crate::error::{Error, Result};
use crate::params::RnnParams;
use crate::tensor::{Float, Tensor};

/// A stack's recurrent state: `h` `[L·D, B, H]` and, for a cell with one
/// ([`crate::cell::CellSpec::has_cell_state`], LSTM), `c` `[L·D, B, H]`, index
/// `layer·D + direction`; a missing tensor means zeros.
///
/// A forward pass takes the initial state (`h0`, `c0`); a backward pass takes the gradient of
/// the loss with respect to the final state (`grad_h_n`, `grad_c_n`). Both accept `None` (all
/// zeros), `Some(&h)` or `&h` (only `h`), or a `State` with both, as PyTorch's
/// `lstm(input, (h0, c0))`.
///
/// # Example
/// ```
/// use wgpu_rnn::{cpu, Cell, RnnConfig, RnnParams, State, Tensor};
/// let p = RnnParams::<f64>::random(RnnConfig::new(Cell::RnnTanh, 2, 3), 1);
/// let (x, h0) = (Tensor::zeros(&[4, 1, 2]), Tensor::full(&[1, 1, 3], 0.5));
/// let a = cpu::forward(&p, &x, &h0).unwrap();
/// let b = cpu::forward(&p, &x, State { h: Some(&h0), c: None }).unwrap();
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct State<'a, T = f32> {
    /// `h0` (or `grad_h_n`), `[L·D, B, H]`; zeros when `None`.
    pub h: Option<&'a Tensor<T>>,
    /// `c0` (or `grad_c_n`), `[L·D, B, H]`, for cells with a cell state; zeros when `None`.
    pub c: Option<&'a Tensor<T>>,
}

impl<T> Default for State<'_, T> {
    fn default() -> Self {
        State { h: None, c: None }
    }
}

impl<'a, T> From<Option<&'a Tensor<T>>> for State<'a, T> {
    fn from(h: Option<&'a Tensor<T>>) -> Self {
        State { h, c: None }
    }
}

impl<'a, T> From<&'a Tensor<T>> for State<'a, T> {
    fn from(h: &'a Tensor<T>) -> Self {
        State {
            h: Some(h),
            c: None,
        }
    }
}

impl<T: Float> State<'_, T> {
    /// Checks both tensors against `[L·D, B, H]` of `config`, naming them `{h_name}` and
    /// `{c_name}`; with `finite`, also that they hold no NaN or infinity.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the tensor; [`Error::Config`] when `c` is given to a cell
    /// without a cell state; [`Error::NonFinite`] when `finite` and a value is not.
    pub(crate) fn check(
        &self,
        config: &RnnConfig,
        b: usize,
        names: [&str; 2],
        finite: bool,
    ) -> Result<()> {
        let ld = config.num_layers * config.directions();
        // h is [L·D, B, P] with a projection; c is always [L·D, B, H].
        let shapes = [
            [ld, b, config.real_hidden_size()],
            [ld, b, config.hidden_size],
        ];
        if self.c.is_some() && !config.cell.spec().has_cell_state() {
            return Err(Error::config(format!(
                "{}: the {} cell has no cell state; pass only {}",
                names[1], config.cell, names[0]
            )));
        }
        for ((t, name), shape) in [self.h, self.c].into_iter().zip(names).zip(shapes) {
            if let Some(t) = t {
                t.expect_shape(name, &shape)?;
                if finite {
                    t.expect_finite(name)?;
                }
            }
        }
        Ok(())
    }
}

/// What a forward pass returns: `output` `[T, B, D·H]` (forward direction first), `h_n`
/// `[L·D, B, H]` (index `layer·D + direction`) and, for a cell with a cell state, `c_n`.
/// With an LSTM projection `P` ([`RnnConfig::proj_size`]) `output` is `[T, B, D·P]` and
/// `h_n` `[L·D, B, P]`; `c_n` stays `[L·D, B, H]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardOutput<T = f32> {
    /// Hidden states of the top layer for every step, `[T, B, D·H]`.
    pub output: Tensor<T>,
    /// Final hidden state of every layer and direction, `[L·D, B, H]`.
    pub h_n: Tensor<T>,
    /// Final cell state of every layer and direction, `[L·D, B, H]`; `None` for cells
    /// without one.
    pub c_n: Option<Tensor<T>>,
}

/// Gradients of a scalar loss with respect to everything a forward pass read.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients<T = f32> {
    /// `∂L/∂input`, `[T, B, I]`.
    pub input: Tensor<T>,
    /// `∂L/∂h0`, `[L·D, B, H]`.
    pub h0: Tensor<T>,
    /// `∂L/∂c0`, `[L·D, B, H]`; `None` for cells without a cell state.
    pub c0: Option<Tensor<T>>,
    /// `∂L/∂θ` for every parameter, in the parameters' own layout and names.
    pub params: RnnParams<T>,
}

/// Checks the shapes of a forward pass's inputs and returns `(T, B)`.
///
/// # Errors
/// [`Error::Shape`] naming `input`, `h0` or `c0`; [`Error::Config`] when `T` or `B` is 0 or
/// `c0` is given to a cell without a cell state; [`Error::NonFinite`] naming the tensor.
pub fn check_inputs<T: Float>(
    config: &RnnConfig,
    input: &Tensor<T>,
    state: State<'_, T>,
) -> Result<(usize, usize)> {
    let s = input.shape();
    if s.len() != 3 || s[2] != config.input_size {
        let (t, b) = match s {
            [t, b, ..] => (*t, *b),
            _ => (0, 0),
        };
        return Err(Error::shape("input", &[t, b, config.input_size], s));
    }
    let (t, b) = (s[0], s[1]);
    if t == 0 || b == 0 {
        return Err(Error::config(format!(
            "input: expected seq_len >= 1 and batch >= 1, found shape {s:?}"
        )));
    }
    input.expect_finite("input")?;
    state.check(config, b, ["h0", "c0"], true)?;
    Ok((t, b))
}
