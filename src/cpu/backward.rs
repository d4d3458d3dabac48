//! Backpropagation through time on the CPU.

use crate::cpu::{Input, Trace, first_last, initial_row};
use crate::error::{Error, Result};
use crate::params::{LayerParams, RnnParams};
use crate::state::{Gradients, State, check_inputs};
use crate::tensor::{Float, Tensor};

/// Backpropagation through time for the stack.
///
/// Given the forward pass's input, initial state and [`Trace`] (as returned by
/// [`crate::cpu::forward_trace`]), returns the gradients of
/// `L = Σ output·grad_output + Σ h_n·grad_h_n (+ Σ c_n·grad_c_n)` (`grad_state` holds
/// `grad_h_n` and `grad_c_n`, zeros when absent).
///
/// Per layer from the top and direction, in reverse time: the cell's pointwise backward
/// ([`crate::cell::CellMath::backward`]) gives the gate gradients `δX_t` of the input
/// pre-activations and `δR_t` of the recurrent ones (the same tensor unless the cell splits
/// them), then `δh_{t-1} = δR_t·W_hh` plus the cell's direct term; after the loop, over all
/// steps at once, `∂W_ih = δXᵀ·X`, `∂W_hh = δRᵀ·H_prev`, `∂b_ih = Σ δX`, `∂b_hh = Σ δR`,
/// `∂X = δX·W_ih` (which is `δy` of the layer below), `∂h0 = δh_{-1}`, `∂c0 = δc_{-1}`.
///
/// # Errors
/// [`Error::Shape`] naming `grad_output`, `grad_h_n`, `grad_c_n` or the forward tensors.
///
/// # Example
/// ```
/// use wgpu_rnn::{cpu, Cell, RnnConfig, RnnParams, Tensor};
/// let p = RnnParams::<f64>::random(RnnConfig::new(Cell::RnnTanh, 2, 3), 1);
/// let x = Tensor::full(&[4, 1, 2], 0.5);
/// let (out, trace) = cpu::forward_trace(&p, &x, None).unwrap();
/// let g = cpu::backward(&p, &x, None, &trace, &Tensor::full(out.output.shape(), 1.0), None).unwrap();
/// assert_eq!(g.params.layer(0, 0).w_hh.shape(), &[3, 3]);
/// ```
pub fn backward<'a, T: Float>(
    params: &RnnParams<T>,
    input: &Tensor<T>,
    state: impl Into<State<'a, T>>,
    trace: &Trace<T>,
    grad_output: &Tensor<T>,
    grad_state: impl Into<State<'a, T>>,
) -> Result<Gradients<T>> {
    let (state, grad_state) = (state.into(), grad_state.into());
    let cfg = params.config();
    let (t, b) = check_inputs(cfg, input, state)?;
    grad_output.expect_shape("grad_output", &[t, b, cfg.output_size()])?;
    grad_output.expect_finite("grad_output")?;
    grad_state.check(params.config(), b, ["grad_h_n", "grad_c_n"], true)?;
    let (grad_input, h0, c0, params) = backward_input(
        params,
        Input::Dense(input),
        state,
        trace,
        grad_output,
        grad_state,
    )?;
    Ok(Gradients {
        input: grad_input.expect("dense input has a gradient"),
        h0,
        c0,
        params,
    })
}

/// `(∂input, ∂h0, ∂c0, ∂θ)`; no input gradient for token ids, no `∂c0` without a cell state.
pub(crate) type InputGradients<T> = (
    Option<Tensor<T>>,
    Tensor<T>,
    Option<Tensor<T>>,
    RnnParams<T>,
);

/// [`backward`] for either kind of input: returns `(∂input, ∂h0, ∂c0, ∂θ)`, with no input
/// gradient for token ids.
pub(crate) fn backward_input<T: Float>(
    params: &RnnParams<T>,
    input: Input<'_, T>,
    state: State<'_, T>,
    trace: &Trace<T>,
    grad_output: &Tensor<T>,
    grad_state: State<'_, T>,
) -> Result<InputGradients<T>> {
    let cfg = *params.config();
    let cell = cfg.cell.math::<T>();
    let (t_len, b) = input.dims();
    let (h, d_n, g_n) = (cfg.hidden_size, cfg.directions(), cell.gates());
    // R: the width of h (P with a projection, else H).
    let (r, proj) = (cfg.real_hidden_size(), cfg.proj_size > 0);
    let (dr, gh, s_h) = (d_n * r, g_n * h, cell.saved_units() * h);
    let c_len = if cell.has_cell_state() { h } else { 0 };
    let m_len = if proj { h } else { 0 };
    let split = cell.splits_gate_gradients();
    let ld_n = cfg.num_layers * d_n;
    let ys = trace.layer_outputs();
    let lengths = &trace.lengths;
    if ys.len() != cfg.num_layers {
        return Err(Error::config(format!(
            "trace: expected {} layer outputs (one per layer), found {}",
            cfg.num_layers,
            ys.len()
        )));
    }
    for (l, y) in ys.iter().enumerate() {
        y.expect_shape(&format!("layer output {l}"), &[t_len, b, dr])?;
    }
    // Shapes only: finiteness is a property of a caller's input ([`backward`] checks it), not
    // of a gradient computed inside a training step, which propagates NaN as PyTorch does.
    grad_output.expect_shape("grad_output", &[t_len, b, dr])?;
    grad_state.check(&cfg, b, ["grad_h_n", "grad_c_n"], false)?;
    let zero_h0 = Tensor::zeros(&[ld_n, b, r]);
    let h0 = state.h.unwrap_or(&zero_h0);
    let zero_c0 = vec![T::zero(); ld_n * b * c_len];
    let c0 = state.c.map_or(&zero_c0[..], |c| c.data());

    let mut grads: Vec<LayerParams<T>> = params
        .layers()
        .iter()
        .map(|p| LayerParams {
            w_ih: Tensor::zeros(p.w_ih.shape()),
            w_hh: Tensor::zeros(p.w_hh.shape()),
            b_ih: p.b_ih.as_ref().map(|t| Tensor::zeros(t.shape())),
            b_hh: p.b_hh.as_ref().map(|t| Tensor::zeros(t.shape())),
            w_hr: p.w_hr.as_ref().map(|t| Tensor::zeros(t.shape())),
        })
        .collect();
    let mut grad_h0 = Tensor::zeros(&[ld_n, b, r]);
    let mut grad_c0 = (c_len > 0).then(|| Tensor::zeros(&[ld_n, b, h]));
    let mut d_y = grad_output.clone();
    // δX and δR of one direction, [T·B, G·H] (δR only when the cell splits them).
    let mut d_x = super::pool::zeroed(t_len * b * gh);
    let mut d_r = super::pool::zeroed(if split { t_len * b * gh } else { 0 });
    let mut h_prev = super::pool::zeroed(t_len * b * r);
    let mut c_prev = vec![T::zero(); b * c_len];
    let mut carry = vec![T::zero(); b * r];
    let mut carry_c = vec![T::zero(); b * c_len];
    let mut direct = vec![T::zero(); b * r];
    // ∂L/∂h_t of every step and row [T·B, R] (kept for ∂W_hr with a projection), and with a
    // projection ∂L/∂m_t = ∂L/∂h_t·W_hr of one step [B, H], which the cell's backward takes
    // as its dh.
    let mut dh_all = super::pool::zeroed(t_len * b * r);
    let mut dm = vec![T::zero(); b * m_len];
    for l in (0..cfg.num_layers).rev() {
        let x = match (l, input) {
            (0, Input::Dense(x)) => Some(x),
            (0, Input::Tokens { .. }) => None,
            _ => Some(trace.layer_input(l)),
        };
        let i_l = cfg.layer_input_size(l);
        let y = &ys[l];
        let (cs, saved, ms) = (&trace.cs[l], &trace.saved[l], &trace.ms[l]);
        let i_x = if x.is_some() { i_l } else { 0 };
        let mut d_in = Tensor::new(vec![t_len, b, i_x], super::pool::zeroed(t_len * b * i_x))?;
        for d in 0..d_n {
            let ld = l * d_n + d;
            let p = params.layer(l, d);
            // H_prev: h_{t-1} of every step and row (h0 at the row's first step; anything past
            // its end, where the gate gradients are zero).
            for t in 0..t_len {
                let tp = if d == 0 { t.wrapping_sub(1) } else { t + 1 };
                for (bi, &len) in lengths.iter().enumerate() {
                    let dst = &mut h_prev[(t * b + bi) * r..][..r];
                    if first_last(d, t, len).0 {
                        dst.copy_from_slice(&h0.data()[(ld * b + bi) * r..][..r]);
                    } else if t < len && tp < t_len {
                        dst.copy_from_slice(&y.data()[((tp * b + bi) * d_n + d) * r..][..r]);
                    }
                }
            }
            carry.fill(T::zero());
            carry_c.fill(T::zero());
            for s in 0..t_len {
                let t = if d == 0 { t_len - 1 - s } else { s };
                let tp = if d == 0 { t.wrapping_sub(1) } else { t + 1 };
                // ∂L/∂h_t of every row: the output's gradient plus what the later step carried
                // (∂L/∂h_n at a row's last step, with ∂L/∂c_n in the cell's carry).
                for (bi, &len) in lengths.iter().enumerate() {
                    let at = (t * b + bi) * d_n + d;
                    let dh_t = &mut dh_all[(t * b + bi) * r..][..r];
                    if t >= len {
                        dh_t.fill(T::zero());
                        continue;
                    }
                    if first_last(d, t, len).1 {
                        initial_row(grad_state.h, (ld * b + bi) * r, &mut carry[bi * r..][..r]);
                        initial_row(
                            grad_state.c,
                            (ld * b + bi) * c_len,
                            &mut carry_c[bi * c_len..][..c_len],
                        );
                    }
                    for (j, o) in dh_t.iter_mut().enumerate() {
                        *o = d_y.data()[at * r + j] + carry[bi * r + j];
                    }
                }
                // With a projection the cell's own output is m_t: ∂L/∂m_t = ∂L/∂h_t·W_hr, for
                // the step's rows at once.
                if let Some(w_hr) = &p.w_hr {
                    T::gemm(
                        b,
                        r,
                        h,
                        T::one(),
                        &dh_all[t * b * r..][..b * r],
                        r,
                        1,
                        w_hr.data(),
                        h,
                        1,
                        T::zero(),
                        &mut dm,
                        h,
                        1,
                    );
                }
                for (bi, &len) in lengths.iter().enumerate() {
                    let row = t * b + bi;
                    let at = row * d_n + d;
                    if t >= len {
                        // Past the row's end: no step, no gradient (and nothing carried).
                        d_x[row * gh..][..gh].fill(T::zero());
                        if split {
                            d_r[row * gh..][..gh].fill(T::zero());
                        }
                        direct[bi * r..][..r].fill(T::zero());
                        continue;
                    }
                    let first = first_last(d, t, len).0;
                    let cp = &mut c_prev[bi * c_len..][..c_len];
                    if first {
                        cp.copy_from_slice(&c0[(ld * b + bi) * c_len..][..c_len]);
                    } else {
                        let ca = ((tp * b + bi) * d_n + d) * c_len;
                        cp.copy_from_slice(&cs[ca..][..c_len]);
                    }
                    let (dh_cell, h_cell) = match proj {
                        true => (&dm[bi * h..][..h], &ms[at * m_len..][..m_len]),
                        false => (&dh_all[row * r..][..r], &y.data()[at * r..][..r]),
                    };
                    cell.backward(
                        dh_cell,
                        &mut carry_c[bi * c_len..][..c_len],
                        h_cell,
                        &saved[(d * t_len * b + row) * s_h..][..s_h],
                        &h_prev[row * r..][..r],
                        &c_prev[bi * c_len..][..c_len],
                        &mut d_x[row * gh..][..gh],
                        &mut d_r[if split { row * gh } else { 0 }..][..if split { gh } else { 0 }],
                        &mut direct[bi * r..][..r],
                    );
                }
                // δh_{t-1} = δR_t · W_hh + the direct term
                let d_rec = if split { &d_r } else { &d_x };
                carry.copy_from_slice(&direct);
                T::gemm(
                    b,
                    gh,
                    r,
                    T::one(),
                    &d_rec[t * b * gh..][..b * gh],
                    gh,
                    1,
                    p.w_hh.data(),
                    r,
                    1,
                    T::one(),
                    &mut carry,
                    r,
                    1,
                );
                // A row whose first step this was has its ∂h0 (and ∂c0) now.
                for (bi, &len) in lengths.iter().enumerate() {
                    if t < len && first_last(d, t, len).0 {
                        let to = ld * b + bi;
                        grad_h0.data_mut()[to * r..][..r].copy_from_slice(&carry[bi * r..][..r]);
                        if let Some(gc) = &mut grad_c0 {
                            gc.data_mut()[to * h..][..h]
                                .copy_from_slice(&carry_c[bi * c_len..][..c_len]);
                        }
                    }
                }
            }
            let g = &mut grads[ld];
            let tb = t_len * b;
            let d_rec = if split { &d_r } else { &d_x };
            // ∂W_hh = δRᵀ·H_prev, ∂W_ih = δXᵀ·X, ∂X += δX·W_ih
            T::gemm(
                gh,
                tb,
                r,
                T::one(),
                d_rec,
                1,
                gh,
                &h_prev,
                r,
                1,
                T::zero(),
                g.w_hh.data_mut(),
                r,
                1,
            );
            // ∂W_hr = Σ_t ∂L/∂h_tᵀ·m_t, m_t of direction d at stride D·H.
            if let Some(gw) = &mut g.w_hr {
                T::gemm(
                    r,
                    tb,
                    h,
                    T::one(),
                    &dh_all,
                    1,
                    r,
                    &ms[d * h..],
                    d_n * h,
                    1,
                    T::zero(),
                    gw.data_mut(),
                    h,
                    1,
                );
            }
            match (x, input) {
                (Some(x), _) => {
                    T::gemm(
                        gh,
                        tb,
                        i_l,
                        T::one(),
                        &d_x,
                        1,
                        gh,
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
                        gh,
                        i_l,
                        T::one(),
                        &d_x,
                        gh,
                        1,
                        p.w_ih.data(),
                        i_l,
                        1,
                        T::one(),
                        d_in.data_mut(),
                        i_l,
                        1,
                    );
                }
                (None, Input::Tokens { ids, .. }) => {
                    // The gather's gradient: column `id` of ∂W_ih collects δx of its steps.
                    let gw = g.w_ih.data_mut();
                    for (row, &id) in d_x.chunks_exact(gh).zip(ids) {
                        for (j, &v) in row.iter().enumerate() {
                            gw[j * i_l + id as usize] = gw[j * i_l + id as usize] + v;
                        }
                    }
                }
                (None, Input::Dense(_)) => unreachable!("dense input is always Some"),
            }
            for (bias, src) in [(&mut g.b_ih, &d_x), (&mut g.b_hh, d_rec)] {
                if let Some(bias) = bias {
                    let sums = bias.data_mut();
                    for row in src.chunks_exact(gh) {
                        for (s, &v) in sums.iter_mut().zip(row) {
                            *s = *s + v;
                        }
                    }
                }
            }
        }
        // Through the mask between layer l - 1 and this one: ∂y_{l-1} = ∂x_l·mask·scale.
        if let Some(d) = trace.dropout
            && l > 0
        {
            d.apply(l - 1, d_in.data_mut());
        }
        super::pool::recycle(std::mem::replace(&mut d_y, d_in).into_data());
    }
    for v in [d_x, d_r, h_prev, dh_all] {
        super::pool::recycle(v);
    }
    let grad_input = matches!(input, Input::Dense(_)).then_some(d_y);
    Ok((
        grad_input,
        grad_h0,
        grad_c0,
        RnnParams::from_parts(cfg, grads),
    ))
}
