//! Forward pass, GPU against CPU, on the Elman shapes of the shared suite.
//! `cargo bench --bench forward`; names are `{device}_{cell}_{shape}`, throughput in steps·batch.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wgpu_rnn::gpu::{AdapterOptions, GpuContext};
use wgpu_rnn::{Cell, Device, Rnn, RnnConfig, RnnParams, Tensor};

struct Shape {
    name: &'static str,
    t: usize,
    b: usize,
    i: usize,
    h: usize,
    l: usize,
    bidir: bool,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "tiny_b1",
        t: 256,
        b: 1,
        i: 32,
        h: 64,
        l: 1,
        bidir: false,
    },
    Shape {
        name: "mid",
        t: 100,
        b: 32,
        i: 128,
        h: 256,
        l: 1,
        bidir: false,
    },
    Shape {
        name: "deep_bidir",
        t: 64,
        b: 16,
        i: 64,
        h: 128,
        l: 3,
        bidir: true,
    },
];

fn forward(c: &mut Criterion) {
    let ctx = GpuContext::new(&AdapterOptions::default()).expect("a GPU adapter (or lavapipe)");
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    for s in &SHAPES {
        let cfg = RnnConfig::new(Cell::RnnTanh, s.i, s.h)
            .layers(s.l)
            .bidirectional(s.bidir);
        let params = RnnParams::random(cfg, 1);
        let x = Tensor::new(
            vec![s.t, s.b, s.i],
            (0..s.t * s.b * s.i)
                .map(|k| ((k % 97) as f32 / 97.0) - 0.5)
                .collect(),
        )
        .unwrap();
        group.throughput(Throughput::Elements((s.t * s.b) as u64));
        for (dev, device) in [("gpu", Device::Gpu(ctx.clone())), ("cpu", Device::Cpu)] {
            let mut rnn = Rnn::new(params.clone(), &device).unwrap();
            // forward() reads the result back, so the clock stops after the queue is done.
            group.bench_function(format!("{dev}_rnn_tanh_{}", s.name), |bench| {
                bench.iter(|| rnn.forward(&x, None).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
