//! Backpropagation through time on the CPU.

use crate::cpu::blocks::{self, Shared};
use crate::cpu::{Input, Trace, Widths, first_last, initial_row};
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
    let Widths {
        h,
        d_n,
        gh,
        r,
        c_len,
        ..
    } = Widths::of(&cfg);
    let dr = d_n * r;
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
    // Per direction (they run at the same time): δX and δR [T·B, G·H] (δR only when the cell
    // splits them), H_prev [T·B, R], the h_{t-1} of every step and row (zero past a row's end,
    // where the gate gradients are zero), and ∂L/∂h_t [T·B, R] (kept for ∂W_hr with a
    // projection).
    let full = lengths.iter().all(|&len| len == t_len);
    let tb = t_len * b;
    let mut d_x = super::pool::scratch(d_n * tb * gh);
    let mut d_r = super::pool::scratch(if split { d_n * tb * gh } else { 0 });
    let mut h_prev = match full {
        true => super::pool::scratch(d_n * tb * r),
        false => super::pool::zeroed(d_n * tb * r),
    };
    let mut dh_all = super::pool::scratch(d_n * tb * r);
    for l in (0..cfg.num_layers).rev() {
        let x = match (l, input) {
            (0, Input::Dense(x)) => Some(x),
            (0, Input::Tokens { .. }) => None,
            _ => Some(trace.layer_input(l)),
        };
        let i_l = cfg.layer_input_size(l);
        let ms = &trace.ms[l];
        let i_x = if x.is_some() { i_l } else { 0 };
        let mut d_in = Tensor::new(vec![t_len, b, i_x], super::pool::zeroed(t_len * b * i_x))?;
        let layer = BackRecurrence {
            l,
            t_len,
            lengths,
            params,
            h0: h0.data(),
            c0,
            grad_state,
            y: ys[l].data(),
            cs: &trace.cs[l],
            saved: &trace.saved[l],
            ms,
            d_y: d_y.data(),
            d_x: Shared::new(&mut d_x),
            d_r: Shared::new(&mut d_r),
            h_prev: Shared::new(&mut h_prev),
            dh_all: Shared::new(&mut dh_all),
            grad_h0: Shared::new(grad_h0.data_mut()),
            grad_c0: Shared::new(grad_c0.as_mut().map_or(&mut [][..], |c| c.data_mut())),
        };
        // SAFETY: each item runs one direction on its own block of batch rows, and
        // `BackRecurrence::run` touches only those rows of the shared buffers.
        blocks::for_each_block(d_n, b, |d, rows| unsafe { layer.run(d, rows) });
        for d in 0..d_n {
            let ld = l * d_n + d;
            let p = params.layer(l, d);
            let d_x = &d_x[d * tb * gh..][..tb * gh];
            let d_r =
                &d_r[if split { d * tb * gh } else { 0 }..][..if split { tb * gh } else { 0 }];
            let h_prev = &h_prev[d * tb * r..][..tb * r];
            let dh_all = &dh_all[d * tb * r..][..tb * r];
            let g = &mut grads[ld];
            let d_rec = if split { d_r } else { d_x };
            // ∂W_hh = δRᵀ·H_prev, ∂W_ih = δXᵀ·X, ∂X += δX·W_ih
            T::gemm(
                gh,
                tb,
                r,
                T::one(),
                d_rec,
                1,
                gh,
                h_prev,
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
                    dh_all,
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
                        d_x,
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
                        d_x,
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
            for (bias, src) in [(&mut g.b_ih, d_x), (&mut g.b_hh, d_rec)] {
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

/// One layer's reverse time loop, shared by its items (a direction and a block of batch rows
/// each, [`blocks::for_each_block`]): what they read, and the buffers they write at their own
/// rows (per direction `[D, T·B, ·]`, except `∂h0`, `∂c0` `[L·D, B, ·]`).
struct BackRecurrence<'a, T: Float> {
    l: usize,
    t_len: usize,
    lengths: &'a [usize],
    params: &'a RnnParams<T>,
    /// `h0` `[L·D, B, R]` and `c0` `[L·D, B, H]` (zeros when absent; `c0` empty without a
    /// cell state).
    h0: &'a [T],
    c0: &'a [T],
    grad_state: State<'a, T>,
    /// The layer's trace: output `[T, B, D·R]`, `c_t` and `m_t` `[T, B, D·H]`, saved
    /// activations `[D, T, B, S·H]`.
    y: &'a [T],
    cs: &'a [T],
    saved: &'a [T],
    ms: &'a [T],
    /// `∂L/∂y` of the layer `[T, B, D·R]`.
    d_y: &'a [T],
    d_x: Shared<'a, T>,
    d_r: Shared<'a, T>,
    h_prev: Shared<'a, T>,
    dh_all: Shared<'a, T>,
    grad_h0: Shared<'a, T>,
    grad_c0: Shared<'a, T>,
}

impl<T: Float> BackRecurrence<'_, T> {
    /// Runs direction `d` of the layer backward through time for the batch rows `rows`: their
    /// `h_{t-1}` of every step, then per step (latest first) `∂L/∂h_t`, with a projection one
    /// `[rows, R] × [R, H]` product for `∂L/∂m_t`, the cell's pointwise backward, and one
    /// `[rows, G·H] × [G·H, R]` product for `∂L/∂h_{t-1}`; `∂h0` (`∂c0`) at each row's first
    /// step.
    ///
    /// # Safety
    /// No other call at the same time may have the same direction and a row of `rows`.
    unsafe fn run(&self, d: usize, rows: std::ops::Range<usize>) {
        let cell = self.params.config().cell.math::<T>();
        let (t_len, b, nr) = (self.t_len, self.lengths.len(), rows.len());
        let Widths {
            h,
            d_n,
            gh,
            r,
            s_h,
            c_len,
            m_len,
        } = Widths::of(self.params.config());
        let split = cell.splits_gate_gradients();
        let (ld, tb) = (self.l * d_n + d, t_len * b);
        let p = self.params.layer(self.l, d);
        // This direction's part of the per-direction buffers.
        let (dx_at, dr_at, h_at) = (d * tb * gh, if split { d * tb * gh } else { 0 }, d * tb * r);
        // SAFETY (every `at` below): the rows are this item's (the caller's contract).
        // H_prev: h_{t-1} of every step and row (h0 at the row's first step).
        for t in 0..t_len {
            let tp = if d == 0 { t.wrapping_sub(1) } else { t + 1 };
            for bi in rows.clone() {
                let len = self.lengths[bi];
                let dst = unsafe { self.h_prev.at(h_at + (t * b + bi) * r, r) };
                if first_last(d, t, len).0 {
                    dst.copy_from_slice(&self.h0[(ld * b + bi) * r..][..r]);
                } else if t < len && tp < t_len {
                    dst.copy_from_slice(&self.y[((tp * b + bi) * d_n + d) * r..][..r]);
                }
            }
        }
        let mut c_prev = vec![T::zero(); nr * c_len];
        let mut carry = vec![T::zero(); nr * r];
        let mut carry_c = vec![T::zero(); nr * c_len];
        let mut direct = vec![T::zero(); nr * r];
        let mut dm = vec![T::zero(); nr * m_len];
        for s in 0..t_len {
            let t = if d == 0 { t_len - 1 - s } else { s };
            let tp = if d == 0 { t.wrapping_sub(1) } else { t + 1 };
            let block = t * b + rows.start;
            let dh_t = unsafe { self.dh_all.at(h_at + block * r, nr * r) };
            // ∂L/∂h_t of every row: the output's gradient plus what the later step carried
            // (∂L/∂h_n at a row's last step, with ∂L/∂c_n in the cell's carry).
            for (k, bi) in rows.clone().enumerate() {
                let len = self.lengths[bi];
                let at = (t * b + bi) * d_n + d;
                let dh = &mut dh_t[k * r..][..r];
                if t >= len {
                    dh.fill(T::zero());
                    continue;
                }
                if first_last(d, t, len).1 {
                    initial_row(
                        self.grad_state.h,
                        (ld * b + bi) * r,
                        &mut carry[k * r..][..r],
                    );
                    initial_row(
                        self.grad_state.c,
                        (ld * b + bi) * c_len,
                        &mut carry_c[k * c_len..][..c_len],
                    );
                }
                for (j, o) in dh.iter_mut().enumerate() {
                    *o = self.d_y[at * r + j] + carry[k * r + j];
                }
            }
            // With a projection the cell's own output is m_t: ∂L/∂m_t = ∂L/∂h_t·W_hr, for
            // the block's rows at once.
            if let Some(w_hr) = &p.w_hr {
                T::gemm(
                    nr,
                    r,
                    h,
                    T::one(),
                    dh_t,
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
            let d_x = unsafe { self.d_x.at(dx_at + block * gh, nr * gh) };
            let d_r = unsafe {
                self.d_r
                    .at(dr_at + block * gh, if split { nr * gh } else { 0 })
            };
            let h_prev = unsafe { self.h_prev.at(h_at + block * r, nr * r) };
            for (k, bi) in rows.clone().enumerate() {
                let len = self.lengths[bi];
                let row = t * b + bi;
                let at = row * d_n + d;
                let gr = if split { k * gh } else { 0 };
                let g_len = if split { gh } else { 0 };
                if t >= len {
                    // Past the row's end: no step, no gradient (and nothing carried).
                    d_x[k * gh..][..gh].fill(T::zero());
                    d_r[gr..][..g_len].fill(T::zero());
                    direct[k * r..][..r].fill(T::zero());
                    continue;
                }
                let cp = &mut c_prev[k * c_len..][..c_len];
                if first_last(d, t, len).0 {
                    cp.copy_from_slice(&self.c0[(ld * b + bi) * c_len..][..c_len]);
                } else {
                    let ca = ((tp * b + bi) * d_n + d) * c_len;
                    cp.copy_from_slice(&self.cs[ca..][..c_len]);
                }
                let (dh_cell, h_cell) = match m_len > 0 {
                    true => (&dm[k * h..][..h], &self.ms[at * m_len..][..m_len]),
                    false => (&dh_t[k * r..][..r], &self.y[at * r..][..r]),
                };
                cell.backward(
                    dh_cell,
                    &mut carry_c[k * c_len..][..c_len],
                    h_cell,
                    &self.saved[(d * tb + row) * s_h..][..s_h],
                    &h_prev[k * r..][..r],
                    &c_prev[k * c_len..][..c_len],
                    &mut d_x[k * gh..][..gh],
                    &mut d_r[gr..][..g_len],
                    &mut direct[k * r..][..r],
                );
            }
            // δh_{t-1} = δR_t · W_hh + the direct term
            let d_rec = if split { &*d_r } else { &*d_x };
            carry.copy_from_slice(&direct);
            T::gemm(
                nr,
                gh,
                r,
                T::one(),
                d_rec,
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
            for (k, bi) in rows.clone().enumerate() {
                let len = self.lengths[bi];
                if t < len && first_last(d, t, len).0 {
                    let to = ld * b + bi;
                    unsafe {
                        self.grad_h0
                            .at(to * r, r)
                            .copy_from_slice(&carry[k * r..][..r]);
                        self.grad_c0
                            .at(to * c_len, c_len)
                            .copy_from_slice(&carry_c[k * c_len..][..c_len]);
                    }
                }
            }
        }
    }
}
