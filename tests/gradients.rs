//! Gradients of `L = Σ output·grad_output + Σ h_n·grad_h_n (+ Σ c_n·grad_c_n)`, for every cell:
//!
//! 1. the CPU's BPTT in f64 against central finite differences, for every configuration;
//! 2. the GPU's (f32) against the CPU's (f64) on seeded random models over awkward sizes;
//! 3. backward's errors (no forward, misshapen or non-finite `grad_output` / `grad_h_n`);
//! 4. backward after forwards of changing shape on one model (the GPU caches a workspace per
//!    `(T, B)` and builds its backward buffers lazily).
//!
//! Tolerances (relative normwise, `common::assert_close`):
//! - finite differences: `1e-6`. With `ε = 1e-6` in f64 the truncation error is `O(ε²)` and the
//!   rounding error about `1e-16·|L|/ε ≈ 1e-10` per element, far below it.
//! - GPU against CPU: `1e-4` for f32 against f64. Weights use PyTorch's default init
//!   `U(-1/√H, 1/√H)` and every input, `h0`, `grad_output` and `grad_h_n` is uniform in
//!   `[-1, 1]`, so the recurrence contracts and even relu stacks over 200 steps stay bounded.

mod common;

use wgpu_rnn::cpu::{self, ForwardOutput, Gradients};
use wgpu_rnn::{Cell, Device, Error, Rnn, RnnConfig, RnnParams, State, Tensor};

/// Finite-difference step (f64).
const EPS: f64 = 1e-6;
/// Analytic CPU gradients against finite differences, both f64.
const FD_TOL: f64 = 1e-6;
/// GPU (f32) gradients against CPU (f64) gradients.
const GPU_TOL: f64 = 1e-4;

// ---------------------------------------------------------------------------------------------
// 1. CPU gradients against finite differences (f64)
// ---------------------------------------------------------------------------------------------

/// One differentiation problem in f64: a model, its inputs and the loss's cotangents.
#[derive(Clone)]
struct Problem {
    params: RnnParams<f64>,
    x: Tensor<f64>,
    h0: Option<Tensor<f64>>,
    /// For cells with a cell state, whenever `h0` is given.
    c0: Option<Tensor<f64>>,
    grad_output: Tensor<f64>,
    grad_h_n: Option<Tensor<f64>>,
    /// For cells with a cell state, whenever `grad_h_n` is given.
    grad_c_n: Option<Tensor<f64>>,
}

/// A tensor the loss depends on.
#[derive(Clone, Copy, Debug)]
enum Target {
    Input,
    H0,
    C0,
    /// Layer-direction `ld`, tensor `0..4` = `w_ih`, `w_hh`, `b_ih`, `b_hh`.
    Param(usize, usize),
}

fn dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.data().iter().zip(b.data()).map(|(x, y)| x * y).sum()
}

impl Problem {
    fn random(
        cfg: RnnConfig,
        t: usize,
        b: usize,
        with_h0: bool,
        with_grad_h_n: bool,
        seed: u64,
    ) -> Self {
        let ld = cfg.num_layers * cfg.directions();
        let (h_shape, c_shape) = ([ld, b, cfg.real_hidden_size()], [ld, b, cfg.hidden_size]);
        let c = cfg.cell.spec().has_cell_state();
        Problem {
            params: RnnParams::random(cfg, seed),
            x: common::random(&[t, b, cfg.input_size], 1.0, seed + 1),
            h0: with_h0.then(|| common::random(&h_shape, 1.0, seed + 2)),
            c0: (with_h0 && c).then(|| common::random(&c_shape, 1.0, seed + 5)),
            grad_output: common::random(&[t, b, cfg.output_size()], 1.0, seed + 3),
            grad_h_n: with_grad_h_n.then(|| common::random(&h_shape, 1.0, seed + 4)),
            grad_c_n: (with_grad_h_n && c).then(|| common::random(&c_shape, 1.0, seed + 6)),
        }
    }

    fn state(&self) -> State<'_, f64> {
        State {
            h: self.h0.as_ref(),
            c: self.c0.as_ref(),
        }
    }

    fn grad_state(&self) -> State<'_, f64> {
        State {
            h: self.grad_h_n.as_ref(),
            c: self.grad_c_n.as_ref(),
        }
    }

    fn loss(&self) -> f64 {
        let out = cpu::forward(&self.params, &self.x, self.state()).unwrap();
        dot(&out.output, &self.grad_output)
            + self.grad_h_n.as_ref().map_or(0.0, |g| dot(&out.h_n, g))
            + self
                .grad_c_n
                .as_ref()
                .map_or(0.0, |g| dot(out.c_n.as_ref().expect("c_n"), g))
    }

    fn analytic(&self) -> Gradients<f64> {
        let (_, trace) = cpu::forward_trace(&self.params, &self.x, self.state()).unwrap();
        cpu::backward(
            &self.params,
            &self.x,
            self.state(),
            &trace,
            &self.grad_output,
            self.grad_state(),
        )
        .unwrap()
    }

    fn slot(&mut self, target: Target) -> &mut Tensor<f64> {
        match target {
            Target::Input => &mut self.x,
            Target::H0 => self
                .h0
                .as_mut()
                .expect("finite differences need an explicit h0"),
            Target::C0 => self
                .c0
                .as_mut()
                .expect("finite differences need an explicit c0"),
            Target::Param(ld, k) => {
                let p = &mut self.params.layers_mut()[ld];
                match k {
                    0 => &mut p.w_ih,
                    1 => &mut p.w_hh,
                    2 => p.b_ih.as_mut().expect("bias"),
                    3 => p.b_hh.as_mut().expect("bias"),
                    _ => p.w_hr.as_mut().expect("projection"),
                }
            }
        }
    }

    /// `(L(θ + ε) − L(θ − ε)) / 2ε` for every element of `target`, in its shape.
    fn numeric(&mut self, target: Target) -> Tensor<f64> {
        let mut grad = Tensor::zeros(self.slot(target).shape());
        for i in 0..grad.len() {
            let v = self.slot(target).data()[i];
            self.slot(target).data_mut()[i] = v + EPS;
            let plus = self.loss();
            self.slot(target).data_mut()[i] = v - EPS;
            let minus = self.loss();
            self.slot(target).data_mut()[i] = v;
            grad.data_mut()[i] = (plus - minus) / (2.0 * EPS);
        }
        grad
    }
}

/// Checks every gradient of `p` against finite differences. When `p` has no `h0` (or no
/// `grad_h_n`), the analytic gradients are those of `h0 = 0` (and `grad_h_n = 0`), which is
/// where the finite differences are taken.
#[track_caller]
fn check_fd(p: &Problem, what: &str) {
    let cfg = *p.params.config();
    let (ld, b) = (cfg.num_layers * cfg.directions(), p.x.shape()[1]);
    let (h_shape, c_shape) = ([ld, b, cfg.real_hidden_size()], [ld, b, cfg.hidden_size]);
    let g = p.analytic();
    let mut fd = p.clone();
    fd.h0.get_or_insert_with(|| Tensor::zeros(&h_shape));
    fd.grad_h_n.get_or_insert_with(|| Tensor::zeros(&h_shape));
    let with_c = cfg.cell.spec().has_cell_state();
    if with_c {
        fd.c0.get_or_insert_with(|| Tensor::zeros(&c_shape));
        fd.grad_c_n.get_or_insert_with(|| Tensor::zeros(&c_shape));
    }
    assert_eq!(
        fd.loss(),
        p.loss(),
        "{what}: zero h0/grad_h_n change the loss"
    );

    let check = |name: &str, got: &Tensor<f64>, want: &Tensor<f64>| {
        common::assert_close(&format!("{what}: grad.{name}"), got, want, FD_TOL);
    };
    check("input", &g.input, &fd.numeric(Target::Input));
    check("h0", &g.h0, &fd.numeric(Target::H0));
    match (&g.c0, with_c) {
        (Some(c0), true) => check("c0", c0, &fd.numeric(Target::C0)),
        (None, false) => {}
        (got, _) => panic!("{what}: grad.c0 {got:?} for {}", cfg.cell),
    }
    assert_eq!(g.params.config(), &cfg, "{what}: gradient config");
    assert_eq!(g.params.layers().len(), cfg.num_layers * cfg.directions());
    for (ld, gl) in g.params.layers().iter().enumerate() {
        let (l, d) = (ld / cfg.directions(), ld % cfg.directions());
        let names = cfg
            .param_names(l, d)
            .into_iter()
            .chain([cfg.proj_name(l, d)]);
        let grads = [
            Some(&gl.w_ih),
            Some(&gl.w_hh),
            gl.b_ih.as_ref(),
            gl.b_hh.as_ref(),
            gl.w_hr.as_ref(),
        ];
        for (k, (name, got)) in names.zip(grads).enumerate() {
            if k == 4 && cfg.proj_size == 0 {
                assert!(got.is_none(), "{what}: {name} without a projection");
                continue;
            }
            if (2..4).contains(&k) && !cfg.bias {
                assert!(
                    got.is_none(),
                    "{what}: {name}: a gradient for a missing bias"
                );
                continue;
            }
            let got = got.unwrap_or_else(|| panic!("{what}: no gradient for {name}"));
            check(&name, got, &fd.numeric(Target::Param(ld, k)));
        }
    }
}

fn fd_case(cfg: RnnConfig, with_h0: bool, with_grad_h_n: bool, seed: u64) {
    // Small shapes: T = 4, B = 2, I = 3, H = 4.
    let p = Problem::random(cfg, 4, 2, with_h0, with_grad_h_n, seed);
    let what = format!("{cfg:?}, T=4, B=2, h0={with_h0}, grad_h_n={with_grad_h_n}, seed {seed}");
    check_fd(&p, &what);
}

/// Every combination of bidirectional and bias, for 1 and 2 layers, and one 3-layer stack.
///
/// Relu has a kink at 0, where finite differences and the analytic gradient disagree; with
/// random data the chance that some pre-activation lies within `ε·|∂a/∂θ| ≈ 1e-6` of 0 is about
/// 1e-4 per case, and these seeds are fixed (the numbers are deterministic), so no case here
/// straddles a kink.
fn fd_all(cell: Cell, seed: u64) {
    let mut seed = seed;
    for layers in [1, 2] {
        for bidirectional in [false, true] {
            for bias in [false, true] {
                let cfg = RnnConfig::new(cell, 3, 4)
                    .layers(layers)
                    .bidirectional(bidirectional)
                    .bias(bias);
                fd_case(cfg, true, true, seed);
                seed += 10;
            }
        }
    }
    let cfg = RnnConfig::new(cell, 3, 4).layers(3).bidirectional(true);
    fd_case(cfg, true, true, seed);
}

#[test]
fn cpu_gradients_match_finite_differences_tanh() {
    fd_all(Cell::RnnTanh, 1000);
}

#[test]
fn cpu_gradients_match_finite_differences_relu() {
    fd_all(Cell::RnnRelu, 2000);
}

#[test]
fn cpu_gradients_match_finite_differences_lstm() {
    fd_all(Cell::Lstm, 2500);
}

/// LSTM projections (`proj_size` P = 2 < H = 4): every layer count, direction and bias, with
/// `h0`/`c0` and `grad_h_n`/`grad_c_n`; `weight_hr`'s gradient included.
#[test]
fn cpu_gradients_match_finite_differences_lstm_projection() {
    let mut seed = 2600;
    for layers in [1, 2] {
        for bidirectional in [false, true] {
            for bias in [false, true] {
                let cfg = RnnConfig::new(Cell::Lstm, 3, 4)
                    .proj_size(2)
                    .layers(layers)
                    .bidirectional(bidirectional)
                    .bias(bias);
                fd_case(cfg, true, true, seed);
                seed += 10;
            }
        }
    }
    let cfg = RnnConfig::new(Cell::Lstm, 3, 4).proj_size(3).layers(3);
    fd_case(cfg, false, true, seed);
}

#[test]
fn cpu_gradients_match_finite_differences_gru() {
    fd_all(Cell::Gru, 2700);
}

/// `h0 = None` and `grad_h_n = None` mean zeros: the gradients are those at `h0 = 0` (whose
/// `grad.h0` is still returned) and of the loss without the `h_n` term.
#[test]
fn cpu_gradients_without_h0_or_grad_h_n() {
    for (i, cell) in Cell::ALL.into_iter().enumerate() {
        let cfg = RnnConfig::new(cell, 3, 4).layers(2).bidirectional(true);
        let seed = 3000 + 10 * i as u64;
        fd_case(cfg, false, false, seed);
        fd_case(cfg, false, true, seed + 100);
        fd_case(cfg.bias(false), true, false, seed + 200);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. GPU (f32) against CPU (f64)
// ---------------------------------------------------------------------------------------------

fn gpu_device() -> Device {
    Device::Gpu(common::gpu())
}

/// Inputs of one backward check, f32 as the engine takes them.
struct Inputs {
    x: Tensor,
    h0: Option<Tensor>,
    /// For cells with a cell state, whenever `h0` is given.
    c0: Option<Tensor>,
    grad_output: Tensor,
    grad_h_n: Option<Tensor>,
    /// For cells with a cell state, whenever `grad_h_n` is given.
    grad_c_n: Option<Tensor>,
}

impl Inputs {
    fn state(&self) -> State<'_> {
        State {
            h: self.h0.as_ref(),
            c: self.c0.as_ref(),
        }
    }

    fn grad_state(&self) -> State<'_> {
        State {
            h: self.grad_h_n.as_ref(),
            c: self.grad_c_n.as_ref(),
        }
    }
}

fn inputs(
    cfg: &RnnConfig,
    t: usize,
    b: usize,
    with_h0: bool,
    with_grad_h_n: bool,
    seed: u64,
) -> Inputs {
    let ld = cfg.num_layers * cfg.directions();
    let (hs, cs) = ([ld, b, cfg.real_hidden_size()], [ld, b, cfg.hidden_size]);
    let c = cfg.cell.spec().has_cell_state();
    Inputs {
        x: common::random(&[t, b, cfg.input_size], 1.0, seed),
        h0: with_h0.then(|| common::random(&hs, 1.0, seed ^ 0x5eed)),
        c0: (with_h0 && c).then(|| common::random(&cs, 1.0, seed ^ 0xc0c0)),
        grad_output: common::random(&[t, b, cfg.output_size()], 1.0, seed ^ 0x6a0d),
        grad_h_n: with_grad_h_n.then(|| common::random(&hs, 1.0, seed ^ 0x9a4d)),
        grad_c_n: (with_grad_h_n && c).then(|| common::random(&cs, 1.0, seed ^ 0xc1c1)),
    }
}

/// The f64 CPU reference for `params` (cast from f32) on `inp` (cast from f32).
fn reference(params: &RnnParams, inp: &Inputs) -> (ForwardOutput<f64>, Gradients<f64>) {
    let p = params.cast::<f64>();
    let x = inp.x.cast::<f64>();
    let cast = |t: &Option<Tensor>| t.as_ref().map(Tensor::cast::<f64>);
    let (h0, c0) = (cast(&inp.h0), cast(&inp.c0));
    let (ghn, gcn) = (cast(&inp.grad_h_n), cast(&inp.grad_c_n));
    let state = State {
        h: h0.as_ref(),
        c: c0.as_ref(),
    };
    let (out, trace) = cpu::forward_trace(&p, &x, state).unwrap();
    let grad_state = State {
        h: ghn.as_ref(),
        c: gcn.as_ref(),
    };
    let g = cpu::backward(
        &p,
        &x,
        state,
        &trace,
        &inp.grad_output.cast::<f64>(),
        grad_state,
    )
    .unwrap();
    (out, g)
}

/// Compares gradients by PyTorch name: `input`, `h0` and every tensor of
/// `params.to_tensor_file()`.
#[track_caller]
fn assert_grads_close(what: &str, got: &Gradients, want: &Gradients<f64>, tol: f64) {
    common::assert_close(&format!("{what}: grad.input"), &got.input, &want.input, tol);
    common::assert_close(&format!("{what}: grad.h0"), &got.h0, &want.h0, tol);
    match (&got.c0, &want.c0) {
        (Some(g), Some(w)) => common::assert_close(&format!("{what}: grad.c0"), g, w, tol),
        (None, None) => {}
        (g, w) => panic!("{what}: grad.c0 {g:?}, expected {w:?}"),
    }
    let (got_p, want_p) = (got.params.to_tensor_file(), want.params.to_tensor_file());
    let mut names: Vec<_> = want_p.tensors.keys().cloned().collect();
    names.sort();
    let mut got_names: Vec<_> = got_p.tensors.keys().cloned().collect();
    got_names.sort();
    assert_eq!(got_names, names, "{what}: gradient tensor names");
    for name in &names {
        common::assert_close(
            &format!("{what}: grad.{name}"),
            &got_p.tensors[name],
            &want_p.tensors[name],
            tol,
        );
    }
}

/// Forward and backward on `rnn`, checked against the f64 CPU reference.
#[track_caller]
fn check_backward(rnn: &mut Rnn, inp: &Inputs, what: &str) {
    let what = format!("{what} on {}", rnn.device().describe());
    let out = rnn
        .forward(&inp.x, inp.state())
        .unwrap_or_else(|e| panic!("{what}: forward failed: {e}"));
    let g = rnn
        .backward(&inp.grad_output, inp.grad_state())
        .unwrap_or_else(|e| panic!("{what}: backward failed: {e}"));
    let (want_out, want_g) = reference(rnn.params(), inp);
    common::assert_close(
        &format!("{what}: output"),
        &out.output,
        &want_out.output,
        GPU_TOL,
    );
    common::assert_close(&format!("{what}: h_n"), &out.h_n, &want_out.h_n, GPU_TOL);
    match (&out.c_n, &want_out.c_n) {
        (Some(g), Some(w)) => common::assert_close(&format!("{what}: c_n"), g, w, GPU_TOL),
        (None, None) => {}
        (g, w) => panic!("{what}: c_n {g:?}, expected {w:?}"),
    }
    assert_grads_close(&what, &g, &want_g, GPU_TOL);
}

/// A fresh GPU model for `cfg`, then one checked forward and backward of shape `(t, b)`.
#[track_caller]
fn gpu_case(cfg: RnnConfig, t: usize, b: usize, with_h0: bool, with_grad_h_n: bool, seed: u64) {
    let mut rnn = Rnn::new(RnnParams::random(cfg, seed), &gpu_device()).unwrap();
    let inp = inputs(&cfg, t, b, with_h0, with_grad_h_n, seed + 1);
    let what =
        format!("{cfg:?}, T={t}, B={b}, h0={with_h0}, grad_h_n={with_grad_h_n}, seed {seed}");
    check_backward(&mut rnn, &inp, &what);
}

/// The base of the size sweeps: I = 5, H = 7, T = 4, B = 3.
const BASE: (usize, usize, usize, usize) = (5, 7, 4, 3);

/// The `i`-th variant of the flags, so that each sweep mixes cell, layers, direction, bias,
/// `h0` and `grad_h_n`.
fn variant(i: usize, input_size: usize, hidden_size: usize) -> (RnnConfig, bool, bool) {
    let cell = Cell::ALL[i % Cell::ALL.len()];
    let cfg = RnnConfig::new(cell, input_size, hidden_size)
        .layers(1 + i % 3)
        .bidirectional(i % 4 >= 2)
        .bias(i % 5 != 1);
    (cfg, i % 3 != 2, i % 4 != 3)
}

#[test]
fn gpu_gradients_hidden_sizes() {
    let (i_sz, _, t, b) = BASE;
    for (i, h) in [1, 3, 17, 63, 64, 65, 127, 257].into_iter().enumerate() {
        let (cfg, h0, ghn) = variant(i, i_sz, h);
        gpu_case(cfg, t, b, h0, ghn, 100 + 10 * i as u64);
    }
    // The widest, two bidirectional layers: the second layer's input is 2·127.
    let cfg = RnnConfig::new(Cell::RnnTanh, i_sz, 127)
        .layers(2)
        .bidirectional(true);
    gpu_case(cfg, t, b, true, true, 190);
}

#[test]
fn gpu_gradients_batch_sizes() {
    let (i_sz, h, t, _) = BASE;
    for (i, b) in [1, 3, 17, 63, 64, 65, 127, 257].into_iter().enumerate() {
        let (cfg, h0, ghn) = variant(i + 1, i_sz, h);
        gpu_case(cfg, t, b, h0, ghn, 200 + 10 * i as u64);
    }
    // A wide batch over a hidden size past the step kernel's 64 units.
    let cfg = RnnConfig::new(Cell::RnnRelu, i_sz, 65).bidirectional(true);
    gpu_case(cfg, t, 65, true, true, 290);
}

#[test]
fn gpu_gradients_input_sizes() {
    let (_, h, t, b) = BASE;
    for (i, i_sz) in [1, 3, 17, 63, 64, 65, 127, 257].into_iter().enumerate() {
        let (cfg, h0, ghn) = variant(i + 2, i_sz, h);
        gpu_case(cfg, t, b, h0, ghn, 300 + 10 * i as u64);
    }
}

/// Every cell, layer count (1..3), direction and bias at the base size, alternating `h0` and
/// `grad_h_n`.
#[test]
fn gpu_gradients_all_configurations() {
    let (i_sz, h, t, b) = BASE;
    let mut n = 0u64;
    for cell in Cell::ALL {
        for layers in 1..=3 {
            for bidirectional in [false, true] {
                for bias in [false, true] {
                    let cfg = RnnConfig::new(cell, i_sz, h)
                        .layers(layers)
                        .bidirectional(bidirectional)
                        .bias(bias);
                    gpu_case(
                        cfg,
                        t,
                        b,
                        n.is_multiple_of(2),
                        !n.is_multiple_of(3),
                        400 + 10 * n,
                    );
                    n += 1;
                }
            }
        }
    }
}

/// LSTM projections on the GPU against the f64 CPU: `(H, P)` across the step kernels' 64-unit
/// blocks and P = 1 and H - 1, every layer count, direction and bias, one step and 200 steps.
#[test]
fn gpu_gradients_projections() {
    let (i_sz, _, t, b) = BASE;
    let sizes = [(7, 3), (17, 16), (65, 1), (66, 64), (130, 65), (257, 100)];
    for (n, (h, p)) in sizes.into_iter().enumerate() {
        let cfg = RnnConfig::new(Cell::Lstm, i_sz, h)
            .proj_size(p)
            .layers(1 + n % 2)
            .bidirectional(n % 3 != 1)
            .bias(n % 4 != 2);
        gpu_case(cfg, t, b, n % 2 == 0, n % 3 != 2, 800 + 10 * n as u64);
    }
    let mut n = 0u64;
    for layers in 1..=3 {
        for bidirectional in [false, true] {
            for bias in [false, true] {
                let cfg = RnnConfig::new(Cell::Lstm, i_sz, 9)
                    .proj_size(4)
                    .layers(layers)
                    .bidirectional(bidirectional)
                    .bias(bias);
                gpu_case(
                    cfg,
                    t,
                    17,
                    n.is_multiple_of(2),
                    !n.is_multiple_of(3),
                    900 + 10 * n,
                );
                n += 1;
            }
        }
    }
    let cfg = RnnConfig::new(Cell::Lstm, i_sz, 9)
        .proj_size(5)
        .layers(2)
        .bidirectional(true);
    gpu_case(cfg, 1, b, true, true, 990);
    gpu_case(cfg, 1, b, false, false, 991);
    gpu_case(cfg, 200, 2, true, true, 992);
}

/// One step: the recurrent weights' gradient has only the `h0` term (no step reads a previous
/// output), and `grad.h0` is `δa_0·W_hh`.
#[test]
fn gpu_gradients_single_step() {
    let (i_sz, _, _, b) = BASE;
    let mut n = 0u64;
    for cell in Cell::ALL {
        for layers in 1..=3 {
            for bidirectional in [false, true] {
                let cfg = RnnConfig::new(cell, i_sz, 17)
                    .layers(layers)
                    .bidirectional(bidirectional)
                    .bias(n % 3 != 2);
                gpu_case(cfg, 1, b, n.is_multiple_of(2), n % 4 != 3, 600 + 10 * n);
                n += 1;
            }
        }
    }
    // No h0 at T = 1: ∂W_hh is exactly zero, even right after a longer backward on the same
    // model (its `(T - 1)·B = 0`-deep GEMM must still overwrite the previous gradient).
    let cfg = RnnConfig::new(Cell::RnnTanh, i_sz, 17).bidirectional(true);
    let mut rnn = Rnn::new(RnnParams::random(cfg, 690), &gpu_device()).unwrap();
    check_backward(
        &mut rnn,
        &inputs(&cfg, 6, b, true, true, 692),
        "T=6 before T=1",
    );
    let inp = inputs(&cfg, 1, b, false, true, 691);
    check_backward(&mut rnn, &inp, "T=1 without h0");
    rnn.forward(&inp.x, None).unwrap();
    let g = rnn.backward(&inp.grad_output, None).unwrap();
    for p in g.params.layers() {
        assert!(
            p.w_hh.data().iter().all(|&v| v == 0.0),
            "T=1, h0 = 0: grad.weight_hh must be 0, found {:?}",
            p.w_hh.data()
        );
    }
}

/// 200 steps: long recurrences in f32, relu included (default init keeps them bounded).
#[test]
fn gpu_gradients_long_sequences() {
    let cases = [
        (Cell::RnnTanh, 2, true, true, true, true),
        (Cell::RnnRelu, 2, true, true, true, true),
        (Cell::RnnRelu, 1, false, true, false, false),
        (Cell::RnnTanh, 3, false, false, true, false),
        (Cell::RnnRelu, 3, true, false, false, true),
        (Cell::Lstm, 2, true, true, true, true),
        (Cell::Gru, 2, true, true, true, true),
        (Cell::Lstm, 1, false, false, false, true),
        (Cell::Gru, 3, false, true, true, false),
    ];
    for (n, (cell, layers, bidirectional, bias, h0, ghn)) in cases.into_iter().enumerate() {
        let cfg = RnnConfig::new(cell, 5, 8)
            .layers(layers)
            .bidirectional(bidirectional)
            .bias(bias);
        gpu_case(cfg, 200, 2, h0, ghn, 700 + 10 * n as u64);
    }
    // Long and wider: H = 64, B = 3.
    let cfg = RnnConfig::new(Cell::RnnRelu, 5, 64).bidirectional(true);
    gpu_case(cfg, 200, 3, true, true, 790);
}

// ---------------------------------------------------------------------------------------------
// 3. Errors
// ---------------------------------------------------------------------------------------------

fn devices() -> [Device; 2] {
    [Device::Cpu, gpu_device()]
}

#[test]
fn backward_without_forward_is_a_config_error() {
    let cfg = RnnConfig::new(Cell::RnnTanh, 3, 4).layers(2);
    for device in devices() {
        let what = device.describe();
        let mut rnn = Rnn::new(RnnParams::random(cfg, 1), &device).unwrap();
        let err = rnn
            .backward(&Tensor::zeros(&[2, 1, 4]), None)
            .expect_err("backward before any forward");
        assert!(matches!(err, Error::Config(_)), "{what}: {err:?}");
        common::assert_msg(&err, &["backward", "forward"]);

        // A forward that fails its shape check leaves nothing to differentiate either.
        let bad = rnn.forward(&Tensor::zeros(&[2, 1, 5]), None).unwrap_err();
        assert!(matches!(bad, Error::Shape { .. }), "{what}: {bad:?}");
        let err = rnn
            .backward(&Tensor::zeros(&[2, 1, 4]), None)
            .expect_err("backward after a failed first forward");
        assert!(matches!(err, Error::Config(_)), "{what}: {err:?}");
    }
}

#[track_caller]
fn assert_shape_err(err: Error, name: &str, expected: &[usize], found: &[usize], what: &str) {
    common::assert_msg(
        &err,
        &[name, &format!("{expected:?}"), &format!("{found:?}")],
    );
    match err {
        Error::Shape {
            name: n,
            expected: e,
            found: f,
        } => {
            assert_eq!(n, name, "{what}");
            assert_eq!(e, expected, "{what}: {name} expected");
            assert_eq!(f, found, "{what}: {name} found");
        }
        other => panic!("{what}: expected Error::Shape naming {name}, got {other:?}"),
    }
}

#[test]
fn backward_rejects_misshapen_gradients() {
    // L = 2, D = 2, H = 4; T = 3, B = 2: grad_output [3, 2, 8], grad_h_n [4, 2, 4].
    let cfg = RnnConfig::new(Cell::RnnRelu, 3, 4)
        .layers(2)
        .bidirectional(true);
    for device in devices() {
        let what = device.describe();
        let mut rnn = Rnn::new(RnnParams::random(cfg, 2), &device).unwrap();
        let inp = inputs(&cfg, 3, 2, true, true, 3);
        rnn.forward(&inp.x, inp.h0.as_ref()).unwrap();
        let go_shape = [3, 2, 8];
        for bad in [
            vec![3, 2, 4],
            vec![2, 3, 8],
            vec![4, 2, 8],
            vec![3, 1, 8],
            vec![6, 8],
            vec![3, 2, 8, 1],
        ] {
            let err = rnn
                .backward(&Tensor::zeros(&bad), inp.grad_h_n.as_ref())
                .expect_err("misshapen grad_output");
            assert_shape_err(err, "grad_output", &go_shape, &bad, &what);
        }
        let hn_shape = [4, 2, 4];
        for bad in [vec![2, 2, 4], vec![4, 3, 4], vec![4, 2, 8], vec![8, 4]] {
            let err = rnn
                .backward(&inp.grad_output, Some(&Tensor::zeros(&bad)))
                .expect_err("misshapen grad_h_n");
            assert_shape_err(err, "grad_h_n", &hn_shape, &bad, &what);
        }
        // Non-finite cotangents are named too.
        let mut nan = inp.grad_output.clone();
        nan.data_mut()[5] = f32::NAN;
        let err = rnn.backward(&nan, None).unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { name, index: 5, .. } if name == "grad_output"),
            "{what}: {err:?}"
        );
        let mut inf = inp.grad_h_n.clone().unwrap();
        inf.data_mut()[0] = f32::INFINITY;
        let err = rnn.backward(&inp.grad_output, Some(&inf)).unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { name, index: 0, .. } if name == "grad_h_n"),
            "{what}: {err:?}"
        );
        // The rejected calls changed nothing: the next backward is still correct.
        let g = rnn
            .backward(&inp.grad_output, inp.grad_h_n.as_ref())
            .unwrap();
        let (_, want) = reference(rnn.params(), &inp);
        assert_grads_close(&format!("{what}: after rejected calls"), &g, &want, GPU_TOL);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Backward after forwards of changing shape on one model
// ---------------------------------------------------------------------------------------------

/// The GPU keeps one workspace per `(T, B)` and builds its backward part on the first
/// backward at that shape: a second forward at another shape must be differentiated with the
/// new shape's buffers, and returning to an earlier shape must not reuse stale ones.
#[test]
fn backward_after_forward_with_a_new_shape() {
    let cfg = RnnConfig::new(Cell::RnnTanh, 6, 9)
        .layers(2)
        .bidirectional(true);
    for device in devices() {
        let mut rnn = Rnn::new(RnnParams::random(cfg, 800), &device).unwrap();
        // (T, B, h0, grad_h_n, seed): new T and B, a return to an earlier shape, the same
        // shape again (h0 and grad_h_n dropped, then restored), same T with a new B, same B
        // with a new T, a single step.
        let steps = [
            (5, 3, true, true, 801),
            (9, 2, true, false, 802),
            (2, 7, false, true, 803),
            (5, 3, false, false, 804),
            (5, 3, true, true, 805),
            (5, 1, true, true, 806),
            (3, 1, true, false, 807),
            (1, 1, true, true, 808),
            (9, 2, false, true, 809),
        ];
        for (t, b, h0, ghn, seed) in steps {
            let inp = inputs(&cfg, t, b, h0, ghn, seed);
            let what = format!("T={t}, B={b}, h0={h0}, grad_h_n={ghn} (seed {seed})");
            check_backward(&mut rnn, &inp, &what);
        }

        // A forward at a new shape, never differentiated, then one at the old shape: backward
        // belongs to the last forward.
        let a = inputs(&cfg, 4, 5, true, true, 810);
        let b = inputs(&cfg, 6, 2, true, true, 811);
        rnn.forward(&a.x, a.h0.as_ref()).unwrap();
        rnn.forward(&b.x, b.h0.as_ref()).unwrap();
        let g = rnn.backward(&b.grad_output, b.grad_h_n.as_ref()).unwrap();
        let (_, want) = reference(rnn.params(), &b);
        let what = format!("{}: second of two forwards", device.describe());
        assert_grads_close(&what, &g, &want, GPU_TOL);
        // Gradients for the old shape are rejected now, naming the current one.
        let err = rnn
            .backward(&a.grad_output, a.grad_h_n.as_ref())
            .unwrap_err();
        assert_shape_err(err, "grad_output", &[6, 2, 18], &[4, 5, 18], &what);

        // Backward twice after one forward: the same gradients, also with grad_h_n dropped.
        let again = rnn.backward(&b.grad_output, b.grad_h_n.as_ref()).unwrap();
        assert_eq!(again, g, "{what}: repeated backward");
        let no_ghn = Inputs {
            x: b.x.clone(),
            h0: b.h0.clone(),
            c0: b.c0.clone(),
            grad_output: b.grad_output.clone(),
            grad_h_n: None,
            grad_c_n: None,
        };
        let g = rnn.backward(&no_ghn.grad_output, None).unwrap();
        let (_, want) = reference(rnn.params(), &no_ghn);
        assert_grads_close(&format!("{what}, grad_h_n dropped"), &g, &want, GPU_TOL);
    }
}

/// Variable-length batches: the CPU's f64 gradients against finite differences, every cell,
/// bidirectional (and a projected LSTM), with h0 (c0), grad_h_n (grad_c_n) and lengths in any
/// order.
#[test]
fn cpu_gradients_with_lengths_match_finite_differences() {
    let lengths = [2usize, 4, 1];
    let configs = Cell::ALL
        .map(|cell| RnnConfig::new(cell, 3, 4))
        .into_iter()
        .chain([RnnConfig::new(Cell::Lstm, 3, 4).proj_size(2)]);
    for (n, cfg) in configs.enumerate() {
        let cfg = cfg.bidirectional(true);
        let cell = cfg.cell;
        let p = Problem::random(cfg, 4, lengths.len(), true, true, 5000 + 10 * n as u64);
        let loss = |p: &Problem| -> f64 {
            let (out, _) =
                cpu::forward_trace_with_lengths(&p.params, &p.x, p.state(), &lengths).unwrap();
            dot(&out.output, &p.grad_output)
                + p.grad_h_n.as_ref().map_or(0.0, |g| dot(&out.h_n, g))
                + p.grad_c_n
                    .as_ref()
                    .map_or(0.0, |g| dot(out.c_n.as_ref().unwrap(), g))
        };
        let (_, trace) =
            cpu::forward_trace_with_lengths(&p.params, &p.x, p.state(), &lengths).unwrap();
        let g = cpu::backward(
            &p.params,
            &p.x,
            p.state(),
            &trace,
            &p.grad_output,
            p.grad_state(),
        )
        .unwrap();
        let mut fd = p.clone();
        let mut numeric = |target: Target| -> Tensor<f64> {
            let mut grad = Tensor::zeros(fd.slot(target).shape());
            for i in 0..grad.len() {
                let v = fd.slot(target).data()[i];
                fd.slot(target).data_mut()[i] = v + EPS;
                let plus = loss(&fd);
                fd.slot(target).data_mut()[i] = v - EPS;
                let minus = loss(&fd);
                fd.slot(target).data_mut()[i] = v;
                grad.data_mut()[i] = (plus - minus) / (2.0 * EPS);
            }
            grad
        };
        let what = format!(
            "{cell} (proj_size {}) with lengths {lengths:?}",
            cfg.proj_size
        );
        common::assert_close(
            &format!("{what}: grad.input"),
            &g.input,
            &numeric(Target::Input),
            FD_TOL,
        );
        common::assert_close(
            &format!("{what}: grad.h0"),
            &g.h0,
            &numeric(Target::H0),
            FD_TOL,
        );
        if let Some(c0) = &g.c0 {
            common::assert_close(
                &format!("{what}: grad.c0"),
                c0,
                &numeric(Target::C0),
                FD_TOL,
            );
        }
        for ld in 0..2 {
            for (k, name) in ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"]
                .iter()
                .enumerate()
            {
                let gl = &g.params.layers()[ld];
                let Some(got) = [
                    Some(&gl.w_ih),
                    Some(&gl.w_hh),
                    gl.b_ih.as_ref(),
                    gl.b_hh.as_ref(),
                    gl.w_hr.as_ref(),
                ][k] else {
                    assert!(k == 4 && cfg.proj_size == 0, "{what}: no grad.{name}");
                    continue;
                };
                let want = numeric(Target::Param(ld, k));
                common::assert_close(&format!("{what}: grad.{name} ({ld})"), got, &want, FD_TOL);
            }
        }
    }
}
