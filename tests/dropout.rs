//! Dropout between layers in training (PyTorch's `dropout`): the generator against Random123's
//! known answers and the WGSL kernel against the Rust one, the dropped fraction, `p = 0` and an
//! all-ones mask bit for bit equal to no dropout, GPU and CPU trajectories with the same masks,
//! inference that ignores it, the backward pass of a fixed mask against finite differences,
//! checkpoints, bad probabilities and the CLI.

mod common;

use common::{token_batch, value_batch};

use wgpu_rnn::dropout::{Dropout, philox4x32_10};
use wgpu_rnn::train::checkpoint::Checkpoint;
use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer};
use wgpu_rnn::{
    Cell, Device, LayerParams, Rnn, RnnConfig, RnnParams, State, Tensor, TensorFile, cpu, gpu,
};

/// Random123's known-answer vectors for Philox4x32-10 (its `kat_vectors`): counter, key,
/// output.
#[test]
fn philox_matches_random123_known_answers() {
    let kat: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        (
            [0; 4],
            [0; 2],
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        ),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (ctr, key, want) in kat {
        assert_eq!(
            philox4x32_10(ctr, key),
            want,
            "counter {ctr:x?}, key {key:x?}"
        );
    }
}

/// The WGSL generator draws the Rust one's masks bit for bit: seeds and steps with both
/// words set, layers 0 and 3, lengths that are not multiples of 4.
#[test]
fn the_gpu_kernel_draws_the_cpu_masks() {
    let ctx = common::gpu();
    for (p, seed, step, layer, n) in [
        (0.5, 0u64, 0u64, 0usize, 1usize),
        (0.3, 0x1234_5678_9abc_def0, 0xffff_fffe_0000_0007, 3, 1037),
        (0.9, u64::MAX, 5, 1, 4096),
        (1e-12, 7, 1, 0, 13),
        (0.999, 42, 1 << 40, 2, 70_001),
    ] {
        let d = Dropout::new(p, seed, step).unwrap();
        let x: Tensor = common::random(&[n], 2.0, seed ^ step);
        let got = gpu::dropout(&ctx, &d, layer, x.data()).unwrap();
        let mut want = x.data().to_vec();
        d.apply(layer, &mut want);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "p {p} seed {seed:#x} step {step:#x} layer {layer}: element {i} of {n}: gpu {g}, cpu {w}"
            );
        }
    }
}

/// Over a layer of 2²⁰ elements the dropped fraction is within 4 standard deviations
/// (`sqrt(p(1-p)/n)`) of `p`, on both devices; the kept values are `x/(1-p)`.
#[test]
fn the_dropped_fraction_is_p_within_4_sigma() {
    let ctx = common::gpu();
    let n = 1 << 20;
    let ones = vec![1.0f32; n];
    for (p, step) in [(0.1f32, 0u64), (0.5, 1), (0.8, 2)] {
        let d = Dropout::new(p, 2024, step).unwrap();
        let mut cpu_mask = ones.clone();
        d.apply(1, &mut cpu_mask);
        let gpu_mask = gpu::dropout(&ctx, &d, 1, &ones).unwrap();
        for (device, mask) in [("cpu", &cpu_mask), ("gpu", &gpu_mask)] {
            let dropped = mask.iter().filter(|&&v| v == 0.0).count();
            assert!(mask.iter().all(|&v| v == 0.0 || v == 1.0 / (1.0 - p)));
            let frac = dropped as f64 / n as f64;
            let sigma = (f64::from(p) * (1.0 - f64::from(p)) / n as f64).sqrt();
            assert!(
                (frac - f64::from(p)).abs() <= 4.0 * sigma,
                "{device}: p {p}: dropped fraction {frac} is {:.1} sigma away",
                (frac - f64::from(p)).abs() / sigma
            );
        }
    }
}

/// Every cell, two or three layers, one and two directions, tokens and values, and a projected
/// LSTM; with `p`.
fn models(p: f32) -> Vec<(SeqModel, Batch, String)> {
    let mut out = Vec::new();
    for (k, cell) in Cell::ALL.into_iter().enumerate() {
        let k = k as u64;
        let tok = RnnConfig::new(cell, 11, 9).layers(2).dropout(p);
        out.push((
            SeqModel::new(tok, Task::Tokens { vocab: 11 }, 10 + k).unwrap(),
            token_batch(7, 5, 11, 20 + k),
            format!("{cell}, tokens, 2 layers"),
        ));
        let reg = RnnConfig::new(cell, 3, 13)
            .layers(3)
            .bidirectional(true)
            .dropout(p);
        out.push((
            SeqModel::new(reg, Task::Regression { outputs: 2 }, 30 + k).unwrap(),
            value_batch(6, 3, 3, 2, 40 + k),
            format!("{cell}, regression, 3 layers, bidirectional"),
        ));
    }
    // A projected LSTM: the masks are on the [T, B, D·P] outputs.
    let proj = RnnConfig::new(Cell::Lstm, 3, 13)
        .proj_size(5)
        .layers(2)
        .bidirectional(true)
        .dropout(p);
    out.push((
        SeqModel::new(proj, Task::Regression { outputs: 2 }, 50).unwrap(),
        value_batch(6, 3, 3, 2, 51),
        "lstm, proj_size 5, regression, 2 layers, bidirectional".to_string(),
    ));
    out
}

fn train_cfg() -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::adam(1e-2),
        clip_norm: Some(1.0),
    }
}

/// `steps` steps (carrying the state) from `state`: the losses and the final state.
fn run(state: TrainState, batch: &Batch, device: &Device, steps: usize) -> (TrainState, Vec<f64>) {
    run_carry(state, batch, device, steps, true)
}

fn run_carry(
    state: TrainState,
    batch: &Batch,
    device: &Device,
    steps: usize,
    carry: bool,
) -> (TrainState, Vec<f64>) {
    let mut tr = Trainer::new(state, train_cfg(), device).unwrap();
    let mut losses = Vec::new();
    for _ in 0..steps {
        tr.step(batch, carry).unwrap();
        losses.push(tr.loss().unwrap());
    }
    (tr.state().unwrap(), losses)
}

fn flat(s: &TrainState) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::new();
    for (_, t) in s.model.rnn.to_tensor_file().tensors {
        v.extend_from_slice(t.data());
    }
    v.extend_from_slice(s.model.head_w.data());
    v.extend_from_slice(s.model.head_b.data());
    v
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `p = 0` is no dropout, bit for bit, whatever the seed; and `p = 1e-12` (a mask of all ones:
/// `round(p·2³²) = 0` drops nothing and `1/(1-p)` is 1 in f32) runs the whole dropout path,
/// kernels and buffers, and still equals no dropout bit for bit: losses, parameters and
/// moments after 3 steps, on both devices.
#[test]
fn p_zero_and_an_all_ones_mask_equal_no_dropout_bit_for_bit() {
    let gpu = Device::Gpu(common::gpu());
    let plain = models(0.0);
    for p in [0.0f32, 1e-12] {
        for ((model, batch, what), (base, _, _)) in models(p).into_iter().zip(&plain) {
            for device in [&Device::Cpu, &gpu] {
                let with = TrainState::new(model.clone()).dropout_seed(77);
                let (s, l) = run(with, &batch, device, 3);
                let (s0, l0) = run(TrainState::new(base.clone()), &batch, device, 3);
                let what = format!("{what}, p {p}, {}", device.describe());
                assert_eq!(bits(&flat(&s)), bits(&flat(&s0)), "{what}: parameters");
                assert_eq!(bits(&s.m2), bits(&s0.m2), "{what}: moments");
                let l: Vec<u64> = l.iter().map(|x| x.to_bits()).collect();
                let l0: Vec<u64> = l0.iter().map(|x| x.to_bits()).collect();
                assert_eq!(l, l0, "{what}: losses");
            }
        }
    }
}

/// The same seed gives the same masks on both devices: 4 training steps of every cell agree
/// to 1e-4 relative (losses, every parameter); and dropout is on (the losses differ from the
/// run without it, and from a run with another seed).
#[test]
fn gpu_and_cpu_trajectories_agree_with_dropout() {
    let gpu = Device::Gpu(common::gpu());
    let plain = models(0.0);
    for ((model, batch, what), (base, _, _)) in models(0.4).into_iter().zip(&plain) {
        let state = TrainState::new(model.clone()).dropout_seed(0xfeed_0000_0001);
        let (c, cl) = run(state.clone(), &batch, &Device::Cpu, 4);
        let (g, gl) = run(state, &batch, &gpu, 4);
        common::assert_trajectories_agree(&what, (&c, &cl), (&g, &gl));
        common::assert_close(
            &format!("{what}: head"),
            &g.model.head_w,
            &c.model.head_w,
            1e-4,
        );
        let (_, l0) = run(TrainState::new(base.clone()), &batch, &Device::Cpu, 4);
        let other = TrainState::new(model.clone()).dropout_seed(1);
        let (_, l1) = run(other, &batch, &Device::Cpu, 4);
        assert!(cl[0] != l0[0], "{what}: dropout changed nothing: {cl:?}");
        assert!(cl[0] != l1[0], "{what}: another seed drew the same masks");
    }
}

/// Inference ignores dropout: `Rnn::forward` (and its backward) of a model with `dropout`
/// equals the model without, bit for bit, on both devices; so do `SeqModel::evaluate` and
/// `sample`.
#[test]
fn inference_ignores_dropout() {
    let gpu = Device::Gpu(common::gpu());
    for cell in Cell::ALL {
        let cfg = RnnConfig::new(cell, 4, 6).layers(3).bidirectional(true);
        let params = RnnParams::random(cfg, 5);
        let x: Tensor = common::random(&[5, 3, 4], 1.0, 6);
        let g: Tensor = common::random(&[5, 3, 12], 1.0, 7);
        for device in [&Device::Cpu, &gpu] {
            let mut plain = Rnn::new(params.clone(), device).unwrap();
            let mut with = Rnn::new(params.clone().dropout(0.5), device).unwrap();
            let (a, b) = (
                plain.forward(&x, None).unwrap(),
                with.forward(&x, None).unwrap(),
            );
            let what = format!("{cell} on {}", device.describe());
            assert_eq!(
                bits(a.output.data()),
                bits(b.output.data()),
                "{what}: output"
            );
            assert_eq!(bits(a.h_n.data()), bits(b.h_n.data()), "{what}: h_n");
            let (ga, gb) = (
                plain.backward(&g, None).unwrap(),
                with.backward(&g, None).unwrap(),
            );
            assert_eq!(
                bits(ga.input.data()),
                bits(gb.input.data()),
                "{what}: grad input"
            );
        }
    }
    let cfg = RnnConfig::new(Cell::Lstm, 7, 8).layers(2);
    let plain = SeqModel::new(cfg, Task::Tokens { vocab: 7 }, 3).unwrap();
    let with = SeqModel::new(cfg.dropout(0.7), Task::Tokens { vocab: 7 }, 3).unwrap();
    let batch = token_batch(6, 2, 7, 4);
    let (a, b) = (
        plain.evaluate(&batch, None).unwrap(),
        with.evaluate(&batch, None).unwrap(),
    );
    assert_eq!(a.0.to_bits(), b.0.to_bits(), "evaluate");
    use rand::SeedableRng;
    let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    assert_eq!(
        wgpu_rnn::train::sample(&plain, &[1, 2], 20, 0.8, &mut r1).unwrap(),
        wgpu_rnn::train::sample(&with, &[1, 2], 20, 0.8, &mut r2).unwrap(),
        "sample"
    );
}

/// A probability outside `[0, 1)` (or NaN) is an error naming `dropout` and the value,
/// wherever it enters: the config, a model, a device, the generator, the GPU kernel.
#[test]
fn a_bad_probability_is_an_error_naming_dropout() {
    for p in [-0.1f32, 1.0, 1.5, f32::NAN, f32::INFINITY] {
        let cfg = RnnConfig::new(Cell::Gru, 3, 4).layers(2).dropout(p);
        let want = ["dropout", &p.to_string()];
        common::assert_msg(&cfg.validate().unwrap_err(), &want);
        let e = SeqModel::new(cfg, Task::Regression { outputs: 1 }, 0).unwrap_err();
        common::assert_msg(&e, &want);
        let params = RnnParams::random(cfg.dropout(0.0), 0).dropout(p);
        common::assert_msg(&params.validate().unwrap_err(), &want);
        let e = Rnn::new(params.clone(), &Device::Cpu)
            .err()
            .expect("refused");
        common::assert_msg(&e, &want);
        common::assert_msg(&Dropout::new(p, 0, 0).unwrap_err(), &want);
        let d = Dropout {
            p,
            seed: 0,
            step: 0,
        };
        let x: Tensor<f64> = Tensor::zeros(&[2, 1, 3]);
        let e =
            cpu::forward_trace_with_dropout(&params.cast::<f64>(), &x, None, None, d).unwrap_err();
        common::assert_msg(&e, &want);
        common::assert_msg(
            &gpu::dropout(&common::gpu(), &d, 0, &[1.0]).unwrap_err(),
            &want,
        );
        assert!(matches!(
            Rnn::new(params, &Device::Gpu(common::gpu())),
            Err(wgpu_rnn::Error::Config(_))
        ));
    }
}

/// `L = Σ output·G + Σ h_n·G_h (+ Σ c_n·G_c)` of a stack, in f64.
struct Problem {
    params: RnnParams<f64>,
    x: Tensor<f64>,
    h0: Tensor<f64>,
    c0: Option<Tensor<f64>>,
    g: Tensor<f64>,
    g_h: Tensor<f64>,
    g_c: Option<Tensor<f64>>,
    lengths: Option<Vec<usize>>,
    dropout: Dropout,
}

impl Problem {
    fn state(&self) -> State<'_, f64> {
        State {
            h: Some(&self.h0),
            c: self.c0.as_ref(),
        }
    }

    fn loss(&self) -> f64 {
        let (out, _) = cpu::forward_trace_with_dropout(
            &self.params,
            &self.x,
            self.state(),
            self.lengths.as_deref(),
            self.dropout,
        )
        .unwrap();
        let dot = |a: &Tensor<f64>, b: &Tensor<f64>| -> f64 {
            a.data().iter().zip(b.data()).map(|(x, y)| x * y).sum()
        };
        let mut l = dot(&out.output, &self.g) + dot(&out.h_n, &self.g_h);
        if let (Some(c), Some(g)) = (&out.c_n, &self.g_c) {
            l += dot(c, g);
        }
        l
    }
}

/// The CPU backward pass through a fixed mask (the same seed and step in every evaluation)
/// against central finite differences in f64, for every parameter, the input and `h0`
/// (`c0`): two- and three-layer stacks of every cell, bidirectional, one with variable
/// lengths, and a projected LSTM (`proj_size`: the mask is on the `[T, B, D·P]` output). Proves the backward of the mask (`∂y_l = ∂x_{l+1}·mask/(1-p)`) and the use of
/// the masked input in `∂W_ih` of the layer above.
#[test]
fn cpu_gradients_through_a_fixed_mask_match_finite_differences() {
    let mut cases = Vec::new();
    for cell in Cell::ALL {
        for (layers, bidir, lengths) in [(2, false, None), (3, true, Some(vec![4, 2, 3]))] {
            cases.push((cell, layers, bidir, lengths, 0));
        }
    }
    cases.push((Cell::Lstm, 2, true, Some(vec![3, 4, 1]), 3));
    for (k, (cell, layers, bidir, lengths, proj)) in cases.into_iter().enumerate() {
        {
            let seed = 100 + 10 * k as u64 + layers as u64;
            let cfg = RnnConfig::new(cell, 3, 4)
                .layers(layers)
                .bidirectional(bidir)
                .proj_size(proj);
            let (t, b) = (4, 3);
            let ld = cfg.num_layers * cfg.directions();
            let r = cfg.real_hidden_size();
            let gated = cell == Cell::Lstm;
            let mut p = Problem {
                params: RnnParams::random(cfg, seed),
                x: common::random(&[t, b, 3], 1.0, seed + 1),
                h0: common::random(&[ld, b, r], 0.5, seed + 2),
                c0: gated.then(|| common::random(&[ld, b, 4], 0.5, seed + 3)),
                g: common::random(&[t, b, cfg.output_size()], 1.0, seed + 4),
                g_h: common::random(&[ld, b, r], 1.0, seed + 5),
                g_c: gated.then(|| common::random(&[ld, b, 4], 1.0, seed + 6)),
                lengths,
                dropout: Dropout::new(0.5, seed, 3).unwrap(),
            };
            let what = format!("{cell}, {layers} layers, bidirectional {bidir}, proj {proj}");
            let (out, trace) = cpu::forward_trace_with_dropout(
                &p.params,
                &p.x,
                p.state(),
                p.lengths.as_deref(),
                p.dropout,
            )
            .unwrap();
            // The mask is not trivial: the output differs from the pass without it.
            let plain = match &p.lengths {
                Some(l) => cpu::forward_trace_with_lengths(&p.params, &p.x, p.state(), l),
                None => cpu::forward_trace(&p.params, &p.x, p.state()),
            };
            assert_ne!(
                plain.unwrap().0.output,
                out.output,
                "{what}: nothing dropped"
            );
            let grads = cpu::backward(
                &p.params,
                &p.x,
                p.state(),
                &trace,
                &p.g,
                State {
                    h: Some(&p.g_h),
                    c: p.g_c.as_ref(),
                },
            )
            .unwrap();
            if let Some(lengths) = &p.lengths {
                // Past a row's end the output stays zero.
                let dh = cfg.output_size();
                for (bi, &len) in lengths.iter().enumerate() {
                    for ti in len..t {
                        let row = &out.output.data()[(ti * b + bi) * dh..][..dh];
                        assert!(row.iter().all(|&v| v == 0.0), "{what}: row {bi} at {ti}");
                    }
                }
            }
            let eps = 1e-6;
            let numeric = |p: &mut Problem, get: &dyn Fn(&mut Problem) -> &mut f64| -> f64 {
                let v = *get(p);
                *get(p) = v + eps;
                let up = p.loss();
                *get(p) = v - eps;
                let down = p.loss();
                *get(p) = v;
                (up - down) / (2.0 * eps)
            };
            let check = |name: &str, analytic: &[f64], numeric: &[f64]| {
                let (err, i) = common::rel_err(analytic, numeric);
                assert!(
                    err <= 1e-6,
                    "{what}: {name}: relative error {err:.2e} at {i}: analytic {}, numeric {}",
                    analytic[i],
                    numeric[i]
                );
            };
            // Every parameter tensor of every layer-direction, by PyTorch's name.
            fn slot(p: &mut LayerParams<f64>, k: usize) -> Option<&mut Tensor<f64>> {
                match k {
                    0 => Some(&mut p.w_ih),
                    1 => Some(&mut p.w_hh),
                    2 => p.b_ih.as_mut(),
                    3 => p.b_hh.as_mut(),
                    _ => p.w_hr.as_mut(),
                }
            }
            let names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"];
            for idx in 0..ld {
                for (k, name) in names.iter().enumerate() {
                    let mut layer = p.params.layers()[idx].clone();
                    let Some(n) = slot(&mut layer, k).map(|t| t.len()) else {
                        continue;
                    };
                    let num: Vec<f64> = (0..n)
                        .map(|j| {
                            numeric(&mut p, &|p| {
                                let l = &mut p.params.layers_mut()[idx];
                                &mut slot(l, k).expect("present above").data_mut()[j]
                            })
                        })
                        .collect();
                    let mut g = grads.params.layers()[idx].clone();
                    let analytic = slot(&mut g, k).expect("same tensors as the parameters");
                    check(&format!("{name} {idx}"), analytic.data(), &num);
                }
            }
            let num: Vec<f64> = (0..p.x.len())
                .map(|j| numeric(&mut p, &|p| &mut p.x.data_mut()[j]))
                .collect();
            check("input", grads.input.data(), &num);
            let num: Vec<f64> = (0..p.h0.len())
                .map(|j| numeric(&mut p, &|p| &mut p.h0.data_mut()[j]))
                .collect();
            check("h0", grads.h0.data(), &num);
            if gated {
                let num: Vec<f64> = (0..p.c0.as_ref().unwrap().len())
                    .map(|j| numeric(&mut p, &|p| &mut p.c0.as_mut().unwrap().data_mut()[j]))
                    .collect();
                check("c0", grads.c0.as_ref().unwrap().data(), &num);
            }
        }
    }
}

/// `p = 0` in the library's training forward is the plain pass, bit for bit, forward and
/// backward.
#[test]
fn the_cpu_pass_with_p_zero_is_the_plain_pass() {
    for cell in Cell::ALL {
        let cfg = RnnConfig::new(cell, 3, 5).layers(2).bidirectional(true);
        let params = RnnParams::<f32>::random(cfg, 9);
        let x: Tensor = common::random(&[4, 2, 3], 1.0, 10);
        let g: Tensor = common::random(&[4, 2, 10], 1.0, 11);
        let d = Dropout::new(0.0, 5, 6).unwrap();
        let (a, ta) = cpu::forward_trace_with_dropout(&params, &x, None, None, d).unwrap();
        let (b, tb) = cpu::forward_trace(&params, &x, None).unwrap();
        assert_eq!(bits(a.output.data()), bits(b.output.data()), "{cell}");
        let ga = cpu::backward(&params, &x, None, &ta, &g, None).unwrap();
        let gb = cpu::backward(&params, &x, None, &tb, &g, None).unwrap();
        assert_eq!(bits(ga.input.data()), bits(gb.input.data()), "{cell}");
        assert_eq!(ga.params, gb.params, "{cell}");
    }
}

/// A checkpoint records `dropout` and the masks' seed, and a resumed run continues the masks:
/// 2 + 2 steps through a checkpoint equal 4 steps, bit for bit. A checkpoint without the
/// entries (written before dropout existed) loads with no dropout and seed 0.
#[test]
fn checkpoints_remember_dropout_and_resume_the_masks() {
    let cfg = RnnConfig::new(Cell::Gru, 3, 6).layers(2).dropout(0.25);
    let model = SeqModel::new(cfg, Task::Regression { outputs: 2 }, 8).unwrap();
    let batch = value_batch(5, 2, 3, 2, 9);
    let state = TrainState::new(model).dropout_seed(31);
    // Without carried states: a checkpoint does not hold h_n.
    let (straight, _) = run_carry(state.clone(), &batch, &Device::Cpu, 4, false);
    let (half, _) = run_carry(state, &batch, &Device::Cpu, 2, false);
    let path = common::TempPath::new("dropout-ckpt.safetensors");
    use rand::SeedableRng;
    let ckpt = Checkpoint {
        state: half,
        train: train_cfg(),
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(0),
        meta: Default::default(),
    };
    ckpt.save(path.path()).unwrap();
    let back = Checkpoint::load(path.path()).unwrap();
    assert_eq!(back.state.model.config().dropout, 0.25);
    assert_eq!(back.state.dropout_seed, 31);
    let (resumed, _) = run_carry(back.state, &batch, &Device::Cpu, 2, false);
    assert_eq!(bits(&flat(&resumed)), bits(&flat(&straight)));
    // An older checkpoint: no dropout entries.
    let mut file = TensorFile::read(path.path()).unwrap();
    file.metadata.remove("dropout");
    file.metadata.remove("dropout.seed");
    file.write(path.path()).unwrap();
    let old = Checkpoint::load(path.path()).unwrap();
    assert_eq!(old.state.model.config().dropout, 0.0);
    assert_eq!(old.state.dropout_seed, 0);
    // A bad value in the file is refused by name.
    let mut file = TensorFile::read(path.path()).unwrap();
    file.metadata
        .insert("dropout".into(), 1.5f32.to_bits().to_string());
    file.write(path.path()).unwrap();
    common::assert_msg(
        &Checkpoint::load(path.path()).unwrap_err(),
        &["dropout", "1.5"],
    );
}

/// `--dropout` in `train` and `predict`, and a bad value named on the command line.
#[test]
fn the_cli_trains_with_dropout() {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-dropout-cli-{}", std::process::id()));
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
            .args(args)
            .output()
            .expect("run wgpu-rnn")
    };
    let out = dir.join("charlm");
    let r = cli(&[
        "train",
        "--steps",
        "5",
        "--hidden",
        "8",
        "--layers",
        "2",
        "--dropout",
        "0.3",
        "--batch",
        "2",
        "--seq",
        "8",
        "--eval-every",
        "0",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(stdout.contains("dropout 0.3"), "{stdout}");
    let c = Checkpoint::load(out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(c.state.model.config().dropout, 0.3);
    let r = cli(&[
        "predict",
        "--steps",
        "5",
        "--hidden",
        "8",
        "--layers",
        "2",
        "--dropout",
        "0.2",
        "--batch",
        "2",
        "--seq",
        "10",
        "--device",
        "cpu",
        "--out",
        dir.join("series").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(stdout.contains("dropout 0.2"), "{stdout}");
    for command in ["train", "predict"] {
        let r = cli(&[
            command,
            "--steps",
            "1",
            "--layers",
            "2",
            "--dropout",
            "1",
            "--device",
            "cpu",
        ]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && !err.contains("panicked"), "{err}");
        assert!(
            err.contains("dropout: expected a probability in [0, 1), found 1"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
