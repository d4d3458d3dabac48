//! The benchmark suite (`benches/suite.json`, the same cases as `wgpu-rnn bench`) under
//! criterion: forward pass and training step, GPU and CPU.
//!
//! `cargo bench --bench suite` runs the cases that are not `gpu_only`; set
//! `WGPU_RNN_BENCH_GPU_SUITE=1` to add those (sized for a real GPU). Names are
//! `{pass}/{device}_{cell}_{case}`, throughput in steps (T·B); every GPU timing waits for the
//! queue (the forward pass reruns on a resident input; a training step reads its loss back).
//! A case whose cell the engine lacks is reported on standard error and skipped.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wgpu_rnn::gpu::{AdapterOptions, GpuContext, GpuRnn};
use wgpu_rnn::suite::Suite;
use wgpu_rnn::train::{TrainState, Trainer};
use wgpu_rnn::{Device, Rnn, RnnParams};

fn suite(c: &mut Criterion) {
    let ctx = GpuContext::new(&AdapterOptions::default()).expect("a GPU adapter (or lavapipe)");
    let gpu_suite = std::env::var_os("WGPU_RNN_BENCH_GPU_SUITE").is_some();
    let cases = Suite::builtin()
        .select(None, gpu_suite)
        .expect("no names to check");
    for case in &cases {
        let cfg = match case.config() {
            Ok(cfg) => cfg,
            Err(e) => {
                eprintln!("skipped {}: {e}", case.name);
                continue;
            }
        };
        let params = RnnParams::random(cfg, 1);
        let x = case.forward_input();
        let (model, tc, batch) = case.train_setup(cfg).expect("a valid suite case");
        for (dev, device) in [("gpu", Device::Gpu(ctx.clone())), ("cpu", Device::Cpu)] {
            let id = format!("{dev}_{}_{}", case.cell, case.name);
            let mut group = c.benchmark_group("forward");
            group.sample_size(10);
            group.throughput(Throughput::Elements(case.steps()));
            match &device {
                Device::Gpu(ctx) => {
                    let mut rnn = GpuRnn::new(ctx.clone(), &params).unwrap();
                    rnn.forward(&x, None).unwrap();
                    group.bench_function(&id, |b| b.iter(|| rnn.rerun_forward().unwrap()));
                }
                Device::Cpu => {
                    let mut rnn = Rnn::new(params.clone(), &device).unwrap();
                    // Inference, as `wgpu-rnn bench` and PyTorch's `no_grad` side.
                    rnn.set_grad_enabled(false);
                    group.bench_function(&id, |b| b.iter(|| rnn.forward(&x, None).unwrap()));
                }
            }
            group.finish();
            let mut group = c.benchmark_group("train");
            group.sample_size(10);
            group.throughput(Throughput::Elements(case.steps()));
            let mut tr = Trainer::new(TrainState::new(model.clone()), tc, &device).unwrap();
            group.bench_function(&id, |b| {
                b.iter(|| {
                    tr.step(&batch, false).unwrap();
                    tr.loss().unwrap() // waits for the queue
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, suite);
criterion_main!(benches);
