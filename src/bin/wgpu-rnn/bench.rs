//! Side-by-side timing of the GPU and CPU forward passes and training step, and a per-kernel
//! profile of the GPU training step.

use std::sync::Arc;
use std::time::Instant;

use wgpu_rnn::gpu::{GpuContext, GpuTrainer};
use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, data};
use wgpu_rnn::{Cell, Device, Error, Result, Rnn, RnnConfig, RnnParams, Tensor};

/// One benchmark shape, named as in `../shared/bench/suite.json`.
pub struct Shape {
    pub name: &'static str,
    pub t: usize,
    pub b: usize,
    pub i: usize,
    pub h: usize,
    pub l: usize,
    pub bidirectional: bool,
}

const fn shape(name: &'static str, t: usize, b: usize, i: usize, h: usize, l: usize) -> Shape {
    Shape {
        name,
        t,
        b,
        i,
        h,
        l,
        bidirectional: false,
    }
}

/// The Elman shapes of the shared benchmark suite; `quick` keeps the ones that run in
/// seconds on a software adapter.
pub fn shapes(quick: bool) -> Vec<Shape> {
    let mut all = vec![
        shape("tiny_b1", 256, 1, 32, 64, 1),
        shape("small_b1", 150, 1, 256, 256, 1),
        shape("mid", 100, 32, 128, 256, 1),
        Shape {
            bidirectional: true,
            ..shape("deep_bidir", 64, 16, 64, 128, 3)
        },
        shape("large", 50, 64, 512, 512, 1),
    ];
    if quick {
        all.retain(|s| matches!(s.name, "tiny_b1" | "mid" | "deep_bidir"));
    }
    all
}

/// Built-in data: `B` phase-shifted sine waves of `I` harmonics, `[T, B, I]`.
pub fn sine_batch(t: usize, b: usize, i: usize) -> Tensor {
    let mut data = Vec::with_capacity(t * b * i);
    for step in 0..t {
        for row in 0..b {
            for f in 0..i {
                let phase = row as f32 * 0.37 + f as f32 * 0.11;
                data.push(((step as f32) * 0.05 * (f + 1) as f32 + phase).sin());
            }
        }
    }
    Tensor::new(vec![t, b, i], data).expect("shape matches data")
}

fn median_ms(rnn: &mut Rnn, x: &Tensor, repeats: usize) -> Result<(f64, Tensor)> {
    let first = rnn.forward(x, None)?; // warm-up: builds the workspace and pipelines
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        rnn.forward(x, None)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], first.output))
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let (n, d) = a
        .data()
        .iter()
        .zip(b.data())
        .fold((0.0f64, 0.0f64), |(n, d), (&x, &y)| {
            let (x, y) = (x as f64, y as f64);
            (n + (x - y) * (x - y), d + y * y)
        });
    n.sqrt() / d.sqrt().max(1e-30)
}

/// Times every shape on both devices and prints a table; errors if they disagree.
pub fn run(ctx: &Arc<GpuContext>, shapes: &[Shape], repeats: usize) -> Result<()> {
    println!(
        "forward pass, Elman tanh, median of {repeats}; GPU: {}; CPU: matrixmultiply",
        ctx.describe()
    );
    println!(
        "{:<11} {:>4} {:>3} {:>4} {:>4} {:>2} {:>3} | {:>9} {:>9} {:>8} | {:>8} {:>8} | {:>8}",
        "shape",
        "T",
        "B",
        "I",
        "H",
        "L",
        "D",
        "gpu ms",
        "cpu ms",
        "cpu/gpu",
        "gpu GF/s",
        "cpu GF/s",
        "rel err"
    );
    let mut worst = 0.0f64;
    for s in shapes {
        let cfg = RnnConfig::new(Cell::RnnTanh, s.i, s.h)
            .layers(s.l)
            .bidirectional(s.bidirectional);
        let params = RnnParams::random(cfg, 2024);
        let x = sine_batch(s.t, s.b, s.i);
        let mut gpu = Rnn::new(params.clone(), &Device::Gpu(ctx.clone()))?;
        let mut cpu = Rnn::new(params, &Device::Cpu)?;
        let (g_ms, g_out) = median_ms(&mut gpu, &x, repeats)?;
        let (c_ms, c_out) = median_ms(&mut cpu, &x, repeats)?;
        let err = rel_err(&g_out, &c_out);
        worst = worst.max(err);
        let gflop = cfg.forward_flops(s.t, s.b) / 1e9;
        println!(
            "{:<11} {:>4} {:>3} {:>4} {:>4} {:>2} {:>3} | {:>9.2} {:>9.2} {:>8.2} | {:>8.2} {:>8.2} | {:>8.1e}",
            s.name,
            s.t,
            s.b,
            s.i,
            s.h,
            s.l,
            cfg.directions(),
            g_ms,
            c_ms,
            c_ms / g_ms,
            gflop / (g_ms / 1e3),
            gflop / (c_ms / 1e3),
            err
        );
    }
    const TOL: f64 = 1e-4;
    if worst > TOL {
        return Err(Error::Gpu {
            context: "gpu/cpu agreement".into(),
            message: format!("relative error {worst:.2e} exceeds {TOL:.0e}"),
        });
    }
    println!("GPU and CPU agree: worst relative error {worst:.1e} (tolerance {TOL:.0e})");
    train_step(ctx, repeats)
}

/// The suite's `charlm` case: model, optimizer settings and one batch.
fn charlm() -> Result<(SeqModel, TrainConfig, Batch, [usize; 4])> {
    let (t, b, h, v) = (64, 32, 256, 65);
    let model = SeqModel::new(
        RnnConfig::new(Cell::RnnTanh, v, h),
        Task::Tokens { vocab: v },
        0,
    )?;
    let cfg = TrainConfig {
        optimizer: Optimizer::adam(1e-3),
        clip_norm: Some(5.0),
    };
    let ids: Vec<u32> = (0..4096u32).map(|i| (i * 7 + i / 5) % v as u32).collect();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let batch = data::random_batch(&ids, t, b, &mut rng);
    Ok((model, cfg, batch, [t, b, h, v]))
}

/// The `charlm` case: one training step (token input, forward, softmax cross-entropy over a
/// linear head, BPTT, Adam), GPU against CPU.
fn train_step(ctx: &Arc<GpuContext>, repeats: usize) -> Result<()> {
    let (model, cfg, batch, [t, b, h, v]) = charlm()?;
    let g = crate::train::time_steps(&model, cfg, &Device::Gpu(ctx.clone()), &batch, repeats)?;
    let c = crate::train::time_steps(&model, cfg, &Device::Cpu, &batch, repeats)?;
    let gflop = 3.0 * (cfg_flops(t, b, v, h) + 2.0 * (t * b * h * v) as f64) / 1e9;
    println!(
        "\ntraining step, charlm (T={t} B={b} V={v} H={h}, Adam, clip 5), median of {repeats}:\n  \
         gpu {g:.2} ms ({:.2} GF/s)  |  cpu {c:.2} ms ({:.2} GF/s)  |  cpu/gpu {:.2}",
        gflop / (g / 1e3),
        gflop / (c / 1e3),
        c / g
    );
    Ok(())
}

/// `bench --profile`: each kernel of the charlm training step on the GPU, timed in isolation,
/// slowest first, next to the end-to-end step time.
pub fn profile(ctx: &Arc<GpuContext>, repeats: usize) -> Result<()> {
    let (model, cfg, batch, [t, b, h, v]) = charlm()?;
    let step_ms = crate::train::time_steps(&model, cfg, &Device::Gpu(ctx.clone()), &batch, 3)?;
    let trainer = GpuTrainer::new(ctx.clone(), &TrainState::new(model), cfg)?;
    let mut kernels = trainer.profile(&batch, repeats)?;
    let total: f64 = kernels.iter().map(|k| k.ms).sum();
    kernels.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    println!(
        "kernels of one charlm training step (T={t} B={b} V={v} H={h}, Adam, clip 5) on {};\n\
         each dispatch timed alone, {repeats} times in one submit:\n",
        ctx.describe()
    );
    println!(
        "{:<12} {:>16} {:>10} {:>12} {:>7}",
        "kernel", "workgroups", "per step", "ms per step", "share"
    );
    for k in &kernels {
        println!(
            "{:<12} {:>16} {:>10} {:>12.2} {:>6.1}%",
            format!("{:?}", k.kernel),
            format!("{:?}", k.groups),
            k.dispatches,
            k.ms,
            100.0 * k.ms / total
        );
    }
    println!(
        "{:<12} {:>16} {:>10} {:>12.2}\n\nend-to-end step (median of 3): {step_ms:.2} ms",
        "sum",
        "",
        kernels.iter().map(|k| k.dispatches).sum::<usize>(),
        total
    );
    Ok(())
}

fn cfg_flops(t: usize, b: usize, i: usize, h: usize) -> f64 {
    RnnConfig::new(Cell::RnnTanh, i, h).forward_flops(t, b)
}
