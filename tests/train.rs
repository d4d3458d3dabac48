//! Training: GPU against CPU trajectories, optimizers against their textbook updates,
//! clipping, truncated BPTT, and a small run whose loss must fall.

mod common;

use common::{token_batch, value_batch};

use wgpu_rnn::train::{
    Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer, clip_scale, update,
};
use wgpu_rnn::{Cell, Device, RnnConfig, Tensor, TensorFile};

fn models() -> Vec<(SeqModel, Batch, &'static str)> {
    let tok = RnnConfig::new(Cell::RnnTanh, 11, 17)
        .layers(2)
        .bidirectional(true);
    let reg = RnnConfig::new(Cell::RnnRelu, 3, 65).bias(false);
    let lstm = RnnConfig::new(Cell::Lstm, 11, 9)
        .layers(2)
        .bidirectional(true);
    let gru = RnnConfig::new(Cell::Gru, 3, 65).layers(2);
    let proj = RnnConfig::new(Cell::Lstm, 3, 20)
        .proj_size(7)
        .layers(2)
        .bidirectional(true);
    vec![
        (
            SeqModel::new(tok, Task::Tokens { vocab: 11 }, 1).unwrap(),
            token_batch(9, 5, 11, 3),
            "tokens, 2 layers, bidirectional",
        ),
        (
            SeqModel::new(reg, Task::Regression { outputs: 2 }, 2).unwrap(),
            value_batch(13, 3, 3, 2, 4),
            "regression, relu, no bias",
        ),
        (
            SeqModel::new(lstm, Task::Tokens { vocab: 11 }, 3).unwrap(),
            token_batch(9, 5, 11, 5),
            "tokens, LSTM, 2 layers, bidirectional",
        ),
        (
            SeqModel::new(gru, Task::Regression { outputs: 2 }, 4).unwrap(),
            value_batch(13, 3, 3, 2, 6),
            "regression, GRU, 2 layers",
        ),
        (
            SeqModel::new(proj, Task::Regression { outputs: 2 }, 5).unwrap(),
            value_batch(11, 3, 3, 2, 7),
            "regression, LSTM with proj_size 7, 2 layers, bidirectional",
        ),
    ]
}

fn run(
    model: &SeqModel,
    batch: &Batch,
    cfg: TrainConfig,
    device: &Device,
    steps: usize,
    carry: bool,
) -> (TrainState, Vec<f64>) {
    let mut tr = Trainer::new(TrainState::new(model.clone()), cfg, device).unwrap();
    let mut losses = Vec::new();
    for _ in 0..steps {
        tr.step(batch, carry).unwrap();
        losses.push(tr.loss().unwrap());
    }
    (tr.state().unwrap(), losses)
}

/// Four carried steps on the CPU and on `gpu`: the losses agree to 1e-4 relative and every
/// stack parameter to 1e-4 normwise; returns the final (CPU, GPU) states.
#[track_caller]
fn trajectories_agree(
    model: &SeqModel,
    batch: &Batch,
    cfg: TrainConfig,
    gpu: &Device,
    what: &str,
) -> (TrainState, TrainState) {
    let (c, cl) = run(model, batch, cfg, &Device::Cpu, 4, true);
    let (g, gl) = run(model, batch, cfg, gpu, 4, true);
    common::assert_trajectories_agree(what, (&c, &cl), (&g, &gl));
    (c, g)
}

#[test]
fn gpu_and_cpu_training_agree() {
    let gpu = Device::Gpu(common::gpu());
    for opt in [
        Optimizer::sgd(0.1, 0.9),
        Optimizer::adam(1e-2),
        Optimizer::adagrad(5e-2),
    ] {
        for clip in [None, Some(0.5)] {
            for (model, batch, what) in models() {
                let cfg = TrainConfig {
                    optimizer: opt,
                    clip_norm: clip,
                };
                let what = format!("{what}, {} clip {clip:?}", opt.name());
                let (c, g) = trajectories_agree(&model, &batch, cfg, &gpu, &what);
                common::assert_close(
                    &format!("{what}: head weight"),
                    &g.model.head_w,
                    &c.model.head_w,
                    1e-4,
                );
                let m = |v: &[f32]| Tensor::new(vec![v.len()], v.to_vec()).unwrap();
                common::assert_close(&format!("{what}: m2"), &m(&g.m2), &m(&c.m2), 1e-3);
                assert_eq!(g.step, 4);
            }
        }
    }
}

#[test]
fn optimizers_match_their_textbook_updates() {
    // Two steps by hand, with g = [1, -2] both times, θ0 = [0.5, 0.5].
    let g = [1.0f32, -2.0];
    let step = |opt: Optimizer| {
        let (mut p, mut m1, mut m2) = ([0.5f32, 0.5], [0.0f32; 2], [0.0f32; 2]);
        update(&opt, 1, 1.0, &mut p, &g, &mut m1, &mut m2);
        let p1 = p;
        update(&opt, 2, 1.0, &mut p, &g, &mut m1, &mut m2);
        (p1, p)
    };
    // SGD, lr 0.1, momentum 0.9: buf1 = g, buf2 = 0.9 g + g = 1.9 g.
    let (p1, p2) = step(Optimizer::sgd(0.1, 0.9));
    assert_eq!(p1, [0.4, 0.7]);
    assert!(
        (p2[0] - (0.4 - 0.19)).abs() < 1e-6 && (p2[1] - (0.7 + 0.38)).abs() < 1e-6,
        "{p2:?}"
    );
    // Adam: with a constant gradient the bias-corrected step is lr·sign(g) (up to ε).
    let (p1, p2) = step(Optimizer::adam(0.01));
    assert!(
        (p1[0] - 0.49).abs() < 1e-6 && (p1[1] - 0.51).abs() < 1e-6,
        "{p1:?}"
    );
    assert!(
        (p2[0] - 0.48).abs() < 1e-6 && (p2[1] - 0.52).abs() < 1e-6,
        "{p2:?}"
    );
    // Adagrad, lr 0.1: v1 = g², step lr·g/|g|; v2 = 2g², step lr/√2.
    let (p1, p2) = step(Optimizer::adagrad(0.1));
    assert!(
        (p1[0] - 0.4).abs() < 1e-6 && (p1[1] - 0.6).abs() < 1e-6,
        "{p1:?}"
    );
    let s = 0.1 / 2f32.sqrt();
    assert!(
        (p2[0] - (0.4 - s)).abs() < 1e-6 && (p2[1] - (0.6 + s)).abs() < 1e-6,
        "{p2:?}"
    );
}

#[test]
fn clipping_scales_to_the_max_norm() {
    // ‖g‖ = 5: clipping at 1 scales by 1/5 (PyTorch's clip_coef with its 1e-6), at 10 not at all.
    assert!((clip_scale(25.0, Some(1.0)) - 1.0 / (5.0 + 1e-6)).abs() < 1e-7);
    assert_eq!(clip_scale(25.0, Some(10.0)), 1.0);
    assert_eq!(clip_scale(25.0, None), 1.0);
    // In a step: SGD lr 1 on a clipped gradient moves parameters by at most max_norm.
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let (model, batch, _) = models().remove(0);
        let before = model.clone();
        let cfg = TrainConfig {
            optimizer: Optimizer::sgd(1.0, 0.0),
            clip_norm: Some(1e-3),
        };
        let (after, _) = run(&model, &batch, cfg, &device, 1, false);
        let moved: f64 = before
            .head_w
            .data()
            .iter()
            .zip(after.model.head_w.data())
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            moved <= 1.001e-3,
            "{}: head moved {moved}",
            device.describe()
        );
    }
}

#[test]
fn truncated_bptt_carries_the_hidden_state() {
    // With lr = 0 nothing changes, so the losses of chunks carried from one to the next must
    // equal those of the same chunks evaluated with the previous chunk's h_n as h0.
    let cfg = TrainConfig {
        optimizer: Optimizer::sgd(0.0, 0.0),
        clip_norm: None,
    };
    // Every token model: Elman, and LSTM, whose c carries too.
    for (model, _, _) in models()
        .into_iter()
        .filter(|(m, _, _)| matches!(m.task, Task::Tokens { .. }))
    {
        let chunks: Vec<Batch> = (0..3).map(|i| token_batch(6, 4, 11, 10 + i)).collect();
        let (mut h, mut c_state) = (None, None);
        let mut want = Vec::new();
        for c in &chunks {
            let state = wgpu_rnn::State {
                h: h.as_ref(),
                c: c_state.as_ref(),
            };
            let (loss, h_n, c_n) = model.evaluate(c, state).unwrap();
            want.push(loss);
            (h, c_state) = (Some(h_n), c_n);
        }
        for device in [Device::Cpu, Device::Gpu(common::gpu())] {
            let mut tr = Trainer::new(TrainState::new(model.clone()), cfg, &device).unwrap();
            for (i, c) in chunks.iter().enumerate() {
                tr.step(c, true).unwrap();
                let got = tr.loss().unwrap();
                assert!(
                    (got - want[i]).abs() < 1e-5,
                    "{}: chunk {i}: {got} vs {}",
                    device.describe(),
                    want[i]
                );
            }
            // Without carry, every chunk starts from zeros: the first loss of a fresh state.
            tr.step(&chunks[1], false).unwrap();
            let zero = model.evaluate(&chunks[1], None).unwrap().0;
            assert!((tr.loss().unwrap() - zero).abs() < 1e-5);
        }
    }
}

#[test]
fn truncated_bptt_with_one_chunk_is_full_bptt() {
    // One chunk covering the whole sequence: carrying from a fresh trainer starts from zeros,
    // so the step equals a plain (full BPTT) step.
    let cfg = TrainConfig {
        optimizer: Optimizer::adam(1e-2),
        clip_norm: None,
    };
    let (model, batch, _) = models().remove(0);
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let (a, _) = run(&model, &batch, cfg, &device, 1, true);
        let (b, _) = run(&model, &batch, cfg, &device, 1, false);
        assert_eq!(a, b, "{}", device.describe());
    }
}

#[test]
fn a_small_model_learns_a_repeating_sequence() {
    // "abcab..." with period 5 over a vocabulary of 5: the next token is determined, so the loss
    // must fall far below ln 5 = 1.61.
    let seq: Vec<u32> = (0..200).map(|i| (i % 5) as u32).collect();
    let (t, b) = (20, 4);
    let cfg = TrainConfig {
        optimizer: Optimizer::adam(2e-2),
        clip_norm: Some(5.0),
    };
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let model = SeqModel::new(
            RnnConfig::new(Cell::RnnTanh, 5, 16),
            Task::Tokens { vocab: 5 },
            7,
        )
        .unwrap();
        let mut tr = Trainer::new(TrainState::new(model), cfg, &device).unwrap();
        for s in 0..60 {
            let mut inputs = vec![0; t * b];
            let mut targets = vec![0; t * b];
            for bi in 0..b {
                let off = (s * 7 + bi * 13) % (seq.len() - t - 1);
                for ti in 0..t {
                    inputs[ti * b + bi] = seq[off + ti];
                    targets[ti * b + bi] = seq[off + ti + 1];
                }
            }
            tr.step(
                &Batch::Tokens {
                    t,
                    b,
                    inputs,
                    targets,
                },
                false,
            )
            .unwrap();
        }
        let loss = tr.loss().unwrap();
        assert!(
            loss < 0.1,
            "{}: loss {loss} after 60 steps",
            device.describe()
        );
    }
}

#[test]
fn the_profile_times_every_dispatch_of_a_step() {
    use wgpu_rnn::gpu::kernels::{Kernel, StepTunables};
    use wgpu_rnn::train::GpuTrainer;
    let (model, batch, _) = models().remove(0);
    let cell = model.config().cell;
    let cfg = TrainConfig {
        optimizer: Optimizer::adam(1e-2),
        clip_norm: Some(1.0),
    };
    let trainer = GpuTrainer::new(common::gpu(), &TrainState::new(model), cfg).unwrap();
    let kernels = trainer.profile(&batch, 2).unwrap();
    let count = |k: Kernel| -> usize {
        kernels
            .iter()
            .filter(|e| e.kernel == k)
            .map(|e| e.dispatches)
            .sum()
    };
    // T = 9 steps forward and backward, per layer (2 layers, both directions in each dispatch).
    let tune = StepTunables::SOFTWARE;
    assert_eq!(count(Kernel::Step(cell, tune)), 2 * 9);
    assert_eq!(count(Kernel::StepBwd(cell, tune)), 2 * 9);
    assert_eq!(count(Kernel::SoftmaxXent), 1);
    assert_eq!(count(Kernel::Embed), 1);
    assert!(count(Kernel::Gemm) > 0 && count(Kernel::Optim) > 0);
    assert!(kernels.iter().all(|k| k.ms.is_finite() && k.ms >= 0.0));
    // Entries are distinct (kernel, workgroups) pairs.
    for (i, a) in kernels.iter().enumerate() {
        assert!(
            kernels[i + 1..]
                .iter()
                .all(|b| (b.kernel, b.groups) != (a.kernel, a.groups))
        );
    }
}

/// The headless models of [`Task::MeanSquare`] (the benchmark's training step) at awkward
/// sizes, with their batches.
fn mean_square_models() -> Vec<(SeqModel, Batch, &'static str)> {
    let bidir = RnnConfig::new(Cell::RnnTanh, 5, 17)
        .layers(2)
        .bidirectional(true);
    let relu = RnnConfig::new(Cell::RnnRelu, 3, 65).bias(false);
    let batch = |t: usize, b: usize, i: usize, seed: u64| {
        Batch::input_only(common::random(&[t, b, i], 1.0, seed))
    };
    vec![
        (
            SeqModel::new(bidir, Task::MeanSquare, 1).unwrap(),
            batch(9, 5, 5, 3),
            "mean square, tanh, 2 layers, bidirectional",
        ),
        (
            SeqModel::new(relu, Task::MeanSquare, 2).unwrap(),
            batch(13, 3, 3, 4),
            "mean square, relu, no bias",
        ),
    ]
}

fn input_of(batch: &Batch) -> &Tensor {
    match batch {
        Batch::Values { input, .. } => input,
        Batch::Tokens { .. } => unreachable!("mean-square batches are values"),
    }
}

/// `mean(y²)` and `∂/∂θ mean(y²)` by parameter name (PyTorch's `y.pow(2).mean().backward()`),
/// in f64 on the CPU: forward, `grad_output = 2y/N`, BPTT.
fn mean_square_reference(model: &SeqModel, input: &Tensor) -> (f64, TensorFile) {
    let p = model.rnn.cast::<f64>();
    let x = input.cast::<f64>();
    let (out, ys) = wgpu_rnn::cpu::forward_trace(&p, &x, None).unwrap();
    let n = out.output.len() as f64;
    let loss = out.output.data().iter().map(|v| v * v).sum::<f64>() / n;
    let grad_out = out.output.map(|v| 2.0 * v / n);
    let g = wgpu_rnn::cpu::backward(&p, &x, None, &ys, &grad_out, None).unwrap();
    (loss, g.params.to_tensor_file())
}

#[test]
fn mean_square_models_have_no_head() {
    for (model, batch, what) in mean_square_models() {
        let dh = model.config().output_size();
        assert_eq!(model.task.outputs(), 0, "{what}");
        assert!(!model.task.has_head());
        assert_eq!(model.head_w.shape(), &[0, dh], "{what}");
        assert_eq!(model.head_b.shape(), &[0], "{what}");
        assert_eq!(
            model.num_params(),
            model
                .rnn
                .to_tensor_file()
                .tensors
                .values()
                .map(Tensor::len)
                .sum::<usize>(),
            "{what}"
        );
        let (t, b) = model.check_batch(&batch).unwrap();
        // A target with features, or tokens, does not fit the task.
        let input = input_of(&batch).clone();
        let bad = Batch::Values {
            input,
            target: Tensor::zeros(&[t, b, 1]),
        };
        let err = model.check_batch(&bad).unwrap_err();
        common::assert_msg(&err, &["target", &format!("[{t}, {b}, 0]")]);
        let tokens = Batch::Tokens {
            t: 1,
            b: 1,
            inputs: vec![0],
            targets: vec![0],
        };
        assert!(model.check_batch(&tokens).is_err());
    }
}

#[test]
fn mean_square_loss_is_the_mean_of_the_squared_output() {
    let gpu = Device::Gpu(common::gpu());
    let cfg = TrainConfig {
        optimizer: Optimizer::sgd(1e-3, 0.0),
        clip_norm: None,
    };
    for (model, batch, what) in mean_square_models() {
        let input = input_of(&batch);
        let (want, _) = mean_square_reference(&model, input);
        // From the f32 forward of the public model API, summed in f64.
        let mut rnn = wgpu_rnn::Rnn::new(model.rnn.clone(), &Device::Cpu).unwrap();
        let y = rnn.forward(input, None).unwrap().output;
        let from_rnn = y.data().iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / y.len() as f64;
        assert!(
            (from_rnn - want).abs() <= 1e-5 * want,
            "{what}: {from_rnn} vs {want}"
        );
        let (eval, _, _) = model.evaluate(&batch, None).unwrap();
        assert!(
            (eval - want).abs() <= 1e-5 * want,
            "{what}: evaluate {eval} vs {want}"
        );
        for device in [Device::Cpu, gpu.clone()] {
            // The loss of a step is that of its forward pass, before the update.
            let (_, losses) = run(&model, &batch, cfg, &device, 1, false);
            assert!(
                (losses[0] - want).abs() <= 1e-4 * want,
                "{what} on {}: loss {} vs mean(y²) {want}",
                device.describe(),
                losses[0]
            );
        }
    }
}

#[test]
fn one_mean_square_sgd_step_moves_by_minus_lr_times_the_gradient_of_mean_y_squared() {
    // θ1 = θ0 − lr·∂mean(y²)/∂θ: with a large lr the update dwarfs the rounding of θ, so
    // (θ0 − θ1)/lr is the gradient to f32 precision.
    let gpu = Device::Gpu(common::gpu());
    let lr = 10.0;
    let cfg = TrainConfig {
        optimizer: Optimizer::sgd(lr, 0.0),
        clip_norm: None,
    };
    for (model, batch, what) in mean_square_models() {
        let (_, want) = mean_square_reference(&model, input_of(&batch));
        let before = model.rnn.to_tensor_file();
        for device in [Device::Cpu, gpu.clone()] {
            let (after, _) = run(&model, &batch, cfg, &device, 1, false);
            let after = after.model.rnn.to_tensor_file();
            assert_eq!(after.tensors.len(), want.tensors.len());
            for (name, w) in &want.tensors {
                let got = before.tensors[name].cast::<f64>().map(|v| v / lr as f64);
                let a = after.tensors[name].cast::<f64>();
                let got = Tensor::new(
                    got.shape().to_vec(),
                    got.data()
                        .iter()
                        .zip(a.data())
                        .map(|(b, a)| b - a / lr as f64)
                        .collect(),
                )
                .unwrap();
                common::assert_close(
                    &format!("{what} on {}: {name}: update / -lr", device.describe()),
                    &got,
                    w,
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn gpu_and_cpu_mean_square_training_agree() {
    let gpu = Device::Gpu(common::gpu());
    for opt in [
        Optimizer::sgd(1e-3, 0.0),
        Optimizer::sgd(0.5, 0.9),
        Optimizer::adam(1e-2),
        Optimizer::adagrad(5e-2),
    ] {
        // A clip far below the gradient's norm makes every step a clipped one.
        for clip in [None, Some(1e-3)] {
            for (model, batch, what) in mean_square_models() {
                let cfg = TrainConfig {
                    optimizer: opt,
                    clip_norm: clip,
                };
                let what = format!("{what}, {} clip {clip:?}", opt.name());
                let (c, g) = trajectories_agree(&model, &batch, cfg, &gpu, &what);
                assert_eq!(g.model.head_w.shape(), c.model.head_w.shape());
                assert_eq!(g.model.head_b.shape(), &[0]);
                let m = |v: &[f32]| Tensor::new(vec![v.len()], v.to_vec()).unwrap();
                assert_eq!(g.m1.len(), model.num_params());
                if !matches!(opt, Optimizer::Sgd { momentum: 0.0, .. }) {
                    let (gm, cm) = match opt {
                        Optimizer::Sgd { .. } => (&g.m1, &c.m1),
                        _ => (&g.m2, &c.m2),
                    };
                    common::assert_close(&format!("{what}: moments"), &m(gm), &m(cm), 1e-3);
                }
                assert_eq!(g.step, 4);
            }
        }
    }
}

#[test]
fn the_mean_square_step_is_resident_and_profiled() {
    use wgpu_rnn::gpu::kernels::Kernel;
    use wgpu_rnn::train::GpuTrainer;
    let (model, batch, _) = mean_square_models().remove(0);
    let cfg = TrainConfig {
        optimizer: Optimizer::sgd(1e-3, 0.0),
        clip_norm: Some(1.0),
    };
    let state = TrainState::new(model);
    let mut trainer = GpuTrainer::new(common::gpu(), &state, cfg).unwrap();
    let before = trainer.memory_bytes();
    trainer.step(&batch, false).unwrap();
    assert!(trainer.memory_bytes() > before && before > 0);
    let trainer = GpuTrainer::new(common::gpu(), &state, cfg).unwrap();
    let kernels = trainer.profile(&batch, 2).unwrap();
    let count = |k: Kernel| -> usize {
        kernels
            .iter()
            .filter(|e| e.kernel == k)
            .map(|e| e.dispatches)
            .sum()
    };
    // One loss dispatch and no head: one optimizer update (the stack's), no head GEMMs
    // beyond the stack's own, no softmax.
    assert_eq!(count(Kernel::Mse), 1);
    assert_eq!(count(Kernel::SoftmaxXent), 0);
    assert_eq!(count(Kernel::Optim), 1);
    assert!(kernels.iter().all(|k| k.ms.is_finite() && k.ms >= 0.0));
}
