//! The CPU path chooses by shape how a layer projects its input: before the time loop for
//! all steps at once (`X·W_ihᵀ`, one product of `[T·B, I]`), or inside each step as one
//! product `[x_t | h_{t-1}]·[W_ih | W_hh]ᵀ` per block of batch rows (at least two blocks of
//! 8–16 rows: B ≥ 17, or 16 in both directions; cells whose biases fold). Rows of a batch are
//! independent, so the first rows of a wide batch (stepped) must agree with the same rows run
//! as a narrow batch (hoisted), in values and in gradients.

mod common;

use wgpu_rnn::{Cell, RnnConfig, RnnParams, State, Tensor, cpu};

/// Rows `..n` of dimension 1 of `t` (`[T, B, X]` or `[L·D, B, X]`).
fn first_rows(t: &Tensor<f64>, n: usize) -> Tensor<f64> {
    let [a, b, x] = t.shape().try_into().unwrap();
    let mut v = Vec::with_capacity(a * n * x);
    for k in 0..a {
        v.extend_from_slice(&t.data()[(k * b) * x..][..n * x]);
    }
    Tensor::new(vec![a, n, x], v).unwrap()
}

/// `t` with rows `n..` of dimension 1 set to zero.
fn only_first_rows(t: &Tensor<f64>, n: usize) -> Tensor<f64> {
    let [_, b, x] = t.shape().try_into().unwrap();
    let mut t = t.clone();
    for (k, v) in t.data_mut().iter_mut().enumerate() {
        if (k / x) % b >= n {
            *v = 0.0;
        }
    }
    t
}

#[test]
fn stepped_and_hoisted_input_projections_agree() {
    let (t, wide, narrow, i) = (11, 37, 8, 6);
    let configs = [
        RnnConfig::new(Cell::RnnTanh, i, 20).layers(2),
        RnnConfig::new(Cell::RnnRelu, i, 9).bidirectional(true),
        RnnConfig::new(Cell::Lstm, i, 20)
            .layers(2)
            .bidirectional(true),
        RnnConfig::new(Cell::Lstm, i, 12).proj_size(5).layers(2),
        RnnConfig::new(Cell::Gru, i, 10).layers(2),
        RnnConfig::new(Cell::Lstm, i, 7).bias(false),
    ];
    let lengths: Vec<usize> = (0..wide).map(|k| 1 + (k * 5) % t).collect();
    for (n, cfg) in configs.into_iter().enumerate() {
        let seed = 90 + 10 * n as u64;
        let params = RnnParams::<f64>::random(cfg, seed);
        let ld = cfg.num_layers * cfg.directions();
        let x = common::random::<f64>(&[t, wide, i], 1.0, seed + 1);
        let h0 = common::random::<f64>(&[ld, wide, cfg.real_hidden_size()], 0.5, seed + 2);
        let c0 = common::random::<f64>(&[ld, wide, cfg.hidden_size], 0.5, seed + 3);
        let c0 = (cfg.cell == Cell::Lstm).then_some(c0);
        // Only the first rows' outputs have a gradient, so the weights' gradients are theirs.
        let gy = common::random::<f64>(&[t, wide, cfg.output_size()], 1.0, seed + 4);
        let gy = only_first_rows(&gy, narrow);
        let run = |b: usize| {
            let cut = |t: &Tensor<f64>| first_rows(t, b);
            let (x, h0, c0, gy) = (cut(&x), cut(&h0), c0.as_ref().map(cut), cut(&gy));
            let state = State {
                h: Some(&h0),
                c: c0.as_ref(),
            };
            let (out, trace) = cpu::forward_trace_with_lengths(&params, &x, state, &lengths[..b])
                .unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
            let g = cpu::backward(&params, &x, state, &trace, &gy, None).unwrap();
            (out, g)
        };
        let ((out_w, g_w), (out_n, g_n)) = (run(wide), run(narrow));
        let what = |s: &str| format!("{cfg:?}: {s}");
        let close = |s: &str, got: &Tensor<f64>, want: &Tensor<f64>| {
            common::assert_close(&what(s), got, want, 1e-12)
        };
        close("output", &first_rows(&out_w.output, narrow), &out_n.output);
        close("h_n", &first_rows(&out_w.h_n, narrow), &out_n.h_n);
        if let (Some(w), Some(n)) = (&out_w.c_n, &out_n.c_n) {
            close("c_n", &first_rows(w, narrow), n);
        }
        close("grad input", &first_rows(&g_w.input, narrow), &g_n.input);
        close("grad h0", &first_rows(&g_w.h0, narrow), &g_n.h0);
        for l in 0..cfg.num_layers {
            for d in 0..cfg.directions() {
                let (pw, pn) = (g_w.params.layer(l, d), g_n.params.layer(l, d));
                close("grad w_ih", &pw.w_ih, &pn.w_ih);
                close("grad w_hh", &pw.w_hh, &pn.w_hh);
                for (w, n) in [
                    (&pw.b_ih, &pn.b_ih),
                    (&pw.b_hh, &pn.b_hh),
                    (&pw.w_hr, &pn.w_hr),
                ] {
                    assert_eq!(w.is_some(), n.is_some(), "{cfg:?}");
                    if let (Some(w), Some(n)) = (w, n) {
                        close("grad b_ih, b_hh or w_hr", w, n);
                    }
                }
            }
        }
    }
}

/// The CPU path keeps its transposed weights with the parameters: a change through
/// `layers_mut` must reach the next pass, exactly as fresh parameters would.
#[test]
fn packed_weights_follow_changes_to_the_parameters() {
    for (cfg, b) in [
        (RnnConfig::new(Cell::Lstm, 5, 8).layers(2), 20),
        (RnnConfig::new(Cell::Gru, 5, 8), 3),
    ] {
        let mut params = RnnParams::<f64>::random(cfg, 3);
        let x = common::random::<f64>(&[4, b, 5], 1.0, 4);
        let before = cpu::forward(&params, &x, None).unwrap();
        assert_eq!(cpu::forward(&params, &x, None).unwrap(), before, "{cfg:?}");
        for p in params.layers_mut() {
            p.w_ih.data_mut()[0] += 0.25;
            p.w_hh.data_mut()[1] -= 0.25;
        }
        let after = cpu::forward(&params, &x, None).unwrap();
        let fresh = params.clone().layers_mut().to_vec();
        let fresh = RnnParams::new(cfg, fresh).unwrap();
        assert_eq!(after, cpu::forward(&fresh, &x, None).unwrap(), "{cfg:?}");
        assert_ne!(after, before, "{cfg:?}");
    }
}
