//! `wgpu-rnn bench`: the benchmark suite (`benches/suite.json`, the only list of shapes) on the
//! GPU, the CPU or both, forward and training step, as a table or as JSON lines that join with
//! PyTorch's side-by-side script; the cost model's constants; a per-kernel profile.

use std::sync::Arc;
use std::time::Instant;

use wgpu_rnn::gpu::{CostConstants, GpuContext, GpuRnn, GpuStream};
use wgpu_rnn::suite::{Case, Suite};
use wgpu_rnn::train::{GpuTrainer, TrainState};
use wgpu_rnn::{Device, Error, Result, Rnn, RnnConfig, RnnParams, Stream, Tensor};

/// What `bench` runs.
pub struct Options {
    /// Timed repetitions (the median is reported), after one warm-up run.
    pub repeats: usize,
    /// Every case at smoke-test sizes ([`Case::quick`]).
    pub quick: bool,
    /// Only these cases (any, `gpu_only` included).
    pub only: Option<Vec<String>>,
    /// Also the `gpu_only` cases.
    pub gpu_suite: bool,
    /// Run on the GPU.
    pub gpu: bool,
    /// Run on the CPU.
    pub cpu: bool,
    /// JSON lines instead of the table.
    pub json: bool,
    /// The forward pass as a variable-length batch, lengths spread evenly over `1..=T`.
    pub varlen: bool,
    /// The LSTM cases' `proj_size` (0: none, the suite's own shapes).
    pub proj_size: usize,
}

/// `b` lengths spread evenly over `1..=t` (row 0 the shortest, the last row all `t`).
fn spread_lengths(t: usize, b: usize) -> Vec<usize> {
    (0..b)
        .map(|i| if b == 1 { t } else { 1 + i * (t - 1) / (b - 1) })
        .collect()
}

/// `cfg` with `proj_size` when it is an LSTM's (the only cell that projects), else as it is.
///
/// # Errors
/// [`Error::Config`] when `proj_size` is not below the case's hidden size.
fn with_projection(cfg: RnnConfig, proj_size: usize) -> Result<RnnConfig> {
    if proj_size == 0 || cfg.cell != wgpu_rnn::Cell::Lstm {
        return Ok(cfg);
    }
    let cfg = cfg.proj_size(proj_size);
    cfg.validate()?;
    Ok(cfg)
}

/// One timed pass of one case on one device.
struct Timing {
    ms: f64,
    /// Device bytes the model and pass hold (GPU only).
    bytes: Option<u64>,
}

/// Median of `repeats` timed calls of `f` after one warm-up call.
pub fn time(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(wgpu_rnn::suite::median(times))
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

/// The forward pass on one device; returns its timing and output (for the agreement check).
fn forward(
    case: &Case,
    params: &RnnParams,
    device: &Device,
    repeats: usize,
    varlen: bool,
) -> Result<(Timing, Tensor)> {
    let x = case.forward_input();
    let lengths = varlen.then(|| spread_lengths(x.shape()[0], x.shape()[1]));
    match device {
        Device::Gpu(ctx) => {
            let mut rnn = GpuRnn::new(ctx.clone(), params)?;
            let out = rnn.forward_lengths(&x, None, lengths.as_deref())?.output;
            // Input resident, nothing read back: the queue's time, waited for.
            let ms = time(repeats, || rnn.rerun_forward())?;
            let bytes = Some(rnn.memory_bytes());
            Ok((Timing { ms, bytes }, out))
        }
        Device::Cpu => {
            let mut rnn = Rnn::new(params.clone(), device)?;
            // Inference, as PyTorch's side runs under `torch.no_grad()`.
            rnn.set_grad_enabled(false);
            let run = |rnn: &mut Rnn| match &lengths {
                Some(l) => rnn.forward_with_lengths(&x, None, l),
                None => rnn.forward(&x, None),
            };
            let out = run(&mut rnn)?.output;
            let ms = time(repeats, || run(&mut rnn).map(drop))?;
            Ok((Timing { ms, bytes: None }, out))
        }
    }
}

/// One training step on one device (forward, BPTT, update; the loss read back to wait).
fn train(case: &Case, cfg: RnnConfig, device: &Device, repeats: usize) -> Result<Timing> {
    let (model, tc, batch) = case.train_setup(cfg)?;
    match device {
        Device::Gpu(ctx) => {
            let mut tr = GpuTrainer::new(ctx.clone(), &TrainState::new(model), tc)?;
            let ms = time(repeats, || {
                tr.step(&batch, false)?;
                tr.loss().map(drop) // waits for the queue
            })?;
            Ok(Timing {
                ms,
                bytes: Some(tr.memory_bytes()),
            })
        }
        Device::Cpu => Ok(Timing {
            ms: crate::train::time_steps(&model, tc, device, &batch, repeats)?,
            bytes: None,
        }),
    }
}

/// A JSON line in the format of `pytorch_side_by_side.py` (its keys in its order, Python's
/// separators), plus `bytes` on the GPU.
fn json_line(name: &str, device: &str, pass: &str, ms: f64, gflops: f64, bytes: Option<u64>) {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let num = |v: f64| serde_json::Value::from(v).to_string();
    let mut line = format!(
        "{{\"name\": {}, \"device\": {}, \"pass\": {}, \"ms\": {}, \"gflops\": {}",
        q(name),
        q(device),
        q(pass),
        num((ms * 1e4).round() / 1e4),
        num((gflops * 100.0).round() / 100.0)
    );
    if let Some(b) = bytes {
        line += &format!(", \"bytes\": {b}");
    }
    println!("{line}}}");
}

fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Gpu(_) => "wgpu-rnn-gpu",
        Device::Cpu => "wgpu-rnn-cpu",
    }
}

/// The cost model's constants on `ctx`: a table, or JSON lines with `pass: "constant"`.
pub fn constants(ctx: &Arc<GpuContext>, repeats: usize, json: bool) -> Result<()> {
    let c = CostConstants::measure(ctx, repeats)?;
    let rows = [
        (
            "empty_dispatch",
            c.empty_dispatch_ms,
            "one more empty dispatch in a compute pass",
        ),
        (
            "submit_wait",
            c.submit_wait_ms,
            "submit an empty command buffer and wait",
        ),
        (
            "readback_256b",
            c.readback_ms,
            "copy, submit, wait and map 256 bytes",
        ),
    ];
    if json {
        for (name, ms, _) in rows {
            json_line(name, "wgpu-rnn-gpu", "constant", ms, 0.0, None);
        }
    } else {
        println!(
            "cost model constants on {} (median of {repeats}):",
            ctx.describe()
        );
        for (name, ms, what) in rows {
            println!("  {name:<15} {:>10.4} ms   {what}", ms);
        }
    }
    Ok(())
}

/// Runs the selected cases and prints the table or JSON lines. A case whose cell the engine
/// lacks is reported as skipped, with the reason, on standard error (and in the table).
///
/// # Errors
/// An unknown case name, a device failure, or GPU and CPU forward outputs that disagree by
/// more than 1e-4 (relative norm).
pub fn run(ctx: Option<&Arc<GpuContext>>, opts: &Options) -> Result<()> {
    let suite = Suite::builtin();
    let cases = suite.select(opts.only.as_deref(), opts.gpu_suite)?;
    let repeats = opts.repeats.max(1);
    let mut devices = Vec::new();
    if opts.gpu {
        let ctx =
            ctx.ok_or_else(|| Error::config("bench: the GPU was asked for but not opened"))?;
        devices.push(Device::Gpu(ctx.clone()));
    }
    if opts.cpu {
        devices.push(Device::Cpu);
    }
    if let (true, Some(ctx)) = (opts.json, ctx) {
        constants(ctx, repeats.max(5), true)?;
    }
    if !opts.json {
        let gpu = match ctx {
            Some(c) => c.describe(),
            None => "not used".into(),
        };
        println!(
            "benchmark suite{}, median of {repeats} after a warm-up; GPU: {gpu}; CPU: gemm crate",
            if opts.quick { " at --quick sizes" } else { "" }
        );
        println!(
            "{:<14} {:>4} {:>3} {:>5} {:>5} {:>2} {:>2} {:<7} | {:>9} {:>9} {:>7} | {:>8} {:>8} | {:>8}",
            "case",
            "T",
            "B",
            "I",
            "H",
            "L",
            "D",
            "pass",
            "gpu ms",
            "cpu ms",
            "gpu/cpu",
            "gpu GF/s",
            "cpu GF/s",
            "gpu MiB"
        );
    }
    let mut worst = 0.0f64;
    for case in &cases {
        let case = if opts.quick {
            case.quick()
        } else {
            case.clone()
        };
        let cfg = match case
            .config()
            .and_then(|c| with_projection(c, opts.proj_size))
        {
            Ok(cfg) => cfg,
            Err(e) => {
                let reason = match e {
                    Error::Config(m) => m,
                    other => other.to_string(),
                };
                // JSON lines stay joinable: the reason goes to standard error.
                match opts.json {
                    true => eprintln!("skipped {}: {reason}", case.name),
                    false => println!("{:<14} skipped: {reason}", case.name),
                }
                continue;
            }
        };
        let params = RnnParams::random(cfg, 2024);
        let mut fwd: Vec<Timing> = Vec::new();
        let mut outputs = Vec::new();
        let mut trn: Vec<Timing> = Vec::new();
        // The suite's formulas, or with a projection the config's (which count W_hr).
        let (fwd_flops, train_flops) = match cfg.proj_size {
            0 => (case.forward_flops(), case.train_flops()),
            _ => {
                let f = cfg.forward_flops(case.t, case.b);
                (f, case.train_flops() - 3.0 * case.forward_flops() + 3.0 * f)
            }
        };
        for device in &devices {
            let (t, out) = forward(&case, &params, device, repeats, opts.varlen)?;
            if opts.json {
                let gf = fwd_flops / t.ms / 1e6;
                json_line(
                    &case.name,
                    device_name(device),
                    "forward",
                    t.ms,
                    gf,
                    t.bytes,
                );
            }
            fwd.push(t);
            outputs.push(out);
            let t = train(&case, cfg, device, repeats)?;
            if opts.json {
                let gf = train_flops / t.ms / 1e6;
                json_line(&case.name, device_name(device), "train", t.ms, gf, t.bytes);
            }
            trn.push(t);
        }
        if let [a, b] = &outputs[..] {
            worst = worst.max(rel_err(a, b));
        }
        if !opts.json {
            for (pass, timings, flops) in
                [("forward", &fwd, fwd_flops), ("train", &trn, train_flops)]
            {
                print_row(&case, pass, &devices, timings, flops);
            }
        }
    }
    const TOL: f64 = 1e-4;
    if worst > TOL {
        return Err(Error::Gpu {
            context: "gpu/cpu agreement".into(),
            message: format!("forward outputs differ by {worst:.2e} (relative), over {TOL:.0e}"),
        });
    }
    if !opts.json && devices.len() == 2 {
        println!("GPU and CPU forward outputs agree: worst relative error {worst:.1e}");
    }
    Ok(())
}

fn print_row(case: &Case, pass: &str, devices: &[Device], timings: &[Timing], flops: f64) {
    let mut gpu = None;
    let mut cpu = None;
    for (d, t) in devices.iter().zip(timings) {
        match d {
            Device::Gpu(_) => gpu = Some(t),
            Device::Cpu => cpu = Some(t),
        }
    }
    let ms = |t: Option<&Timing>| t.map_or("-".into(), |t| format!("{:.2}", t.ms));
    let gf = |t: Option<&Timing>| t.map_or("-".into(), |t| format!("{:.2}", flops / t.ms / 1e6));
    let ratio = match (gpu, cpu) {
        (Some(g), Some(c)) => format!("{:.2}", g.ms / c.ms),
        _ => "-".into(),
    };
    let mib = gpu.and_then(|t| t.bytes).map_or("-".into(), |b| {
        format!("{:.1}", b as f64 / (1 << 20) as f64)
    });
    println!(
        "{:<14} {:>4} {:>3} {:>5} {:>5} {:>2} {:>2} {:<7} | {:>9} {:>9} {:>7} | {:>8} {:>8} | {:>8}",
        case.name,
        case.t,
        case.b,
        case.i,
        case.h,
        case.l,
        case.directions(),
        pass,
        ms(gpu),
        ms(cpu),
        ratio,
        gf(gpu),
        gf(cpu),
        mib
    );
}

/// `bench --profile`: each kernel of the charlm training step on the GPU, timed in isolation,
/// slowest first, next to the end-to-end step time.
pub fn profile(ctx: &Arc<GpuContext>, repeats: usize) -> Result<()> {
    let case = Suite::builtin()
        .case("charlm")
        .cloned()
        .ok_or_else(|| Error::config("the suite has no charlm case"))?;
    let (model, cfg, batch) = case.train_setup(case.config()?)?;
    let step_ms = crate::train::time_steps(&model, cfg, &Device::Gpu(ctx.clone()), &batch, 3)?;
    let trainer = GpuTrainer::new(ctx.clone(), &TrainState::new(model), cfg)?;
    let mut kernels = trainer.profile(&batch, repeats)?;
    let total: f64 = kernels.iter().map(|k| k.ms).sum();
    kernels.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    println!(
        "kernels of one charlm training step (T={} B={} V={} H={}, Adam) on {};\n\
         each dispatch timed alone, {repeats} times in one submit:\n",
        case.t,
        case.b,
        case.i,
        case.h,
        ctx.describe()
    );
    println!(
        "{:<14} {:>16} {:>10} {:>12} {:>7}",
        "kernel", "workgroups", "per step", "ms per step", "share"
    );
    for k in &kernels {
        println!(
            "{:<14} {:>16} {:>10} {:>12.2} {:>6.1}%",
            format!("{:?}", k.kernel),
            format!("{:?}", k.groups),
            k.dispatches,
            k.ms,
            100.0 * k.ms / total
        );
    }
    println!(
        "{:<14} {:>16} {:>10} {:>12.2}\n\nend-to-end step (median of 3): {step_ms:.2} ms",
        "sum",
        "",
        kernels.iter().map(|k| k.dispatches).sum::<usize>(),
        total
    );
    Ok(())
}

/// `bench --stream`: the latency of streaming one step at a time ([`Stream::feed`] of a chunk
/// `[1, B, I]`, the output read back each step) against a whole-sequence forward divided by
/// `T`, on the GPU and the CPU; on the GPU also with GPU-resident I/O (the chunk's input and
/// output in buffers of the context's device, [`GpuStream::feed_buffers`], waited for each
/// step) against [`GpuRnn::forward_buffers`] divided by `T`. Unidirectional cases only (the
/// default: `tiny_b1`, `small_b1`).
pub fn stream(
    ctx: Option<&Arc<GpuContext>>,
    cpu: bool,
    repeats: usize,
    only: Option<&[String]>,
) -> Result<()> {
    let suite = Suite::builtin();
    let names: Vec<String> = match only {
        Some(n) => n.to_vec(),
        None => vec!["tiny_b1".into(), "small_b1".into()],
    };
    println!(
        "streaming one step at a time, ms per step (median of {repeats} passes over T steps); \
         whole = one forward over T steps / T\n"
    );
    println!(
        "{:<14} {:>4} {:>3} {:>5} {:>5} {:<9} {:<9} | {:>10} {:>10} {:>7}",
        "case", "T", "B", "I", "H", "device", "I/O", "stream", "whole/T", "ratio"
    );
    for name in names {
        let case = suite
            .case(&name)
            .cloned()
            .ok_or_else(|| Error::config(format!("bench --stream: no case named {name:?}")))?;
        let cfg = case.config()?;
        if cfg.bidirectional || case.vocab.is_some() {
            println!("{name:<14} skipped: streaming takes unidirectional dense-input cases");
            continue;
        }
        let params = RnnParams::random(cfg, 2024);
        let x = case.forward_input();
        let (t, b, i) = (case.t, case.b, case.i);
        let step =
            |k: usize| Tensor::new(vec![1, b, i], x.data()[k * b * i..(k + 1) * b * i].to_vec());
        let chunks: Vec<Tensor> = (0..t).map(step).collect::<Result<_>>()?;
        let row = |device: &str, io: &str, per: f64, whole: f64| {
            println!(
                "{:<14} {:>4} {:>3} {:>5} {:>5} {:<9} {:<9} | {:>10.4} {:>10.4} {:>7.2}",
                case.name,
                t,
                b,
                i,
                case.h,
                device,
                io,
                per,
                whole,
                per / whole
            )
        };
        let mut devices = Vec::new();
        if cpu {
            devices.push(Device::Cpu);
        }
        devices.extend(ctx.map(|c| Device::Gpu(c.clone())));
        for device in &devices {
            let kind = match device {
                Device::Gpu(_) => "gpu",
                Device::Cpu => "cpu",
            };
            let mut rnn = Rnn::new(params.clone(), device)?;
            let whole = time(repeats, || rnn.forward(&x, None).map(drop))? / t as f64;
            let mut s = Stream::new(params.clone(), device, b)?;
            let per = time(repeats, || {
                s.reset();
                chunks.iter().try_for_each(|c| s.feed(c).map(drop))
            })? / t as f64;
            row(kind, "host", per, whole);
        }
        if let Some(ctx) = ctx {
            let dev = ctx.device();
            let usage = wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST;
            let buffer = |n: usize| {
                dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("application buffer"),
                    size: (n * 4) as u64,
                    usage,
                    mapped_at_creation: false,
                })
            };
            let (x_all, y_all) = (buffer(t * b * i), buffer(t * b * cfg.output_size()));
            ctx.queue()
                .write_buffer(&x_all, 0, bytemuck::cast_slice(x.data()));
            let (x1, y1) = (buffer(b * i), buffer(b * cfg.output_size()));
            ctx.queue()
                .write_buffer(&x1, 0, bytemuck::cast_slice(chunks[0].data()));
            let mut rnn = GpuRnn::new(ctx.clone(), &params)?;
            let whole = time(repeats, || {
                rnn.forward_buffers(None, &x_all, &y_all, t, b)?;
                ctx.wait_idle()
            })? / t as f64;
            let mut s = GpuStream::new(ctx.clone(), &params, b)?;
            let per = time(repeats, || {
                for _ in 0..t {
                    s.feed_buffers(None, &x1, &y1, 1)?;
                    ctx.wait_idle()?;
                }
                Ok(())
            })? / t as f64;
            row("gpu", "resident", per, whole);
        }
    }
    Ok(())
}
