//! Streaming inference: a sequence fed in chunks equals one forward pass, on both devices, for
//! every cell with and without a projection; resets, state reads and writes; nothing allocated
//! per chunk on the GPU; GPU-resident I/O from an application's own device and buffers.

mod common;

use wgpu::util::DeviceExt;
use wgpu_rnn::gpu::{AdapterOptions, GpuContext, GpuRnn, GpuStream};
use wgpu_rnn::train::{SeqModel, Task, series};
use wgpu_rnn::{Cell, Device, Error, Rnn, RnnConfig, RnnParams, State, Stream, Tensor};

fn devices() -> [Device; 2] {
    [Device::Cpu, Device::Gpu(common::gpu())]
}

/// Every cell, two layers, and a projected LSTM.
fn configs() -> Vec<RnnConfig> {
    let mut all: Vec<RnnConfig> = Cell::ALL
        .iter()
        .map(|&c| RnnConfig::new(c, 3, 9).layers(2))
        .collect();
    all.push(RnnConfig::new(Cell::Lstm, 3, 9).proj_size(4).layers(2));
    all
}

/// Steps `a..b` of a `[T, B, F]` tensor.
fn steps(x: &Tensor, a: usize, b: usize) -> Tensor {
    let s = x.shape();
    let row = s[1] * s[2];
    Tensor::new(vec![b - a, s[1], s[2]], x.data()[a * row..b * row].to_vec()).unwrap()
}

/// Concatenates `[t_k, B, F]` tensors along time.
fn concat(parts: &[Tensor]) -> Tensor {
    let s = parts[0].shape();
    let t: usize = parts.iter().map(|p| p.shape()[0]).sum();
    let data = parts.iter().flat_map(|p| p.data().to_vec()).collect();
    Tensor::new(vec![t, s[1], s[2]], data).unwrap()
}

#[test]
fn chunks_of_any_length_equal_one_forward_pass() {
    let (t, b) = (15, 3);
    for device in devices() {
        for (n, cfg) in configs().into_iter().enumerate() {
            let params = RnnParams::random(cfg, 10 + n as u64);
            let x = common::random::<f32>(&[t, b, 3], 1.0, 20 + n as u64);
            let ld = cfg.num_layers;
            let h0 = common::random::<f32>(&[ld, b, cfg.real_hidden_size()], 0.5, 30);
            let c0 = cfg
                .cell
                .spec()
                .has_cell_state()
                .then(|| common::random::<f32>(&[ld, b, cfg.hidden_size], 0.5, 31));
            let state = State {
                h: Some(&h0),
                c: c0.as_ref(),
            };
            let mut rnn = Rnn::new(params.clone(), &device).unwrap();
            let want = rnn.forward(&x, state).unwrap();
            for chunk in [1, 7, t] {
                let what = format!(
                    "{} (proj {}) in chunks of {chunk} on {}",
                    cfg.cell,
                    cfg.proj_size,
                    device.describe()
                );
                let mut stream = rnn.stream(b).unwrap();
                stream.set_state(state).unwrap();
                let parts: Vec<Tensor> = (0..t)
                    .step_by(chunk)
                    .map(|a| stream.feed(&steps(&x, a, (a + chunk).min(t))).unwrap())
                    .collect();
                common::assert_close(
                    &format!("{what}: output"),
                    &concat(&parts),
                    &want.output,
                    1e-6,
                );
                let (h, c) = stream.state().unwrap();
                common::assert_close(&format!("{what}: h_n"), &h, &want.h_n, 1e-6);
                match (&c, &want.c_n) {
                    (Some(c), Some(w)) => common::assert_close(&format!("{what}: c_n"), c, w, 1e-6),
                    (None, None) => {}
                    other => panic!("{what}: c_n {other:?}"),
                }
            }
            // One step as [B, I] is a chunk of one.
            let mut stream = Stream::new(params, &device, b).unwrap();
            let y = stream.feed(&Tensor::new(vec![b, 3], steps(&x, 0, 1).data().to_vec()).unwrap());
            let y = y.unwrap();
            assert_eq!(y.shape(), &[b, cfg.real_hidden_size()]);
        }
    }
}

/// Every element of `got` within `tol` of `want`.
#[track_caller]
fn assert_within(got: &[f32], want: &[f32], tol: f32, what: &str) {
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < tol, "{what}: {got:?} vs {want:?}");
}

/// A reset row restarts from zeros while the other rows continue as if nothing happened.
#[test]
fn a_reset_row_restarts_from_zeros() {
    let (t, b) = (8, 3);
    for device in devices() {
        for (n, cfg) in configs().into_iter().enumerate() {
            let params = RnnParams::random(cfg, 40 + n as u64);
            let x = common::random::<f32>(&[t, b, 3], 1.0, 50 + n as u64);
            let what = format!(
                "{} (proj {}) on {}",
                cfg.cell,
                cfg.proj_size,
                device.describe()
            );
            let mut rnn = Rnn::new(params.clone(), &device).unwrap();
            let whole = rnn.forward(&x, None).unwrap();
            let tail = rnn.forward(&steps(&x, 5, t), None).unwrap();
            let mut stream = Stream::new(params, &device, b).unwrap();
            let first = stream.feed(&steps(&x, 0, 5)).unwrap();
            stream.reset_rows(&[1]).unwrap();
            let rest = stream.feed(&steps(&x, 5, t)).unwrap();
            let r = cfg.real_hidden_size();
            let got = concat(&[first, rest.clone()]);
            // To rounding: the CPU's GEMMs may take other kernels for other row counts.
            for bi in [0, 2] {
                for s in 0..t {
                    let at = (s * b + bi) * r;
                    let (g, w) = (&got.data()[at..at + r], &whole.output.data()[at..at + r]);
                    let what = format!("{what}: row {bi} step {s} continues");
                    assert_within(g, w, 1e-6, &what);
                }
            }
            for s in 0..t - 5 {
                let at = (s * b + 1) * r;
                let (g, w) = (&rest.data()[at..at + r], &tail.output.data()[at..at + r]);
                assert_within(
                    g,
                    w,
                    1e-5,
                    &format!("{what}: row 1 step {s} after the reset"),
                );
            }
            // A full reset gives zeros; a bad row is an error naming rows.
            stream.reset();
            let (h, c) = stream.state().unwrap();
            assert!(
                h.data()
                    .iter()
                    .chain(c.iter().flat_map(|c| c.data()))
                    .all(|&v| v == 0.0)
            );
            let err = stream.reset_rows(&[0, b]).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err:?}");
            common::assert_msg(&err, &["rows[1]", "found 3"]);
        }
    }
}

/// After the first chunk of each length, feeding allocates no buffer and no bind group.
#[test]
fn chunks_allocate_nothing_after_the_first() {
    let ctx = GpuContext::new(&AdapterOptions::default()).unwrap();
    let cfg = RnnConfig::new(Cell::Lstm, 4, 16).proj_size(5).layers(2);
    let mut stream = GpuStream::new(ctx.clone(), &RnnParams::random(cfg, 1), 2).unwrap();
    let one = common::random::<f32>(&[1, 2, 4], 1.0, 2);
    let four = common::random::<f32>(&[4, 2, 4], 1.0, 3);
    stream.feed(&one).unwrap();
    stream.feed(&four).unwrap();
    let before = ctx.resources_created();
    for k in 0..100 {
        stream.feed(if k % 3 == 0 { &four } else { &one }).unwrap();
        if k % 10 == 0 {
            stream.reset_rows(&[1]).unwrap();
        }
    }
    stream.state().unwrap();
    assert_eq!(
        ctx.resources_created(),
        before,
        "buffers or bind groups created over 100 chunks"
    );
}

#[test]
fn bidirectional_models_and_bad_chunks_are_errors() {
    for device in devices() {
        let cfg = RnnConfig::new(Cell::Gru, 3, 4).bidirectional(true);
        let err = Stream::new(RnnParams::random(cfg, 1), &device, 2)
            .err()
            .unwrap();
        common::assert_msg(&err, &["bidirectional", "future"]);
        let cfg = RnnConfig::new(Cell::Gru, 3, 4);
        let mut s = Stream::new(RnnParams::random(cfg, 1), &device, 2).unwrap();
        for bad in [vec![2, 3, 3], vec![2, 2, 4], vec![0, 2, 3], vec![3, 3]] {
            let err = s.feed(&Tensor::zeros(&bad)).unwrap_err();
            assert!(
                matches!(&err, Error::Shape { name, .. } if name == "input"),
                "{bad:?}: {err:?}"
            );
        }
        let err = s.set_state(&Tensor::zeros(&[1, 2, 5])).unwrap_err();
        assert!(
            matches!(&err, Error::Shape { name, .. } if name == "h0"),
            "{err:?}"
        );
        assert!(Stream::new(RnnParams::random(cfg, 1), &device, 0).is_err());
    }
}

/// An application's own device and queue, with the limits the kernels need.
fn app_device() -> (wgpu::Device, wgpu::Queue) {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .expect("an adapter");
    let limits = GpuContext::required_limits(&adapter.limits()).unwrap();
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits,
        ..Default::default()
    }))
    .unwrap()
}

/// Reads `n` f32 of `buffer` (which needs COPY_SRC) back to the host.
fn read(device: &wgpu::Device, queue: &wgpu::Queue, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (n * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, Some((n * 4) as u64));
    queue.submit([enc.finish()]);
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let out = bytemuck::cast_slice(&staging.slice(..).get_mapped_range().unwrap()).to_vec();
    staging.unmap();
    out
}

/// GPU-resident I/O: the application's compute shader writes the input into its buffer, the
/// model reads it and writes its output into another of the application's buffers, all in
/// the application's command encoder; the result equals the host path. A stream does the
/// same chunk by chunk.
#[test]
fn gpu_resident_io_equals_the_host_path() {
    let (device, queue) = app_device();
    let ctx = GpuContext::from_device(device.clone(), queue.clone()).unwrap();
    let (t, b, i) = (6, 2, 3);
    let cfg = RnnConfig::new(Cell::Lstm, i, 10).proj_size(4);
    let params = RnnParams::random(cfg, 7);
    let n_in = t * b * i;
    let n_out = t * b * cfg.output_size();
    // The application's input: x[k] = sin(0.37 k), written by its own compute shader.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("app producer"),
        source: wgpu::ShaderSource::Wgsl(
            "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
             @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
                 if (g.x < arrayLength(&x)) { x[g.x] = sin(0.37 * f32(g.x)); }
             }"
            .into(),
        ),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let input = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app input"),
        size: (n_in * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let output = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("app output"),
        contents: bytemuck::cast_slice(&vec![f32::NAN; n_out]),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: input.as_entire_binding(),
        }],
    });
    let host_x = Tensor::new(
        vec![t, b, i],
        (0..n_in).map(|k| (0.37 * k as f32).sin()).collect(),
    )
    .unwrap();
    let want = Rnn::new(params.clone(), &Device::Gpu(ctx.clone()))
        .unwrap()
        .forward(&host_x, None)
        .unwrap();

    let mut rnn = GpuRnn::new(ctx.clone(), &params).unwrap();
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups((n_in as u32).div_ceil(64), 1, 1);
    }
    rnn.forward_buffers(Some(&mut enc), &input, &output, t, b)
        .unwrap();
    queue.submit([enc.finish()]);
    let got = Tensor::new(
        want.output.shape().to_vec(),
        read(&device, &queue, &output, n_out),
    )
    .unwrap();
    common::assert_close("forward_buffers", &got, &want.output, 1e-6);

    // The same chunk by chunk through a stream, each chunk's output at its own offset.
    let mut stream = GpuStream::new(ctx.clone(), &params, b).unwrap();
    let per = b * cfg.output_size();
    let mut got = Vec::new();
    for s in 0..t {
        let x1 = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&host_x.data()[s * b * i..(s + 1) * b * i]),
            usage: wgpu::BufferUsages::COPY_SRC,
        });
        let y1 = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (per * 4) as u64,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        stream.feed_buffers(None, &x1, &y1, 1).unwrap();
        got.extend(read(&device, &queue, &y1, per));
    }
    let got = Tensor::new(want.output.shape().to_vec(), got).unwrap();
    common::assert_close("feed_buffers", &got, &want.output, 1e-6);

    // Buffers too small or without the copy usage are errors naming them.
    let small = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 8,
        usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let err = rnn
        .forward_buffers(None, &small, &output, t, b)
        .unwrap_err();
    common::assert_msg(&err, &["input", "at least"]);
    let err = rnn.forward_buffers(None, &input, &input, t, b).unwrap_err();
    common::assert_msg(&err, &["output"]);
}

/// An application device created without a limit the kernels need is refused, naming it.
#[test]
fn an_app_device_lacking_a_limit_is_an_error_naming_it() {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .expect("an adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: wgpu::Limits::downlevel_defaults(),
        ..Default::default()
    }))
    .unwrap();
    let err = GpuContext::from_device(device, queue).unwrap_err();
    assert!(matches!(err, Error::Limit { .. }), "{err:?}");
    common::assert_msg(&err, &["max_storage_buffers_per_shader_stage"]);
}

/// `forecast` rolls a regression model past its history: the first value is the one-step
/// prediction after the history, the next ones the predictions with each fed back.
#[test]
fn the_forecast_starts_with_the_one_step_prediction() {
    let hist: Vec<f32> = (0..40).map(|k| (0.3 * k as f32).sin()).collect();
    for device in devices() {
        for cfg in [
            RnnConfig::new(Cell::Lstm, 1, 8),
            RnnConfig::new(Cell::Gru, 1, 8).layers(2),
            RnnConfig::new(Cell::Lstm, 1, 8).proj_size(3),
        ] {
            let model = SeqModel::new(cfg, Task::Regression { outputs: 1 }, 3).unwrap();
            let preds = series::forecast(&model, &hist, 3, &device).unwrap();
            let mut rnn = Rnn::new(model.rnn.clone(), &device).unwrap();
            let mut fed = hist.clone();
            for (k, &p) in preds.iter().enumerate() {
                let x = Tensor::new(vec![fed.len(), 1, 1], fed.clone()).unwrap();
                let z = model.head(&rnn.forward(&x, None).unwrap().output);
                let want = *z.last().unwrap();
                assert!(
                    (p - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{} on {}: step {k}: forecast {p}, forward {want}",
                    cfg.cell,
                    device.describe()
                );
                fed.push(p);
            }
        }
    }
    let tokens = SeqModel::new(
        RnnConfig::new(Cell::Gru, 5, 4),
        Task::Tokens { vocab: 5 },
        1,
    );
    let err = series::forecast(&tokens.unwrap(), &hist, 2, &Device::Cpu).unwrap_err();
    common::assert_msg(&err, &["forecast", "one input and one output"]);
}

/// Work recorded into an application's encoder keeps its meaning whatever the host does before
/// the submit: a `forward_lengths` with short rows does not shorten the recorded pass, and a
/// `set_state` made after a recorded chunk applies after it. More chunk lengths than a stream
/// keeps workspaces for still give the whole pass's numbers.
#[test]
fn recorded_work_and_state_changes_keep_their_order() {
    let (device, queue) = app_device();
    let ctx = GpuContext::from_device(device.clone(), queue.clone()).unwrap();
    let (t, b, i) = (5, 3, 2);
    let cfg = RnnConfig::new(Cell::RnnTanh, i, 6);
    let params = RnnParams::random(cfg, 9);
    let x = common::random::<f32>(&[t, b, i], 1.0, 10);
    let want = Rnn::new(params.clone(), &Device::Gpu(ctx.clone()))
        .unwrap()
        .forward(&x, None)
        .unwrap();
    let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let input = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(x.data()),
        usage,
    });
    let n_out = t * b * cfg.output_size();
    let output = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (n_out * 4) as u64,
        usage,
        mapped_at_creation: false,
    });
    let mut rnn = GpuRnn::new(ctx.clone(), &params).unwrap();
    let mut enc = device.create_command_encoder(&Default::default());
    rnn.forward_buffers(Some(&mut enc), &input, &output, t, b)
        .unwrap();
    rnn.forward_lengths(&x, None, Some(&[1, 2, 1])).unwrap();
    queue.submit([enc.finish()]);
    let got = Tensor::new(vec![t, b, 6], read(&device, &queue, &output, n_out)).unwrap();
    common::assert_close(
        "forward_buffers, then a short forward_lengths",
        &got,
        &want.output,
        1e-6,
    );

    let mut stream = GpuStream::new(ctx.clone(), &params, b).unwrap();
    let per = b * cfg.output_size();
    let y1 = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (per * 4) as u64,
        usage,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    stream.feed_buffers(Some(&mut enc), &input, &y1, 1).unwrap();
    let h = common::random::<f32>(&[1, b, 6], 0.5, 11);
    stream.set_state(State::from(&h)).unwrap();
    queue.submit([enc.finish()]);
    let (got_h, _) = stream.state().unwrap();
    assert_eq!(
        got_h, h,
        "a state set after a recorded chunk applies after it"
    );

    // Chunk lengths 1..=10 (more than MAX_CHUNK_LENGTHS), then back to the first ones.
    let long = common::random::<f32>(&[70, b, i], 1.0, 12);
    let want = Rnn::new(params.clone(), &Device::Gpu(ctx.clone()))
        .unwrap()
        .forward(&long, None)
        .unwrap();
    let mut stream = GpuStream::new(ctx.clone(), &params, b).unwrap();
    let mut parts = Vec::new();
    let mut at = 0;
    for len in (1..=10).chain(1..=5) {
        parts.push(stream.feed(&steps(&long, at, at + len)).unwrap());
        at += len;
    }
    assert_eq!(at, 70);
    common::assert_close(
        "lengths past the workspace cap",
        &concat(&parts),
        &want.output,
        1e-6,
    );
}
