//! PyTorch's other sequence layouts: `batch_first` (`[B, T, I]` in, `[B, T, D·H]` out, states
//! unchanged) and unbatched input (`[T, I]`, states `[L·D, H]`) equal the time-major batched
//! pass on the transposed (or B = 1) tensors, bit for bit, forward and backward, for every cell
//! on both devices.

mod common;

use wgpu_rnn::{Cell, Device, Error, Rnn, RnnConfig, RnnParams, State, Tensor};

/// `[a, b, c]` → `[b, a, c]`.
fn swap01(t: &Tensor) -> Tensor {
    let s = t.shape();
    let mut data = Vec::new();
    for j in 0..s[1] {
        for i in 0..s[0] {
            data.extend_from_slice(&t.data()[(i * s[1] + j) * s[2]..][..s[2]]);
        }
    }
    Tensor::new(vec![s[1], s[0], s[2]], data).unwrap()
}

fn with_shape(t: &Tensor, shape: &[usize]) -> Tensor {
    Tensor::new(shape.to_vec(), t.data().to_vec()).unwrap()
}

#[test]
fn batch_first_and_unbatched_equal_time_major() {
    let (t, b, i, h) = (5, 3, 4, 6);
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let configs = Cell::ALL
            .map(|cell| RnnConfig::new(cell, i, h))
            .into_iter()
            .chain([RnnConfig::new(Cell::Lstm, i, h).proj_size(2)]);
        for (n, cfg) in configs.enumerate() {
            let cfg = cfg.layers(2).bidirectional(true);
            let (cell, r) = (cfg.cell, cfg.real_hidden_size());
            let ld = cfg.num_layers * cfg.directions();
            let params = RnnParams::random(cfg, 40 + n as u64);
            let c = cell.spec().has_cell_state();
            let x = common::random::<f32>(&[t, b, i], 1.0, 1);
            let h0 = common::random::<f32>(&[ld, b, r], 1.0, 2);
            let c0 = common::random::<f32>(&[ld, b, h], 1.0, 3);
            let gy = common::random::<f32>(&[t, b, 2 * r], 1.0, 4);
            let ghn = common::random::<f32>(&[ld, b, r], 1.0, 5);
            let state = |h: &Tensor, c0: &Tensor| -> (Tensor, Option<Tensor>) {
                (h.clone(), c.then(|| c0.clone()))
            };
            let what = format!("{cell} on {}", device.describe());
            // Time-major reference.
            let mut rnn = Rnn::new(params.clone(), &device).unwrap();
            let (h0r, c0r) = state(&h0, &c0);
            let want = rnn
                .forward(
                    &x,
                    State {
                        h: Some(&h0r),
                        c: c0r.as_ref(),
                    },
                )
                .unwrap();
            let want_g = rnn.backward(&gy, &ghn).unwrap();
            // Batch first.
            let mut bf = Rnn::new(params.clone().batch_first(true), &device).unwrap();
            let got = bf
                .forward(
                    &swap01(&x),
                    State {
                        h: Some(&h0r),
                        c: c0r.as_ref(),
                    },
                )
                .unwrap();
            assert_eq!(
                got.output,
                swap01(&want.output),
                "{what}: batch_first output"
            );
            assert_eq!(
                (&got.h_n, &got.c_n),
                (&want.h_n, &want.c_n),
                "{what}: batch_first states"
            );
            let g = bf.backward(&swap01(&gy), &ghn).unwrap();
            assert_eq!(
                g.input,
                swap01(&want_g.input),
                "{what}: batch_first grad.input"
            );
            assert_eq!((&g.h0, &g.c0), (&want_g.h0, &want_g.c0), "{what}: states");
            // The same gradients; only the config's layout differs.
            assert_eq!(
                g.params.layers(),
                want_g.params.layers(),
                "{what}: grad.params"
            );
            // Unbatched: batch row 1 alone, as B = 1.
            let row = |t3: &Tensor| -> Tensor {
                let s = t3.shape();
                let data = (0..s[0])
                    .flat_map(|a| t3.data()[(a * s[1] + 1) * s[2]..][..s[2]].to_vec())
                    .collect();
                Tensor::new(vec![s[0], s[2]], data).unwrap()
            };
            let (x1, h01, c01, gy1, ghn1) = (row(&x), row(&h0), row(&c0), row(&gy), row(&ghn));
            let mut one = Rnn::new(params.clone(), &device).unwrap();
            let want1 = one
                .forward(
                    &with_shape(&x1, &[t, 1, i]),
                    State {
                        h: Some(&with_shape(&h01, &[ld, 1, r])),
                        c: c.then(|| with_shape(&c01, &[ld, 1, h])).as_ref(),
                    },
                )
                .unwrap();
            let want1_g = one
                .backward(
                    &with_shape(&gy1, &[t, 1, 2 * r]),
                    &with_shape(&ghn1, &[ld, 1, r]),
                )
                .unwrap();
            let mut ub = Rnn::new(params.clone(), &device).unwrap();
            let c01 = c.then_some(c01);
            let got = ub
                .forward(
                    &x1,
                    State {
                        h: Some(&h01),
                        c: c01.as_ref(),
                    },
                )
                .unwrap();
            assert_eq!(
                got.output,
                with_shape(&want1.output, &[t, 2 * r]),
                "{what}: unbatched"
            );
            assert_eq!(
                got.h_n,
                with_shape(&want1.h_n, &[ld, r]),
                "{what}: unbatched h_n"
            );
            assert_eq!(
                got.c_n,
                want1.c_n.as_ref().map(|c| with_shape(c, &[ld, h])),
                "{what}: unbatched c_n"
            );
            let g = ub.backward(&gy1, &ghn1).unwrap();
            assert_eq!(
                g.input,
                with_shape(&want1_g.input, &[t, i]),
                "{what}: unbatched grad"
            );
            assert_eq!(g.h0, with_shape(&want1_g.h0, &[ld, r]));
            assert_eq!(g.params, want1_g.params);
            // Unbatched states must be [L·D, H].
            let err = ub.forward(&x1, &h0).unwrap_err();
            assert!(
                matches!(&err, Error::Shape { name, .. } if name == "h0"),
                "{err:?}"
            );
        }
    }
}

/// A forward that fails while its tensors are being laid out leaves nothing to differentiate.
#[test]
fn a_failed_layout_forward_forgets_the_previous_pass() {
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let cfg = RnnConfig::new(Cell::Gru, 3, 4).batch_first(true);
        let mut rnn = Rnn::new(RnnParams::random(cfg, 1), &device).unwrap();
        rnn.forward(&Tensor::zeros(&[2, 5, 3]), None).unwrap();
        let bad_h0 = Tensor::zeros(&[1, 9]);
        assert!(rnn.forward(&Tensor::zeros(&[5, 3]), &bad_h0).is_err());
        let err = rnn.backward(&Tensor::zeros(&[2, 5, 4]), None).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
}
