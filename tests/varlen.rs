//! Variable-length batches (PyTorch's packed sequences, `lengths` [B] each in 1..=T, any
//! order; PyTorch's golden cases are in tests/golden.rs): every cell against running each
//! sequence alone; lengths all T equal the plain batch bit for bit; bad lengths
//! are errors naming `lengths`.

mod common;

use wgpu_rnn::{Cell, Device, Error, Rnn, RnnConfig, RnnParams, State, Tensor};

fn devices() -> [Device; 2] {
    [Device::Cpu, Device::Gpu(common::gpu())]
}

/// Row `bi` of a `[T, B, F]` tensor, its first `len` steps, as `[len, 1, F]`.
fn row(t: &Tensor, bi: usize, len: usize) -> Tensor {
    let s = t.shape();
    let data = (0..len)
        .flat_map(|a| t.data()[(a * s[1] + bi) * s[2]..][..s[2]].to_vec())
        .collect();
    Tensor::new(vec![len, 1, s[2]], data).unwrap()
}

/// State row `bi` of `[L·D, B, H]` as `[L·D, 1, H]`.
fn state_row(t: &Tensor, bi: usize) -> Tensor {
    let s = t.shape();
    let data = (0..s[0])
        .flat_map(|a| t.data()[(a * s[1] + bi) * s[2]..][..s[2]].to_vec())
        .collect();
    Tensor::new(vec![s[0], 1, s[2]], data).unwrap()
}

/// Every cell (and an LSTM with a projection), bidirectional, two layers, with h0 (and c0):
/// each row of a variable-length
/// batch equals that sequence run alone (outputs, zero past the end, final states, gradients
/// of the input and the initial states); the parameter gradients are the sums of the rows'.
#[test]
fn each_row_equals_its_sequence_alone() {
    let (t, i, h) = (7, 3, 5);
    let lengths = [7usize, 2, 5, 1];
    let b = lengths.len();
    for device in devices() {
        let configs = Cell::ALL
            .map(|cell| RnnConfig::new(cell, i, h))
            .into_iter()
            .chain([RnnConfig::new(Cell::Lstm, i, h).proj_size(3)]);
        for (n, cfg) in configs.enumerate() {
            let cfg = cfg.layers(2).bidirectional(true);
            let (cell, r) = (cfg.cell, cfg.real_hidden_size());
            let ld = cfg.num_layers * cfg.directions();
            let params = RnnParams::random(cfg, 60 + n as u64);
            let with_c = cell.spec().has_cell_state();
            let x = common::random::<f32>(&[t, b, i], 1.0, 1);
            let h0 = common::random::<f32>(&[ld, b, r], 1.0, 2);
            let c0 = with_c.then(|| common::random::<f32>(&[ld, b, h], 1.0, 3));
            let gy = common::random::<f32>(&[t, b, 2 * r], 1.0, 4);
            let ghn = common::random::<f32>(&[ld, b, r], 1.0, 5);
            let what = format!(
                "{cell} (proj_size {}) on {}",
                cfg.proj_size,
                device.describe()
            );
            let mut rnn = Rnn::new(params.clone(), &device).unwrap();
            let state = State {
                h: Some(&h0),
                c: c0.as_ref(),
            };
            let out = rnn.forward_with_lengths(&x, state, &lengths).unwrap();
            let g = rnn.backward(&gy, &ghn).unwrap();
            // W_hh and W_hr: the weights every step's recurrence reads.
            let recurrent = |p: &wgpu_rnn::LayerParams| -> Vec<f32> {
                let hr = p.w_hr.iter().flat_map(|w| w.data().to_vec());
                p.w_hh.data().iter().copied().chain(hr).collect()
            };
            let n_rec = g.params.layers().iter().map(|p| recurrent(p).len()).sum();
            let mut sum = vec![0.0f64; n_rec];
            for (bi, &len) in lengths.iter().enumerate() {
                let mut one = Rnn::new(params.clone(), &device).unwrap();
                let c1 = c0.as_ref().map(|c| state_row(c, bi));
                let state = State {
                    h: Some(&state_row(&h0, bi)),
                    c: c1.as_ref(),
                };
                let want = one.forward(&row(&x, bi, len), state).unwrap();
                let got_y = row(&out.output, bi, t);
                let w = &format!("{what}, row {bi} (length {len})");
                common::assert_close(
                    &format!("{w}: output"),
                    &row(&got_y, 0, len),
                    &want.output,
                    1e-6,
                );
                assert!(
                    got_y.data()[len * 2 * r..].iter().all(|&v| v == 0.0),
                    "{w}: output past the end"
                );
                common::assert_close(
                    &format!("{w}: h_n"),
                    &state_row(&out.h_n, bi),
                    &want.h_n,
                    1e-6,
                );
                if let (Some(c), Some(wc)) = (&out.c_n, &want.c_n) {
                    common::assert_close(&format!("{w}: c_n"), &state_row(c, bi), wc, 1e-6);
                }
                let wg = one
                    .backward(&row(&gy, bi, len), &state_row(&ghn, bi))
                    .unwrap();
                let gx = row(&g.input, bi, t);
                common::assert_close(
                    &format!("{w}: grad.input"),
                    &row(&gx, 0, len),
                    &wg.input,
                    1e-5,
                );
                assert!(
                    gx.data()[len * i..].iter().all(|&v| v == 0.0),
                    "{w}: grad.input past the end"
                );
                common::assert_close(
                    &format!("{w}: grad.h0"),
                    &state_row(&g.h0, bi),
                    &wg.h0,
                    1e-5,
                );
                if let (Some(c), Some(wc)) = (&g.c0, &wg.c0) {
                    common::assert_close(&format!("{w}: grad.c0"), &state_row(c, bi), wc, 1e-5);
                }
                let mut k = 0;
                for p in wg.params.layers() {
                    for v in recurrent(p) {
                        sum[k] += v as f64;
                        k += 1;
                    }
                }
            }
            let got: Vec<f32> = g.params.layers().iter().flat_map(recurrent).collect();
            let want = Tensor::new(vec![sum.len()], sum).unwrap();
            let got = Tensor::new(vec![got.len()], got).unwrap();
            common::assert_close(
                &format!("{what}: grad.weight_hh, weight_hr (sum of the rows')"),
                &got,
                &want,
                1e-5,
            );
        }
    }
}

/// Lengths all `T` are the plain batch, bit for bit, on each device; bad lengths are errors
/// naming `lengths` with the index and value (or the count).
#[test]
fn full_lengths_are_the_plain_batch_and_bad_lengths_are_errors() {
    let (t, b) = (6, 3);
    for device in devices() {
        let configs = Cell::ALL
            .map(|cell| RnnConfig::new(cell, 4, 9))
            .into_iter()
            .chain([RnnConfig::new(Cell::Lstm, 4, 9).proj_size(5)]);
        for cfg in configs {
            let cfg = cfg.bidirectional(true);
            let cell = cfg.cell;
            let params = RnnParams::random(cfg, 7);
            let x = common::random::<f32>(&[t, b, 4], 1.0, 8);
            let gy = common::random::<f32>(&[t, b, cfg.output_size()], 1.0, 9);
            let mut rnn = Rnn::new(params, &device).unwrap();
            let plain = rnn.forward(&x, None).unwrap();
            let gp = rnn.backward(&gy, None).unwrap();
            let full = rnn.forward_with_lengths(&x, None, &[t; 3]).unwrap();
            let gf = rnn.backward(&gy, None).unwrap();
            assert_eq!(full, plain, "{cell} on {}", device.describe());
            assert_eq!(gf, gp, "{cell} on {}: gradients", device.describe());
            // After a short batch, a plain forward on the same model is full length again.
            rnn.forward_with_lengths(&x, None, &[1, 6, 2]).unwrap();
            assert_eq!(rnn.forward(&x, None).unwrap(), plain);
            for (lengths, parts) in [
                (vec![6, 0, 6], vec!["lengths[1]", "1..=6", "found 0"]),
                (vec![6, 7, 6], vec!["lengths[1]", "found 7"]),
                (vec![6, 6], vec!["lengths", "expected 3", "found 2"]),
            ] {
                let err = rnn.forward_with_lengths(&x, None, &lengths).unwrap_err();
                assert!(matches!(err, Error::Config(_)), "{err:?}");
                common::assert_msg(&err, &parts);
            }
        }
    }
}
