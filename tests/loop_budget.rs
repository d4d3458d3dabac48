//! Every kernel's loops stay within the per-invocation budget (`gpu::kernels::budget`) at
//! any size, and the kernels that reduce over `T·B` or `input_size` give the CPU's answer past
//! the 65,535-iteration cap of Mesa's software adapters (lavapipe, llvmpipe), where they used
//! to stop early without an error.

mod common;

use wgpu_rnn::gpu::kernels::budget::{self, LOOP_BUDGET};
use wgpu_rnn::gpu::{GemmPlan, GemmSpec, GpuRnn, gemm};
use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer};
use wgpu_rnn::{Cell, Device, Error, LayerParams, Rnn, RnnConfig, RnnParams, Tensor, cpu};

#[test]
fn stated_maxima_are_within_the_budget_and_tight() {
    type Cost = fn(u64) -> u64;
    let cases: [(&str, Cost, u64); 5] = [
        ("gemm k_split", budget::gemm, budget::GEMM_K_SPLIT),
        (
            "gemm splits",
            budget::gemm_sum_splits,
            budget::GEMM_MAX_SPLITS,
        ),
        ("colsum chunk", budget::colsum, budget::COLSUM_CHUNK),
        ("reduce chunk", budget::reduce, budget::REDUCE_CHUNK),
        (
            "embed_bwd chunk",
            budget::embed_bwd,
            budget::EMBED_BWD_CHUNK,
        ),
    ];
    for (what, cost, max) in cases {
        assert!(
            cost(max) <= LOOP_BUDGET,
            "{what} {max}: {} iterations",
            cost(max)
        );
    }
    assert_eq!(
        budget::GEMM_K_SPLIT % 16,
        0,
        "a split must be whole 16-row slices"
    );
    for (what, max, cost) in [
        (
            "step hidden",
            budget::max_step_hidden(1),
            budget::step_g1 as Cost,
        ),
        (
            "softmax classes",
            budget::max_softmax_classes(),
            budget::softmax_xent,
        ),
        ("mse cols", budget::max_mse_cols(), budget::mse),
    ] {
        assert!(
            cost(max) <= LOOP_BUDGET && cost(max + 1) > LOOP_BUDGET,
            "{what}: {max}"
        );
    }
    // The budget keeps a 4x margin under gallivm's LP_MAX_TGSI_LOOP_ITERATIONS.
    const { assert!(LOOP_BUDGET * 4 <= 65_535) };
    assert!(budget::max_step_hidden(1) >= 8192);
    // More gate blocks, proportionally fewer hidden units; each maximum is exact.
    for g in 1..=4 {
        let max = budget::max_step_hidden(g);
        assert!(budget::step(max, g as u64) <= LOOP_BUDGET, "G = {g}: {max}");
        assert!(
            budget::step(max + 1, g as u64) > LOOP_BUDGET,
            "G = {g}: {max}"
        );
        assert!(max * g as u64 >= 8192, "G = {g}: {max}");
    }
}

#[test]
fn gemm_plans_cover_k_within_the_budget() {
    let sizes = [
        0, 1, 15, 16, 17, 255, 4095, 4096, 4097, 40_000, 270_000, 1_100_000, 5_000_000,
    ];
    for &k in &sizes {
        for &(m, n) in &[
            (1, 1),
            (3, 5),
            (64, 64),
            (256, 256),
            (2048, 256),
            (5000, 5000),
        ] {
            for fill in [1, 4, 256] {
                let p = GemmPlan::new(m, n, k, fill);
                let what = format!("m={m} n={n} k={k} fill={fill}: {p:?}");
                assert!(p.k_split as u64 <= budget::GEMM_K_SPLIT, "{what}");
                assert!(budget::gemm(p.k_split as u64) <= LOOP_BUDGET, "{what}");
                assert!(
                    p.splits >= 1 && p.splits as u64 <= budget::GEMM_MAX_SPLITS,
                    "{what}"
                );
                assert!(
                    p.rounds * p.splits * p.k_split >= k,
                    "{what}: k not covered"
                );
                assert!(p.rounds >= 1, "{what}: a plan writes C even when k = 0");
                if p.splits > 1 {
                    assert!(p.splits * m * n <= 1 << 24, "{what}: scratch too large");
                    assert_eq!(p.k_split % 16, 0, "{what}");
                    // Every split of the first round has rows.
                    assert!(p.splits.min(k.div_ceil(p.k_split)) == p.splits, "{what}");
                }
                if k <= 4096 && fill <= m.div_ceil(64) * n.div_ceil(64) {
                    assert_eq!(
                        (p.splits, p.rounds),
                        (1, 1),
                        "{what}: a small GEMM is one dispatch"
                    );
                }
            }
        }
    }
    assert_eq!(
        GemmPlan::new(0, 5, 100, 256).rounds,
        0,
        "empty output: nothing to dispatch"
    );
}

/// `C = A·B` on the GPU for a long reduction, against the f64 sum; every product is positive
/// and exact so that a dropped row shows as a whole unit.
#[track_caller]
fn check_long_gemm(m: usize, n: usize, k: usize) {
    let spec = GemmSpec::row_major(m, n, k);
    let a: Vec<f32> = (0..m * k).map(|i| 1.0 + (i % 3) as f32).collect();
    let b: Vec<f32> = (0..k * n).map(|i| 0.5 + 0.25 * (i % 2) as f32).collect();
    let got = gemm(&common::gpu(), &spec, &a, &b, None, &vec![f32::NAN; m * n]).unwrap();
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
            let g = got[i * n + j] as f64;
            // Every product and partial sum is a multiple of 1/4 below 2^22: exact in f32.
            assert_eq!(g, want, "k={k}: C[{i}, {j}]");
        }
    }
}

#[test]
fn gemm_reductions_past_the_software_adapter_cap() {
    check_long_gemm(3, 5, 40_000);
    check_long_gemm(2, 3, 270_000);
    // More rows than one round of splits holds (256 × 4096): two rounds, accumulated.
    check_long_gemm(1, 2, 1_100_000);
}

/// The smallest case: all-zero parameters, `I = H = 1`, ones in and ones out, so the
/// weight and bias gradients are exactly `T·B` on both devices.
#[track_caller]
fn check_zero_model_sums(t: usize, b: usize) {
    let cfg = RnnConfig::new(Cell::RnnTanh, 1, 1);
    let zero = || Tensor::full(&[1, 1], 0.0);
    let layer = LayerParams {
        w_ih: zero(),
        w_hh: zero(),
        b_ih: Some(Tensor::full(&[1], 0.0)),
        b_hh: Some(Tensor::full(&[1], 0.0)),
        w_hr: None,
    };
    let params = RnnParams::new(cfg, vec![layer]).unwrap();
    let x = Tensor::full(&[t, b, 1], 1.0);
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let mut rnn = Rnn::new(params.clone(), &device).unwrap();
        let out = rnn.forward(&x, None).unwrap();
        let g = rnn
            .backward(&Tensor::full(out.output.shape(), 1.0), None)
            .unwrap();
        let n = (t * b) as f32;
        let l = &g.params.layers()[0];
        let what = format!("T={t} B={b} on {}", device.describe());
        assert_eq!(l.w_ih.data(), &[n], "{what}: grad.weight_ih_l0");
        assert_eq!(
            l.b_ih.as_ref().unwrap().data(),
            &[n],
            "{what}: grad.bias_ih_l0"
        );
        assert_eq!(
            l.b_hh.as_ref().unwrap().data(),
            &[n],
            "{what}: grad.bias_hh_l0"
        );
    }
}

#[test]
fn weight_and_bias_gradients_past_the_cap() {
    check_zero_model_sums(1, 40_000);
    check_zero_model_sums(1, 300_000);
}

#[test]
fn input_projection_over_40000_features() {
    let cfg = RnnConfig::new(Cell::RnnTanh, 40_000, 5);
    let params = RnnParams::random(cfg, 7);
    let x: Tensor = common::random(&[2, 3, 40_000], 1.0, 8);
    let mut rnn = Rnn::new(params.clone(), &Device::Gpu(common::gpu())).unwrap();
    let got = rnn.forward(&x, None).unwrap();
    let want = cpu::forward(&params.cast::<f64>(), &x.cast::<f64>(), None).unwrap();
    common::assert_close("output", &got.output, &want.output, 1e-4);
    let g = rnn
        .backward(&Tensor::full(got.output.shape(), 1.0), None)
        .unwrap();
    let mut cpu_rnn = Rnn::new(params, &Device::Cpu).unwrap();
    cpu_rnn.forward(&x, None).unwrap();
    let w = cpu_rnn
        .backward(&Tensor::full(got.output.shape(), 1.0), None)
        .unwrap();
    common::assert_close("grad.input", &g.input, &w.input, 1e-4);
    let (gl, wl) = (&g.params.layers()[0], &w.params.layers()[0]);
    common::assert_close("grad.weight_ih_l0", &gl.w_ih, &wl.w_ih, 1e-4);
}

/// A token model trained one step on a 70,000-step sequence: the embedding gradient, the
/// weight-gradient GEMMs (K = T·B), the head's bias gradient and the loss sum all reduce over
/// 70,000 rows. GPU against CPU.
#[test]
fn training_over_70000_steps() {
    let (t, b, vocab) = (70_000, 1, 7);
    let ids: Vec<u32> = (0..t * b + b)
        .map(|i| ((i * 5 + i / 3) % vocab) as u32)
        .collect();
    let batch = Batch::Tokens {
        t,
        b,
        inputs: ids[..t * b].to_vec(),
        targets: ids[b..].to_vec(),
    };
    let cfg = RnnConfig::new(Cell::RnnTanh, vocab, 4);
    let model = SeqModel::new(cfg, Task::Tokens { vocab }, 3).unwrap();
    let tc = TrainConfig {
        optimizer: Optimizer::sgd(0.5, 0.0),
        clip_norm: None,
    };
    let mut states = Vec::new();
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let mut tr = Trainer::new(TrainState::new(model.clone()), tc, &device).unwrap();
        tr.step(&batch, false).unwrap();
        let loss = tr.loss().unwrap();
        states.push((loss, tr.state().unwrap()));
    }
    let ((cl, c), (gl, g)) = (&states[0], &states[1]);
    assert!((cl - gl).abs() <= 1e-4 * cl, "loss: cpu {cl}, gpu {gl}");
    common::assert_close("head weight", &g.model.head_w, &c.model.head_w, 1e-4);
    common::assert_close("head bias", &g.model.head_b, &c.model.head_b, 1e-4);
    for (name, want) in c.model.rnn.to_tensor_file().tensors {
        let got = &g.model.rnn.to_tensor_file().tensors[&name];
        common::assert_close(&name, got, &want, 1e-4);
    }
}

/// Every parameter of a model, in a fixed order (the stack's by name, then the head's).
fn flat(model: &SeqModel) -> Vec<f64> {
    let mut v: Vec<f64> = Vec::new();
    for t in model.rnn.to_tensor_file().tensors.values() {
        v.extend(t.data().iter().map(|&x| x as f64));
    }
    v.extend(model.head_w.data().iter().map(|&x| x as f64));
    v.extend(model.head_b.data().iter().map(|&x| x as f64));
    v
}

/// More than one reduction chunk (2^20 elements) of gradient: the global norm that clipping
/// divides by is a two-level sum on the GPU. The clip is set to half the gradient's norm (found
/// by an unclipped CPU step), so an SGD step moves every parameter by half its gradient; a
/// norm that missed a chunk would give another scale.
#[test]
fn clipping_norm_over_more_than_a_million_parameters() {
    let vocab = 2100;
    let cfg = RnnConfig::new(Cell::RnnTanh, vocab, 512);
    let model = SeqModel::new(cfg, Task::Tokens { vocab }, 5).unwrap();
    assert!(model.num_params() > 1 << 20);
    let ids: Vec<u32> = (0..9).map(|i| (i * 233 % vocab) as u32).collect();
    let batch = Batch::Tokens {
        t: 4,
        b: 2,
        inputs: ids[..8].to_vec(),
        targets: ids[1..].to_vec(),
    };
    let lr = 10.0;
    let step = |clip_norm: Option<f32>, device: &Device| -> Vec<f64> {
        let tc = TrainConfig {
            optimizer: Optimizer::sgd(lr, 0.0),
            clip_norm,
        };
        let mut tr = Trainer::new(TrainState::new(model.clone()), tc, device).unwrap();
        tr.step(&batch, false).unwrap();
        let after = flat(&tr.state().unwrap().model);
        flat(&model)
            .iter()
            .zip(&after)
            .map(|(p0, p1)| p1 - p0)
            .collect()
    };
    let norm = step(None, &Device::Cpu)
        .iter()
        .map(|d| d * d)
        .sum::<f64>()
        .sqrt()
        / lr as f64;
    let clip = (norm / 2.0) as f32;
    let want = step(Some(clip), &Device::Cpu);
    let got = step(Some(clip), &Device::Gpu(common::gpu()));
    let moved = want.iter().map(|d| d * d).sum::<f64>().sqrt();
    assert!(
        (moved / (lr as f64 * norm) - 0.5).abs() < 1e-3,
        "the CPU step moved {moved}, not half of lr·‖g‖ = {}",
        lr as f64 * norm
    );
    let n = got.len();
    let as_tensor =
        |v: &[f64]| Tensor::new(vec![n], v.iter().map(|&x| x as f32).collect()).unwrap();
    common::assert_close(
        "GPU step of a clipped update",
        &as_tensor(&got),
        &as_tensor(&want),
        1e-3,
    );
}

#[test]
fn sizes_past_a_kernel_maximum_are_refused_before_dispatch() {
    let h = budget::max_step_hidden(1) as usize + 1;
    let cfg = RnnConfig::new(Cell::RnnTanh, 1, h);
    let layer = LayerParams {
        w_ih: Tensor::full(&[h, 1], 0.0),
        w_hh: Tensor::full(&[h, h], 0.0),
        b_ih: Some(Tensor::full(&[h], 0.0)),
        b_hh: Some(Tensor::full(&[h], 0.0)),
        w_hr: None,
    };
    let params = RnnParams::new(cfg, vec![layer]).unwrap();
    let err = GpuRnn::new(common::gpu(), &params)
        .err()
        .expect("a hidden size past the step kernels' maximum is refused");
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::Limit { what, needed, .. } if what == "hidden_size" && *needed == h as u64),
        "{msg}"
    );
    assert!(
        msg.contains(&budget::max_step_hidden(1).to_string()),
        "{msg}"
    );

    let vocab = budget::max_softmax_classes() as usize + 1;
    let model = SeqModel::new(
        RnnConfig::new(Cell::RnnTanh, vocab, 2),
        Task::Tokens { vocab },
        1,
    );
    let tc = TrainConfig {
        optimizer: Optimizer::sgd(0.1, 0.0),
        clip_norm: None,
    };
    let err = Trainer::new(
        TrainState::new(model.unwrap()),
        tc,
        &Device::Gpu(common::gpu()),
    )
    .err()
    .expect("a softmax over more classes than the loss kernel supports is refused");
    assert!(
        matches!(&err, Error::Limit { what, .. } if what.contains("softmax")),
        "{err}"
    );
}
