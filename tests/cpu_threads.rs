//! The CPU path's large products are cut into blocks by shape alone
//! (`wgpu_rnn::tensor::SPLIT_WORK`), and its time loops into blocks of 16 batch rows and the
//! directions; the blocks run on rayon's threads: forward and backward passes, and training
//! steps, give the same bits on 1, 2 and 3 threads.

mod common;

use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer};
use wgpu_rnn::{Cell, Device, Rnn, RnnConfig, RnnParams};

fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Shapes large enough that products are cut into blocks (from 2^24 multiply-adds): the
/// recurrent weights' gradients (G·H × T·B × H = 84–335 M) and the gated cells' input
/// projections (T·B × I × G·H = 63–84 M).
#[test]
fn passes_are_bit_identical_on_any_thread_count() {
    let (t, b, i) = (40, 32, 64);
    let configs = Cell::ALL
        .map(|c| RnnConfig::new(c, i, 256).layers(2))
        .into_iter()
        .chain([RnnConfig::new(Cell::Lstm, i, 128)
            .proj_size(40)
            .bidirectional(true)]);
    for (n, cfg) in configs.enumerate() {
        let params = RnnParams::random(cfg, 70 + n as u64);
        let x = common::random::<f32>(&[t, b, i], 1.0, 71);
        let gy = common::random::<f32>(&[t, b, cfg.output_size()], 1.0, 72);
        let run = |threads| {
            on_threads(threads, || {
                let mut rnn = Rnn::new(params.clone(), &Device::Cpu).unwrap();
                let out = rnn.forward(&x, None).unwrap();
                let g = rnn.backward(&gy, None).unwrap();
                (out, g)
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(
                run(threads) == one,
                "{cfg:?}: 1 and {threads} threads differ"
            );
        }
    }
}

#[test]
fn training_steps_are_bit_identical_on_any_thread_count() {
    let cfg = RnnConfig::new(Cell::Gru, 16, 160).layers(2);
    let model = SeqModel::new(cfg, Task::Regression { outputs: 3 }, 5).unwrap();
    let batch = Batch::Values {
        input: common::random(&[24, 32, 16], 1.0, 6),
        target: common::random(&[24, 32, 3], 1.0, 7),
    };
    let train = |threads| {
        on_threads(threads, || {
            let tc = TrainConfig {
                optimizer: Optimizer::adam(1e-3),
                clip_norm: Some(1.0),
            };
            let mut tr = Trainer::new(TrainState::new(model.clone()), tc, &Device::Cpu).unwrap();
            let losses: Vec<f64> = (0..3)
                .map(|_| {
                    tr.step(&batch, false).unwrap();
                    tr.loss().unwrap()
                })
                .collect();
            (losses, tr.model().unwrap().rnn)
        })
    };
    let one = train(1);
    assert!(train(2) == one, "1 and 2 threads differ");
}

/// Inference (`set_grad_enabled(false)`, which keeps no trace) computes the same bits as a
/// recorded pass, for every cell, a projection, both directions, several row blocks and
/// variable lengths.
#[test]
fn inference_equals_the_recorded_pass() {
    let (t, b, i) = (9, 37, 5);
    let configs = Cell::ALL
        .map(|c| RnnConfig::new(c, i, 12).layers(2).bidirectional(true))
        .into_iter()
        .chain([RnnConfig::new(Cell::Lstm, i, 12).proj_size(5)]);
    let lengths: Vec<usize> = (0..b).map(|k| 1 + k % t).collect();
    for (n, cfg) in configs.enumerate() {
        let params = RnnParams::random(cfg, 80 + n as u64);
        let x = common::random::<f32>(&[t, b, i], 1.0, 81);
        let mut rnn = Rnn::new(params, &Device::Cpu).unwrap();
        for l in [None, Some(&lengths[..])] {
            let mut run = |grad| {
                rnn.set_grad_enabled(grad);
                match l {
                    Some(l) => rnn.forward_with_lengths(&x, None, l).unwrap(),
                    None => rnn.forward(&x, None).unwrap(),
                }
            };
            let (kept, inferred) = (run(true), run(false));
            assert!(
                kept == inferred,
                "{cfg:?}, lengths {l:?}: inference differs"
            );
        }
    }
}
