//! The GPU forward pass against the CPU reference in f64, on seeded random models and inputs,
//! for every cell (the size sweeps cycle through them; LSTM runs with a `c0` whenever `h0` is
//! given, and `c_n` is checked too).
//!
//! Tolerance: relative normwise error 1e-4 (`common::assert_close`) on both `output` and
//! `h_n`, for f32 GPU arithmetic against f64 CPU arithmetic. Weights use PyTorch's default
//! init `U(-1/√H, 1/√H)` and inputs and `h0` are uniform in [-1, 1], so even relu stacks
//! over hundreds of steps stay bounded.

mod common;

use wgpu_rnn::{Cell, Device, Rnn, RnnConfig, RnnParams, State, Tensor, cpu};

const TOL: f64 = 1e-4;

/// Sizes that straddle the step kernel's 64-unit and 4-row workgroups and the GEMM's 64 tile.
const SIZES: [usize; 8] = [1, 3, 17, 63, 64, 65, 127, 257];

/// Random input `[t, b, I]` and, when `with_h0`, `h0` `[L·D, b, H]`.
fn inputs(
    cfg: &RnnConfig,
    t: usize,
    b: usize,
    with_h0: bool,
    seed: u64,
) -> (Tensor, Option<Tensor>) {
    let x = common::random(&[t, b, cfg.input_size], 1.0, seed);
    let h0 = with_h0.then(|| {
        common::random(
            &[cfg.num_layers * cfg.directions(), b, cfg.real_hidden_size()],
            1.0,
            seed ^ 0x5eed,
        )
    });
    (x, h0)
}

/// Runs `rnn` (on the GPU) and checks it against the f64 CPU forward of the same parameters.
/// A cell with a cell state gets a random `c0` whenever `h0` is given.
#[track_caller]
fn check(rnn: &mut Rnn, x: &Tensor, h0: Option<&Tensor>, what: &str) {
    let cfg = *rnn.params().config();
    let c0 = h0
        .filter(|_| cfg.cell.spec().has_cell_state())
        .map(|h| common::random(&[h.shape()[0], h.shape()[1], cfg.hidden_size], 1.0, 0xc0));
    let state = State {
        h: h0,
        c: c0.as_ref(),
    };
    let got = rnn
        .forward(x, state)
        .unwrap_or_else(|e| panic!("{what}: gpu forward failed: {e}"));
    let (h0, c0) = (
        h0.map(Tensor::cast::<f64>),
        c0.as_ref().map(Tensor::cast::<f64>),
    );
    let state = State {
        h: h0.as_ref(),
        c: c0.as_ref(),
    };
    let want = cpu::forward(&rnn.params().cast::<f64>(), &x.cast::<f64>(), state).unwrap();
    common::assert_close(&format!("{what}: output"), &got.output, &want.output, TOL);
    common::assert_close(&format!("{what}: h_n"), &got.h_n, &want.h_n, TOL);
    match (&got.c_n, &want.c_n) {
        (Some(g), Some(w)) => common::assert_close(&format!("{what}: c_n"), g, w, TOL),
        (None, None) => {}
        (g, w) => panic!("{what}: c_n {g:?}, expected {w:?}"),
    }
}

/// The `i`-th cell, so that each size sweep runs every cell.
fn cell(i: usize) -> Cell {
    Cell::ALL[i % Cell::ALL.len()]
}

/// A fresh GPU model for `cfg`, then one checked forward of shape `(t, b)`.
#[track_caller]
fn check_config(cfg: RnnConfig, t: usize, b: usize, with_h0: bool, seed: u64) {
    let mut rnn = Rnn::new(RnnParams::random(cfg, seed), &Device::Gpu(common::gpu())).unwrap();
    let (x, h0) = inputs(&cfg, t, b, with_h0, seed + 1);
    let what = format!("{cfg:?}, T={t}, B={b}, h0={with_h0}");
    check(&mut rnn, &x, h0.as_ref(), &what);
}

fn base() -> RnnConfig {
    RnnConfig::new(Cell::RnnTanh, 5, 7)
}

#[test]
fn hidden_sizes() {
    for (i, &h) in SIZES.iter().enumerate() {
        let cfg = RnnConfig {
            hidden_size: h,
            cell: cell(i),
            ..base()
        };
        check_config(cfg, 4, 3, i % 2 == 0, 100 + i as u64);
    }
    // The widest, bidirectional with two layers: the second layer's input is 2·257.
    let cfg = RnnConfig {
        hidden_size: 257,
        ..base()
    }
    .layers(2)
    .bidirectional(true);
    check_config(cfg, 3, 2, true, 150);
}

#[test]
fn input_sizes() {
    for (i, &n) in SIZES.iter().enumerate() {
        let cfg = RnnConfig {
            input_size: n,
            cell: cell(i + 1),
            ..base()
        };
        check_config(cfg, 4, 3, i % 2 == 1, 200 + i as u64);
    }
}

#[test]
fn batch_sizes() {
    for (i, &b) in SIZES.iter().enumerate() {
        let cfg = RnnConfig {
            cell: cell(i + 2),
            ..base()
        }
        .bidirectional(i % 2 == 0);
        check_config(cfg, 4, b, i % 3 == 0, 300 + i as u64);
    }
}

#[test]
fn single_step() {
    for (i, cfg) in [
        base(),
        base().layers(3).bidirectional(true),
        RnnConfig::new(Cell::RnnRelu, 17, 65).layers(2),
    ]
    .into_iter()
    .enumerate()
    {
        check_config(cfg, 1, 5, false, 400 + i as u64);
        check_config(cfg, 1, 5, true, 410 + i as u64);
    }
}

#[test]
fn long_sequences() {
    check_config(RnnConfig::new(Cell::RnnTanh, 4, 16), 300, 2, true, 500);
    check_config(RnnConfig::new(Cell::RnnRelu, 4, 16), 300, 2, true, 501);
    check_config(
        RnnConfig::new(Cell::RnnTanh, 3, 8)
            .layers(2)
            .bidirectional(true),
        257,
        3,
        false,
        502,
    );
    check_config(
        RnnConfig::new(Cell::RnnRelu, 3, 8)
            .layers(2)
            .bidirectional(true),
        200,
        1,
        true,
        503,
    );
    for (i, cell) in [Cell::Lstm, Cell::Gru].into_iter().enumerate() {
        check_config(RnnConfig::new(cell, 4, 16), 300, 2, true, 505 + i as u64);
        let cfg = RnnConfig::new(cell, 3, 65).layers(2).bidirectional(true);
        check_config(cfg, 257, 3, i == 0, 507 + i as u64);
    }
    // Wider than one step workgroup (65 units) with a batch that is not a multiple of 4.
    check_config(
        RnnConfig::new(Cell::RnnRelu, 7, 65)
            .layers(2)
            .bidirectional(true),
        300,
        5,
        true,
        504,
    );
}

/// Every combination of layers {1, 2, 3}, bidirectional, bias and cell (and an LSTM with a
/// projection), each run with `h0`
/// and then without on the same model (so the second call must clear the `h0` the first one
/// uploaded).
#[test]
fn all_config_combinations() {
    let mut seed = 600;
    for num_layers in 1..=3 {
        for bidirectional in [false, true] {
            for bias in [false, true] {
                let cells = Cell::ALL.map(|c| (c, 0)).into_iter();
                for (cell, proj_size) in cells.chain([(Cell::Lstm, 3)]) {
                    seed += 1;
                    let cfg = RnnConfig {
                        cell,
                        input_size: 3,
                        hidden_size: 5,
                        num_layers,
                        bidirectional,
                        bias,
                        batch_first: false,
                        proj_size,
                        dropout: 0.0,
                    };
                    let mut rnn =
                        Rnn::new(RnnParams::random(cfg, seed), &Device::Gpu(common::gpu()))
                            .unwrap();
                    let (x, h0) = inputs(&cfg, 6, 2, true, seed + 1000);
                    check(&mut rnn, &x, h0.as_ref(), &format!("{cfg:?} with h0"));
                    check(&mut rnn, &x, None, &format!("{cfg:?} without h0 after h0"));
                }
            }
        }
    }
}

/// The GPU caches a workspace per `(T, B)`: switching shapes and back must give the right
/// answers with fresh data each time.
#[test]
fn shape_changes_on_one_model() {
    let cfg = RnnConfig::new(Cell::RnnTanh, 6, 65)
        .layers(2)
        .bidirectional(true);
    let mut rnn = Rnn::new(RnnParams::random(cfg, 700), &Device::Gpu(common::gpu())).unwrap();
    let shapes = [(5, 3), (9, 2), (5, 3), (1, 7), (9, 2), (9, 3), (5, 3)];
    for (i, &(t, b)) in shapes.iter().enumerate() {
        let (x, h0) = inputs(&cfg, t, b, i % 2 == 1, 710 + i as u64);
        check(
            &mut rnn,
            &x,
            h0.as_ref(),
            &format!("call {i}: T={t}, B={b}"),
        );
    }
    // Same shape, same data twice: bit-identical (the pass is deterministic).
    let (x, h0) = inputs(&cfg, 5, 3, true, 799);
    let first = rnn.forward(&x, h0.as_ref()).unwrap();
    let second = rnn.forward(&x, h0.as_ref()).unwrap();
    assert_eq!(first, second);
}

/// `Device::Cpu` (f32) against the f64 reference, and the GPU against `Device::Cpu`, so that
/// the two public devices agree with each other as well as with the reference.
#[test]
fn gpu_matches_cpu_device() {
    let cfg = RnnConfig::new(Cell::RnnTanh, 17, 63)
        .layers(2)
        .bidirectional(true);
    let params = RnnParams::random(cfg, 800);
    let (x, h0) = inputs(&cfg, 20, 4, true, 801);
    let mut on_cpu = Rnn::new(params.clone(), &Device::Cpu).unwrap();
    let mut on_gpu = Rnn::new(params.clone(), &Device::Gpu(common::gpu())).unwrap();
    let c = on_cpu.forward(&x, h0.as_ref()).unwrap();
    let g = on_gpu.forward(&x, h0.as_ref()).unwrap();
    let want = cpu::forward(
        &params.cast::<f64>(),
        &x.cast(),
        h0.map(|h| h.cast()).as_ref(),
    )
    .unwrap();
    common::assert_close("cpu f32 vs f64: output", &c.output, &want.output, 1e-5);
    common::assert_close("cpu f32 vs f64: h_n", &c.h_n, &want.h_n, 1e-5);
    common::assert_close("gpu vs cpu device: output", &g.output, &c.output, TOL);
    common::assert_close("gpu vs cpu device: h_n", &g.h_n, &c.h_n, TOL);
}

/// `h_n` is where PyTorch puts it: the last step of the forward direction and step 0 of the
/// reverse direction of the top layer (checked on the GPU result itself).
#[test]
fn h_n_layout() {
    let cfg = RnnConfig::new(Cell::RnnRelu, 3, 5)
        .layers(2)
        .bidirectional(true);
    let mut rnn = Rnn::new(RnnParams::random(cfg, 900), &Device::Gpu(common::gpu())).unwrap();
    let (t, b, h) = (7, 2, 5);
    let (x, _) = inputs(&cfg, t, b, false, 901);
    let out = rnn.forward(&x, None).unwrap();
    let o = out.output.data();
    let hn = out.h_n.data();
    for bi in 0..b {
        for j in 0..h {
            // h_n index layer·D + direction = 2 (top forward) and 3 (top reverse).
            assert_eq!(hn[(2 * b + bi) * h + j], o[((t - 1) * b + bi) * 2 * h + j]);
            assert_eq!(hn[(3 * b + bi) * h + j], o[bi * 2 * h + h + j]);
        }
    }
}

/// Inference allocates only what a forward pass needs: the parameter gradients and the
/// backward workspace (gate gradients, ∂output, ∂x per layer, ∂h0) come with the first
/// backward pass.
#[test]
fn inference_allocates_no_training_buffers() {
    use wgpu_rnn::gpu::GpuRnn;
    let cfg = base().layers(2).bidirectional(true);
    let params = RnnParams::random(cfg, 9);
    let (t, b) = (6, 3);
    let (x, _) = inputs(&cfg, t, b, false, 10);
    let mut rnn = GpuRnn::new(common::gpu(), &params).unwrap();
    rnn.forward(&x, None).unwrap();
    let inference = rnn.memory_bytes();
    let out_len = t * b * cfg.output_size();
    rnn.backward(&Tensor::full(&[t, b, cfg.output_size()], 1.0), None)
        .unwrap();
    let training = rnn.memory_bytes();
    // At least the parameter gradients, ∂output and the gate gradients, in f32.
    let n_params: usize = params
        .to_tensor_file()
        .tensors
        .values()
        .map(|t| t.len())
        .sum();
    let at_least = 4 * (n_params + 2 * out_len) as u64;
    assert!(
        training >= inference + at_least,
        "inference {inference} B, after backward {training} B: expected {at_least} B more"
    );
    // A second forward pass of the same shape allocates nothing.
    rnn.forward(&x, None).unwrap();
    assert_eq!(rnn.memory_bytes(), training);
}
