//! GPU-resident streaming: an application's compute shader produces each frame's input on the
//! GPU, a wgpu-rnn stream reads it from the application's buffer and writes its output into
//! another of the application's buffers, and a second shader of the application consumes the
//! output, all recorded into the application's own command encoder, frame after frame, with
//! the recurrent state resident on the device. Nothing goes through the host until the end,
//! when the application reads its own result back once (and checks it against the host path).
//!
//!     cargo run --release --example gpu_resident

use wgpu::util::DeviceExt;
use wgpu_rnn::gpu::{GpuContext, GpuStream};
use wgpu_rnn::{Cell, Device, RnnConfig, RnnParams, Stream, Tensor};

/// The application's shaders: `produce` writes frame `frame`'s input `[B, I]`, `consume` adds
/// each row's mean output of the frame to `score[b]`.
const APP_WGSL: &str = "
struct Frame { index: u32, batch: u32, features: u32, hidden: u32 }
@group(0) @binding(0) var<uniform> frame: Frame;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> score: array<f32>;

@compute @workgroup_size(64)
fn produce(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x < frame.batch * frame.features) {
        let b = f32(g.x / frame.features);
        let k = f32(g.x % frame.features);
        x[g.x] = sin(0.3 * f32(frame.index) + 0.7 * k + b);
    }
}

@compute @workgroup_size(64)
fn consume(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x < frame.batch) {
        var s = 0.0;
        for (var j = 0u; j < frame.hidden; j++) {
            s += y[g.x * frame.hidden + j];
        }
        score[g.x] += s / f32(frame.hidden);
    }
}
";

fn main() -> wgpu_rnn::Result<()> {
    // The application's device, created with the limits the kernels need.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .map_err(|e| wgpu_rnn::Error::config(format!("no adapter: {e}")))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: GpuContext::required_limits(&adapter.limits())?,
        ..Default::default()
    }))
    .map_err(|e| wgpu_rnn::Error::config(format!("no device: {e}")))?;
    let ctx = GpuContext::from_device(device.clone(), queue.clone())?;

    // A GRU of 4 features and 32 hidden units, 3 streams (batch rows) at once.
    let (b, i, h, frames) = (3usize, 4usize, 32usize, 50u32);
    let params = RnnParams::random(RnnConfig::new(Cell::Gru, i, h), 7);
    let mut stream = GpuStream::new(ctx.clone(), &params, b)?;

    // The application's buffers and pipelines.
    let storage = |label: &str, n: usize, extra: wgpu::BufferUsages| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (n * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | extra,
            mapped_at_creation: false,
        })
    };
    let x = storage("x", b * i, wgpu::BufferUsages::COPY_SRC);
    let y = storage("y", b * h, wgpu::BufferUsages::COPY_DST);
    let score = storage("score", b, wgpu::BufferUsages::COPY_SRC);
    let frame = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("frame"),
        contents: bytemuck::cast_slice(&[0u32, b as u32, i as u32, h as u32]),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    });
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("application"),
        source: wgpu::ShaderSource::Wgsl(APP_WGSL.into()),
    });
    let pipeline = |entry: &str| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        })
    };
    let (produce, consume) = (pipeline("produce"), pipeline("consume"));
    let bind = |p: &wgpu::ComputePipeline, buffers: &[(u32, &wgpu::Buffer)]| {
        let entries: Vec<_> = buffers
            .iter()
            .map(|(k, buf)| wgpu::BindGroupEntry {
                binding: *k,
                resource: buf.as_entire_binding(),
            })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &p.get_bind_group_layout(0),
            entries: &entries,
        })
    };
    let produce_bind = bind(&produce, &[(0, &frame), (1, &x)]);
    let consume_bind = bind(&consume, &[(0, &frame), (2, &y), (3, &score)]);

    for k in 0..frames {
        queue.write_buffer(&frame, 0, bytemuck::bytes_of(&k));
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&produce);
            pass.set_bind_group(0, &produce_bind, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        // One step of the stream: reads x, writes y, the state stays on the device.
        stream.feed_buffers(Some(&mut enc), &x, &y, 1)?;
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&consume);
            pass.set_bind_group(0, &consume_bind, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        queue.submit([enc.finish()]);
    }

    // The application reads its own result back, once.
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("score readback"),
        size: (b * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(&score, 0, &staging, 0, Some((b * 4) as u64));
    queue.submit([enc.finish()]);
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| wgpu_rnn::Error::config(format!("poll: {e}")))?;
    let got: Vec<f32> =
        bytemuck::cast_slice(&staging.slice(..).get_mapped_range().expect("mapped")).to_vec();

    // The same on the host: the inputs computed on the CPU, a CPU stream, the same score.
    let mut host = Stream::new(params, &Device::Cpu, b)?;
    let mut want = vec![0.0f32; b];
    for k in 0..frames {
        let frame: Vec<f32> = (0..b * i)
            .map(|n| (0.3 * k as f32 + 0.7 * (n % i) as f32 + (n / i) as f32).sin())
            .collect();
        let y = host.feed(&Tensor::new(vec![b, i], frame)?)?;
        for (row, s) in want.iter_mut().enumerate() {
            *s += y.data()[row * h..(row + 1) * h].iter().sum::<f32>() / h as f32;
        }
    }
    println!(
        "{frames} frames of {b} streams through a GRU (H = {h}) on {}, input and output in the \
         application's buffers:",
        ctx.describe()
    );
    for row in 0..b {
        println!(
            "  stream {row}: score {:+.5} on the GPU, {:+.5} on the host",
            got[row], want[row]
        );
    }
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if worst > 1e-3 {
        return Err(wgpu_rnn::Error::config(format!(
            "GPU-resident and host scores differ by {worst}"
        )));
    }
    Ok(())
}
