//! Backpropagation through time on the CPU.

use crate::config::Cell;
use crate::cpu::{Input, check_inputs};
use crate::error::{Error, Result};
use crate::params::{LayerParams, RnnParams};
use crate::tensor::{Float, Tensor};

/// Gradients of a scalar loss with respect to everything a forward pass read.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients<T = f32> {
    /// `∂L/∂input`, `[T, B, I]`.
    pub input: Tensor<T>,
    /// `∂L/∂h0`, `[L·D, B, H]`.
    pub h0: Tensor<T>,
    /// `∂L/∂θ` for every parameter, in the parameters' own layout and names.
    pub params: RnnParams<T>,
}

/// The gradient `g` through the activation, from its output `y = act(a)`, as PyTorch computes
/// it: tanh multiplies, `g·(1 - y²)` (NaN for a NaN output, or for an infinite `g` at
/// `y = ±1`); relu selects (`threshold_backward`): 0 where `y <= 0`, whatever `g` is (inf or
/// NaN included), and `g` everywhere else, a NaN output included.
pub(crate) fn act_backward<T: Float>(cell: Cell, y: T, g: T) -> T {
    match cell {
        Cell::RnnTanh => g * (T::one() - y * y),
        Cell::RnnRelu => {
            if y <= T::zero() {
                T::zero()
            } else {
                g
            }
        }
    }
}

/// Backpropagation through time for the stack.
///
/// Given the forward pass's input, `h0` and every layer's output (`layer_outputs`, as
/// returned by [`crate::cpu::forward_trace`]), returns the gradients of
/// `L = Σ output·grad_output + Σ h_n·grad_h_n` (`grad_h_n` zero when `None`).
///
/// Per layer from the top and direction, in reverse time:
/// `δa_t = (δy_t + δh_t) ⊙ act'(h_t)`, `δh_{t-1} = δa_t·W_hh`; then over all steps at once
/// `∂W_ih = δAᵀ·X`, `∂W_hh = δAᵀ·H_prev`, `∂b_ih = ∂b_hh = Σ δA`, `∂X = δA·W_ih`
/// (which is `δy` of the layer below), and `∂h0 = δh_{-1}`.
///
/// # Errors
/// [`Error::Shape`] naming `grad_output`, `grad_h_n` or the forward tensors.
///
/// # Example
/// ```
/// use wgpu_rnn::{cpu, Cell, RnnConfig, RnnParams, Tensor};
/// let p = RnnParams::<f64>::random(RnnConfig::new(Cell::RnnTanh, 2, 3), 1);
/// let x = Tensor::full(&[4, 1, 2], 0.5);
/// let (out, ys) = cpu::forward_trace(&p, &x, None).unwrap();
/// let g = cpu::backward(&p, &x, None, &ys, &Tensor::full(out.output.shape(), 1.0), None).unwrap();
/// assert_eq!(g.params.layer(0, 0).w_hh.shape(), &[3, 3]);
/// ```
pub fn backward<T: Float>(
    params: &RnnParams<T>,
    input: &Tensor<T>,
    h0: Option<&Tensor<T>>,
    layer_outputs: &[Tensor<T>],
    grad_output: &Tensor<T>,
    grad_h_n: Option<&Tensor<T>>,
) -> Result<Gradients<T>> {
    check_inputs(params.config(), input, h0)?;
    grad_output.expect_finite("grad_output")?;
    if let Some(g) = grad_h_n {
        g.expect_finite("grad_h_n")?;
    }
    let (grad_input, h0, params) = backward_input(
        params,
        Input::Dense(input),
        h0,
        layer_outputs,
        grad_output,
        grad_h_n,
    )?;
    Ok(Gradients {
        input: grad_input.expect("dense input has a gradient"),
        h0,
        params,
    })
}

/// `(∂input, ∂h0, ∂θ)`; no input gradient for token ids.
pub(crate) type InputGradients<T> = (Option<Tensor<T>>, Tensor<T>, RnnParams<T>);

/// [`backward`] for either kind of input: returns `(∂input, ∂h0, ∂θ)`, with no input gradient
/// for token ids.
pub(crate) fn backward_input<T: Float>(
    params: &RnnParams<T>,
    input: Input<'_, T>,
    h0: Option<&Tensor<T>>,
    layer_outputs: &[Tensor<T>],
    grad_output: &Tensor<T>,
    grad_h_n: Option<&Tensor<T>>,
) -> Result<InputGradients<T>> {
    let cfg = *params.config();
    let (t_len, b) = input.dims();
    let (h, d_n) = (cfg.hidden_size, cfg.directions());
    let dh = d_n * h;
    let ld_n = cfg.num_layers * d_n;
    if layer_outputs.len() != cfg.num_layers {
        return Err(Error::config(format!(
            "layer outputs: expected {} (one per layer), found {}",
            cfg.num_layers,
            layer_outputs.len()
        )));
    }
    for (l, y) in layer_outputs.iter().enumerate() {
        y.expect_shape(&format!("layer output {l}"), &[t_len, b, dh])?;
    }
    // Shapes only: finiteness is a property of a caller's input ([`backward`] checks it), not
    // of a gradient computed inside a training step, which propagates NaN as PyTorch does.
    grad_output.expect_shape("grad_output", &[t_len, b, dh])?;
    if let Some(g) = grad_h_n {
        g.expect_shape("grad_h_n", &[ld_n, b, h])?;
    }
    let zero_h0;
    let h0 = match h0 {
        Some(h0) => h0,
        None => {
            zero_h0 = Tensor::zeros(&[ld_n, b, h]);
            &zero_h0
        }
    };

    let mut grads: Vec<LayerParams<T>> = params
        .layers()
        .iter()
        .map(|p| LayerParams {
            w_ih: Tensor::zeros(p.w_ih.shape()),
            w_hh: Tensor::zeros(p.w_hh.shape()),
            b_ih: p.b_ih.as_ref().map(|t| Tensor::zeros(t.shape())),
            b_hh: p.b_hh.as_ref().map(|t| Tensor::zeros(t.shape())),
        })
        .collect();
    let mut grad_h0 = Tensor::zeros(&[ld_n, b, h]);
    let mut d_y = grad_output.clone();
    let mut d_a = vec![T::zero(); t_len * b * h];
    let mut h_prev = vec![T::zero(); t_len * b * h];
    let mut carry = vec![T::zero(); b * h];
    let mut dh_vec = vec![T::zero(); b * h];
    for l in (0..cfg.num_layers).rev() {
        let x = match (l, input) {
            (0, Input::Dense(x)) => Some(x),
            (0, Input::Tokens { .. }) => None,
            _ => Some(&layer_outputs[l - 1]),
        };
        let i_l = cfg.layer_input_size(l);
        let y = &layer_outputs[l];
        let mut d_x = Tensor::zeros(&[t_len, b, if x.is_some() { i_l } else { 0 }]);
        for d in 0..d_n {
            let ld = l * d_n + d;
            let p = params.layer(l, d);
            match grad_h_n {
                Some(g) => carry.copy_from_slice(&g.data()[ld * b * h..][..b * h]),
                None => carry.fill(T::zero()),
            }
            for s in 0..t_len {
                let t = if d == 0 { t_len - 1 - s } else { s };
                for bi in 0..b {
                    let o = (t * b + bi) * dh + d * h;
                    for j in 0..h {
                        let g = d_y.data()[o + j] + carry[bi * h + j];
                        let v = act_backward(cfg.cell, y.data()[o + j], g);
                        d_a[(t * b + bi) * h + j] = v;
                        dh_vec[bi * h + j] = v;
                    }
                }
                // δh_{t-1} = δa_t · W_hh
                T::gemm(
                    b,
                    h,
                    h,
                    T::one(),
                    &dh_vec,
                    h,
                    1,
                    p.w_hh.data(),
                    h,
                    1,
                    T::zero(),
                    &mut carry,
                    h,
                    1,
                );
            }
            grad_h0.data_mut()[ld * b * h..][..b * h].copy_from_slice(&carry);
            // H_prev: h_{t-1} in processing order (h0 at the first processed step).
            for t in 0..t_len {
                let prev = if d == 0 {
                    t.checked_sub(1)
                } else {
                    Some(t + 1).filter(|&u| u < t_len)
                };
                for bi in 0..b {
                    let dst = &mut h_prev[(t * b + bi) * h..][..h];
                    match prev {
                        Some(tp) => {
                            dst.copy_from_slice(&y.data()[(tp * b + bi) * dh + d * h..][..h])
                        }
                        None => dst.copy_from_slice(&h0.data()[(ld * b + bi) * h..][..h]),
                    }
                }
            }
            let g = &mut grads[ld];
            let tb = t_len * b;
            // ∂W_hh = δAᵀ·H_prev, ∂W_ih = δAᵀ·X, ∂X += δA·W_ih
            T::gemm(
                h,
                tb,
                h,
                T::one(),
                &d_a,
                1,
                h,
                &h_prev,
                h,
                1,
                T::zero(),
                g.w_hh.data_mut(),
                h,
                1,
            );
            match (x, input) {
                (Some(x), _) => {
                    T::gemm(
                        h,
                        tb,
                        i_l,
                        T::one(),
                        &d_a,
                        1,
                        h,
                        x.data(),
                        i_l,
                        1,
                        T::zero(),
                        g.w_ih.data_mut(),
                        i_l,
                        1,
                    );
                    T::gemm(
                        tb,
                        h,
                        i_l,
                        T::one(),
                        &d_a,
                        h,
                        1,
                        p.w_ih.data(),
                        i_l,
                        1,
                        T::one(),
                        d_x.data_mut(),
                        i_l,
                        1,
                    );
                }
                (None, Input::Tokens { ids, .. }) => {
                    // The gather's gradient: column `id` of ∂W_ih collects δa of its steps.
                    let gw = g.w_ih.data_mut();
                    for (row, &id) in d_a.chunks_exact(h).zip(ids) {
                        for (j, &v) in row.iter().enumerate() {
                            gw[j * i_l + id as usize] = gw[j * i_l + id as usize] + v;
                        }
                    }
                }
                (None, Input::Dense(_)) => unreachable!("dense input is always Some"),
            }
            if let (Some(gbi), Some(gbh)) = (&mut g.b_ih, &mut g.b_hh) {
                let sums = gbi.data_mut();
                for row in d_a.chunks_exact(h) {
                    for (s, &v) in sums.iter_mut().zip(row) {
                        *s = *s + v;
                    }
                }
                gbh.data_mut().copy_from_slice(gbi.data());
            }
        }
        d_y = d_x;
    }
    let grad_input = matches!(input, Input::Dense(_)).then_some(d_y);
    Ok((grad_input, grad_h0, RnnParams::from_parts(cfg, grads)))
}
