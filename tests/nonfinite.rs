//! Values that become non-finite during the computation propagate as in PyTorch's float32
//! CPU path, on both devices: relu(NaN) = NaN, tanh(±inf) = ±1, tanh(NaN) = NaN, σ(-inf) = 0,
//! σ(inf) = 1, σ(NaN) = NaN (the LSTM and GRU gates); relu's
//! gradient is blocked only where its output is `<= 0` (a NaN output passes it), tanh's is
//! `1 - y²`. Inputs that are non-finite are an error (tests/errors.rs); here every input is
//! finite and the overflow happens inside the kernels.

mod common;

use wgpu_rnn::{Cell, Device, LayerParams, Rnn, RnnConfig, RnnParams, Tensor};

fn devices() -> [Device; 2] {
    [Device::Cpu, Device::Gpu(common::gpu())]
}

/// Equal as PyTorch would print them: both NaN, the same infinity, or finite and within
/// `1e-6` relative (GPU transcendentals differ from the CPU's in the last bits).
#[track_caller]
fn assert_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            g.is_finite() && (g - w).abs() <= 1e-6 * w.abs().max(1.0)
        };
        assert!(
            ok,
            "{what}[{i}]: got {g}, want {w}\n  got  {got:?}\n  want {want:?}"
        );
    }
}

/// The case: a relu stack whose state overflows. T = 3, B = 1, I = 1, H = 2, no
/// bias, W_ih = 0, W_hh = 2·I, input zeros, h0 = 1e38. PyTorch (float32) gives the output
/// [2e38, 2e38], [inf, inf], [NaN, NaN] (0·inf in the recurrent product) and h_n NaN.
#[test]
fn relu_state_that_overflows_becomes_inf_then_nan() {
    let cfg = RnnConfig::new(Cell::RnnRelu, 1, 2).bias(false);
    let layer = LayerParams {
        w_ih: Tensor::full(&[2, 1], 0.0),
        w_hh: Tensor::new(vec![2, 2], vec![2.0, 0.0, 0.0, 2.0]).unwrap(),
        b_ih: None,
        b_hh: None,
        w_hr: None,
    };
    let params = RnnParams::new(cfg, vec![layer]).unwrap();
    let x = Tensor::full(&[3, 1, 1], 0.0);
    let h0 = Tensor::full(&[1, 1, 2], 1e38);
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    for device in devices() {
        let what = device.describe();
        let mut rnn = Rnn::new(params.clone(), &device).unwrap();
        let out = rnn.forward(&x, Some(&h0)).unwrap();
        let two = 2.0f32 * 1e38;
        assert_same(
            &format!("{what}: output"),
            out.output.data(),
            &[two, two, inf, inf, nan, nan],
        );
        assert_same(&format!("{what}: h_n"), out.h_n.data(), &[nan, nan]);
        // Backward with grad_output = 1: relu passes the gradient at the NaN and inf outputs,
        // so δa = 1, 3, 7 from the last step back and grad.h0 = W_hhᵀ·δa_0 = 14; every term
        // of grad.weight_hh = Σ δa·h_prevᵀ overflows; W_ih = 0 and x = 0 give zeros.
        let g = rnn.backward(&Tensor::full(&[3, 1, 2], 1.0), None).unwrap();
        assert_same(&format!("{what}: grad.h0"), g.h0.data(), &[14.0, 14.0]);
        let l = &g.params.layers()[0];
        assert_same(
            &format!("{what}: grad.weight_hh_l0"),
            l.w_hh.data(),
            &[inf; 4],
        );
        assert_same(
            &format!("{what}: grad.weight_ih_l0"),
            l.w_ih.data(),
            &[0.0, 0.0],
        );
        assert_same(&format!("{what}: grad.input"), g.input.data(), &[0.0; 3]);
    }
}

/// Pre-activations `W_ih·x + W_hh·h0` with W_ih = [2, 2], W_hh = -3e38, one batch row per
/// value and T = 1: finite values on both sides of tanh's clamp at ±15 (h0 = 0), overflow to
/// ±inf in the input projection (2·3e38), and NaN as inf + -inf (the projection's +inf plus
/// the recurrent product's -3e38·2). Returns (input, h0, pre-activation) rows.
fn rows() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let big = 3e38f32;
    let finite = [
        0.0f32, 0.5, -0.5, 14.0, 15.0, -15.0, 20.0, -20.0, 1e30, -1e30,
    ];
    let (mut x, mut h0, mut pre) = (Vec::new(), Vec::new(), Vec::new());
    for v in finite {
        x.extend([v / 2.0, 0.0]);
        h0.push(0.0);
        pre.push(v);
    }
    for (a, h, p) in [
        (big, 0.0, f32::INFINITY),
        (-big, 0.0, f32::NEG_INFINITY),
        (big, 2.0, f32::NAN),
    ] {
        x.extend([a, 0.0]);
        h0.push(h);
        pre.push(p);
    }
    (x, h0, pre)
}

#[track_caller]
fn check_activation(cell: Cell, act: fn(f32) -> f32, grad_from_y: fn(f32) -> f32) {
    let cfg = RnnConfig::new(cell, 2, 1).bias(false);
    let layer = LayerParams {
        w_ih: Tensor::new(vec![1, 2], vec![2.0, 2.0]).unwrap(),
        w_hh: Tensor::full(&[1, 1], -3e38),
        b_ih: None,
        b_hh: None,
        w_hr: None,
    };
    let params = RnnParams::new(cfg, vec![layer]).unwrap();
    let (x, h0, pre) = rows();
    let b = pre.len();
    let x = Tensor::new(vec![1, b, 2], x).unwrap();
    let h0 = Tensor::new(vec![1, b, 1], h0).unwrap();
    let want_y: Vec<f32> = pre.iter().map(|&v| act(v)).collect();
    let want_da: Vec<f32> = want_y.iter().map(|&y| grad_from_y(y)).collect();
    let want_dx: Vec<f32> = want_da.iter().flat_map(|&d| [2.0 * d, 2.0 * d]).collect();
    for device in devices() {
        let what = format!("{cell:?} on {}", device.describe());
        let mut rnn = Rnn::new(params.clone(), &device).unwrap();
        let out = rnn.forward(&x, Some(&h0)).unwrap();
        assert_same(
            &format!("{what}: output for {pre:?}"),
            out.output.data(),
            &want_y,
        );
        let g = rnn.backward(&Tensor::full(&[1, b, 1], 1.0), None).unwrap();
        assert_same(&format!("{what}: grad.input"), g.input.data(), &want_dx);
    }
}

#[test]
fn relu_and_its_gradient_on_nan_inf_and_zero() {
    // PyTorch: relu(NaN) = NaN, relu(inf) = inf, relu(-inf) = 0; the gradient is 0 where the
    // output is <= 0 and passes elsewhere (NaN and inf outputs included).
    check_activation(
        Cell::RnnRelu,
        |v| if v > 0.0 || v.is_nan() { v } else { 0.0 },
        |y| if y <= 0.0 { 0.0 } else { 1.0 },
    );
}

#[test]
fn tanh_and_its_gradient_on_nan_inf_and_the_clamp() {
    // PyTorch: tanh(±inf) = ±1 with gradient 1 - 1 = 0; tanh(NaN) = NaN with a NaN gradient.
    check_activation(Cell::RnnTanh, f32::tanh, |y| 1.0 - y * y);
}

/// torch.nn.utils.clip_grad_norm_ with a NaN total norm scales every gradient by NaN;
/// `f32::min(NaN, 1)` would have given 1 and let the finite gradients through unclipped.
#[test]
fn clipping_scale_of_a_nan_norm_is_nan() {
    assert!(wgpu_rnn::train::clip_scale(f32::NAN, Some(1.0)).is_nan());
    assert_eq!(wgpu_rnn::train::clip_scale(f32::INFINITY, Some(1.0)), 0.0);
    assert_eq!(
        wgpu_rnn::train::clip_scale(4.0, Some(1.0)),
        1.0 / (2.0 + 1e-6)
    );
}

/// relu's backward selects rather than multiplies (PyTorch's `threshold_backward`): where the
/// output is `<= 0` the gradient is 0 even when the incoming gradient is infinite, which a
/// multiplication by 0 would turn into NaN. relu, I = H = 1, no bias, W_ih = 1, W_hh = 1e30,
/// x = [-1, 1], grad_output = [1, 1e30]: y = [0, 1]; δa_1 = 1e30, the gradient carried to
/// step 0 is 1 + 1e60 = inf, blocked there since y_0 = 0. PyTorch: grad.input = [0, 1e30],
/// grad.weight_ih = 1e30, grad.weight_hh = 0, grad.h0 = 0.
#[test]
fn relu_blocks_an_infinite_gradient_where_its_output_is_zero() {
    let cfg = RnnConfig::new(Cell::RnnRelu, 1, 1).bias(false);
    let layer = LayerParams {
        w_ih: Tensor::full(&[1, 1], 1.0),
        w_hh: Tensor::full(&[1, 1], 1e30),
        b_ih: None,
        b_hh: None,
        w_hr: None,
    };
    let params = RnnParams::new(cfg, vec![layer]).unwrap();
    let x = Tensor::new(vec![2, 1, 1], vec![-1.0, 1.0]).unwrap();
    let dy = Tensor::new(vec![2, 1, 1], vec![1.0, 1e30]).unwrap();
    for device in devices() {
        let what = device.describe();
        let mut rnn = Rnn::new(params.clone(), &device).unwrap();
        let out = rnn.forward(&x, None).unwrap();
        assert_same(&format!("{what}: output"), out.output.data(), &[0.0, 1.0]);
        let g = rnn.backward(&dy, None).unwrap();
        assert_same(&format!("{what}: grad.input"), g.input.data(), &[0.0, 1e30]);
        let l = &g.params.layers()[0];
        assert_same(
            &format!("{what}: grad.weight_ih_l0"),
            l.w_ih.data(),
            &[1e30],
        );
        assert_same(&format!("{what}: grad.weight_hh_l0"), l.w_hh.data(), &[0.0]);
        assert_same(&format!("{what}: grad.h0"), g.h0.data(), &[0.0]);
    }
}

/// A training step whose loss is NaN, with clipping: the gradient norm is NaN, so
/// clip_grad_norm_'s scale is NaN and every parameter becomes NaN, as in PyTorch, including
/// the embedding columns of tokens that never occur (gradient exactly 0, and 0·NaN = NaN).
/// A scale of min(1, NaN) = 1 would have left those columns finite.
#[test]
fn clipping_with_a_nan_gradient_norm_makes_every_parameter_nan() {
    use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer};
    let vocab = 5;
    let cfg = RnnConfig::new(Cell::RnnRelu, vocab, 2);
    let mut model = SeqModel::new(cfg, Task::Tokens { vocab }, 1).unwrap();
    // The state grows by 1e30 a step: inf at step 3, then NaN (0·inf off the diagonal).
    for layer in model.rnn.layers_mut() {
        layer.w_ih = Tensor::full(&[2, vocab], 0.5);
        layer.w_hh = Tensor::new(vec![2, 2], vec![1e30, 0.0, 0.0, 1e30]).unwrap();
    }
    let batch = Batch::Tokens {
        t: 6,
        b: 1,
        inputs: vec![0, 1, 0, 1, 0, 1],
        targets: vec![1, 0, 1, 0, 1, 0],
    };
    let tc = TrainConfig {
        optimizer: Optimizer::sgd(0.1, 0.0),
        clip_norm: Some(1.0),
    };
    for device in devices() {
        let what = device.describe();
        let mut tr = Trainer::new(TrainState::new(model.clone()), tc, &device).unwrap();
        tr.step(&batch, false).unwrap();
        assert!(tr.loss().unwrap().is_nan(), "{what}: the loss is NaN");
        let state = tr.state().unwrap();
        for (name, t) in state.model.rnn.to_tensor_file().tensors {
            let data: &[f32] = t.data();
            assert!(data.iter().all(|v| v.is_nan()), "{what}: {name} = {data:?}");
        }
        assert!(
            state.model.head_w.data().iter().all(|v| v.is_nan()),
            "{what}: head weight"
        );
    }
}

/// LSTM and GRU on the rows above (every gate block with the same weights, so every gate sees
/// the row's pre-activation): sigmoid and tanh at ±inf, NaN and past tanh's clamp give
/// PyTorch's float32 values on both devices (`σ(-inf) = 0`, `σ(inf) = 1`, `σ(NaN) = NaN`).
#[test]
fn gated_cells_on_nan_inf_follow_pytorch() {
    let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
    let (x, h0, _) = rows();
    let b = h0.len();
    // The projection and the recurrent product each row's gates see (f32, as computed).
    let proj: Vec<f32> = x.chunks(2).map(|r| 2.0 * r[0] + 2.0 * r[1]).collect();
    let rec: Vec<f32> = h0.iter().map(|&h| -3e38f32 * h).collect();
    for (cell, g) in [(Cell::Lstm, 4), (Cell::Gru, 3)] {
        let cfg = RnnConfig::new(cell, 2, 1).bias(false);
        let layer = LayerParams {
            w_ih: Tensor::full(&[g, 2], 2.0),
            w_hh: Tensor::full(&[g, 1], -3e38),
            b_ih: None,
            b_hh: None,
            w_hr: None,
        };
        let params = RnnParams::new(cfg, vec![layer]).unwrap();
        let want: Vec<f32> = (0..b)
            .map(|i| {
                let (p, r, h) = (proj[i], rec[i], h0[i]);
                match cell {
                    Cell::Lstm => {
                        let a = p + r;
                        let c = sig(a) * 0.0 + sig(a) * a.tanh();
                        sig(a) * c.tanh()
                    }
                    _ => {
                        let (rg, z) = (sig(p + r), sig(p + r));
                        let n = (p + rg * r).tanh();
                        n + z * (h - n)
                    }
                }
            })
            .collect();
        let xt = Tensor::new(vec![1, b, 2], x.clone()).unwrap();
        let h0t = Tensor::new(vec![1, b, 1], h0.clone()).unwrap();
        for device in devices() {
            let what = format!("{cell} on {}", device.describe());
            let mut rnn = Rnn::new(params.clone(), &device).unwrap();
            let out = rnn.forward(&xt, Some(&h0t)).unwrap();
            assert_same(&format!("{what}: output"), out.output.data(), &want);
        }
    }
}
