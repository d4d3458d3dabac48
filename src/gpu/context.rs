//! Adapter and device selection, limits, and the pipeline cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::kernels::{self, Kernel};

/// How to choose an adapter. Unset fields fall back to wgpu's environment variables
/// (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`), then to wgpu's defaults.
///
/// # Example
/// ```
/// use wgpu_rnn::gpu::AdapterOptions;
/// let opts = AdapterOptions { backends: Some("vulkan,gl".into()), ..Default::default() };
/// assert!(opts.resolved_backends().contains(wgpu::Backends::GL));
/// ```
#[derive(Debug, Clone, Default)]
pub struct AdapterOptions {
    /// Backends to search, as `WGPU_BACKEND` spells them: `vulkan`, `metal`, `dx12`, `gl`,
    /// comma separated.
    pub backends: Option<String>,
    /// Pick the first adapter whose name contains this (case-insensitive), as
    /// `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
    /// `low`, `high` or `none`, as `WGPU_POWER_PREF`.
    pub power_preference: Option<String>,
}

impl AdapterOptions {
    /// The backends these options select: the field, else `WGPU_BACKEND`, else all.
    pub fn resolved_backends(&self) -> wgpu::Backends {
        match &self.backends {
            Some(s) => wgpu::Backends::from_comma_list(s),
            None => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
        }
    }

    /// Checks that the backend list names at least one backend.
    fn check_backends(&self) -> Result<wgpu::Backends> {
        let b = self.resolved_backends();
        if b.is_empty() {
            let given = self
                .backends
                .clone()
                .or_else(|| std::env::var("WGPU_BACKEND").ok())
                .unwrap_or_default();
            return Err(Error::config(format!(
                "backend: expected a comma-separated list of vulkan, metal, dx12, gl; found {given:?}"
            )));
        }
        Ok(b)
    }

    fn resolved_name(&self) -> Option<String> {
        self.adapter_name
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .filter(|s| !s.is_empty())
    }

    fn resolved_power(&self) -> Result<wgpu::PowerPreference> {
        match self.power_preference.as_deref() {
            None => Ok(wgpu::PowerPreference::from_env().unwrap_or_default()),
            Some("low") => Ok(wgpu::PowerPreference::LowPower),
            Some("high") => Ok(wgpu::PowerPreference::HighPerformance),
            Some("none") => Ok(wgpu::PowerPreference::None),
            Some(other) => Err(Error::config(format!(
                "power preference: expected low, high or none, found {other:?}"
            ))),
        }
    }

    fn instance(&self) -> wgpu::Instance {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = self.resolved_backends();
        wgpu::Instance::new(desc)
    }
}

/// Lists every adapter the selected backends offer.
pub fn list_adapters(opts: &AdapterOptions) -> Vec<wgpu::AdapterInfo> {
    let instance = opts.instance();
    pollster::block_on(instance.enumerate_adapters(opts.resolved_backends()))
        .iter()
        .map(wgpu::Adapter::get_info)
        .collect()
}

/// The limits this engine asks of a device: WebGPU's downlevel defaults, with the storage
/// buffer count our kernels bind, and buffer sizes raised to what the adapter offers so
/// that large models fit. Every value is clamped to the adapter's.
fn required_limits(adapter: &wgpu::Limits) -> Result<wgpu::Limits> {
    let mut want = wgpu::Limits::downlevel_defaults();
    want.max_storage_buffers_per_shader_stage = kernels::MAX_STORAGE_BINDINGS;
    want.max_dynamic_uniform_buffers_per_pipeline_layout = 1;
    want.max_compute_invocations_per_workgroup = kernels::MAX_INVOCATIONS;
    want.max_compute_workgroup_size_x = kernels::MAX_INVOCATIONS;
    // The kernels index f32 elements with u32 and pass offsets in u32 uniforms: cap buffers
    // at 4 GiB - 4 so that every byte offset and element index fits.
    let cap = u32::MAX as u64 - 3;
    want.max_storage_buffer_binding_size = adapter.max_storage_buffer_binding_size.min(cap);
    want.max_buffer_size = adapter.max_buffer_size.min(cap);
    want.max_compute_workgroups_per_dimension = adapter.max_compute_workgroups_per_dimension;
    let mut short = None;
    want.check_limits_with_fail_fn(adapter, true, |name, needed, max| {
        short = Some(Error::Limit {
            what: "device".into(),
            limit: name,
            needed,
            max,
        })
    });
    match short {
        Some(e) => Err(e),
        None => Ok(want),
    }
}

type PipelineCache = HashMap<Kernel, Arc<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>>;

/// An open GPU device: the adapter, device, queue, granted limits and a pipeline cache.
/// Share it between models with `Arc`.
pub struct GpuContext {
    /// The adapter, when this context opened the device (not for [`GpuContext::from_device`]).
    adapter: Option<wgpu::Adapter>,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    pipelines: Mutex<PipelineCache>,
    uncaptured: Arc<Mutex<Option<String>>>,
    fill: usize,
    /// Buffers and bind groups created through this context (see
    /// [`GpuContext::resources_created`]).
    created: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish()
    }
}

impl GpuContext {
    /// Opens a device on the adapter that `opts` selects (see [`AdapterOptions`]).
    ///
    /// # Errors
    /// [`Error::NoAdapter`] with installation advice when nothing matches,
    /// [`Error::Limit`] when the adapter lacks a limit the kernels need,
    /// [`Error::Device`] when the device cannot be opened.
    ///
    /// # Example
    /// ```no_run
    /// use wgpu_rnn::gpu::{AdapterOptions, GpuContext};
    /// let ctx = GpuContext::new(&AdapterOptions::default())?;
    /// println!("running on {}", ctx.adapter_info().name);
    /// # Ok::<(), wgpu_rnn::Error>(())
    /// ```
    pub fn new(opts: &AdapterOptions) -> Result<Arc<Self>> {
        let backends = opts.check_backends()?;
        let instance = opts.instance();
        let name = opts.resolved_name();
        let no_adapter = || Error::NoAdapter {
            backends: format!("{backends:?}"),
            name: name
                .as_ref()
                .map(|n| format!(", name containing {n:?}"))
                .unwrap_or_default(),
        };
        let adapter = match &name {
            Some(n) => {
                let n = n.to_lowercase();
                pollster::block_on(instance.enumerate_adapters(backends))
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&n))
                    .ok_or_else(no_adapter)?
            }
            None => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: opts.resolved_power()?,
                ..Default::default()
            }))
            .map_err(|_| no_adapter())?,
        };
        Self::from_adapter(adapter)
    }

    /// Opens a device on a given adapter.
    ///
    /// # Errors
    /// As [`GpuContext::new`].
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Arc<Self>> {
        let info = adapter.get_info();
        let limits = required_limits(&adapter.limits())?;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgpu-rnn"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Device {
            adapter: info.name.clone(),
            message: e.to_string(),
        })?;
        let uncaptured = Arc::new(Mutex::new(None::<String>));
        let sink = uncaptured.clone();
        // wgpu's default handler panics; keep the first error and report it as Error::Gpu.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        Self::assemble(Some(adapter), device, queue, info, limits, uncaptured)
    }

    /// A context on an application's own device and queue (GPU-resident I/O: the models then
    /// read from and write to the application's buffers, see [`GpuRnn::forward_buffers`]).
    /// The device's granted limits are checked against what the kernels need; the device's
    /// uncaptured-error handler stays the application's (this context installs none), so a
    /// device error reaches it (wgpu's default handler panics) rather than an [`Error::Gpu`].
    ///
    /// # Errors
    /// [`Error::Limit`] naming the first limit the device was created with that is below
    /// the kernels' need (e.g. `max_storage_buffers_per_shader_stage`: 8, where WebGPU's
    /// default is 8 and `downlevel_defaults` 4); request it when creating the device
    /// ([`GpuContext::required_limits`] gives them all).
    ///
    /// [`GpuRnn::forward_buffers`]: crate::gpu::GpuRnn::forward_buffers
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Arc<Self>> {
        let granted = device.limits();
        required_limits(&granted)?;
        let info = device.adapter_info();
        let uncaptured = Arc::new(Mutex::new(None::<String>));
        Self::assemble(None, device, queue, info, granted, uncaptured)
    }

    /// The limits the kernels need from a device on an adapter with `adapter` limits: pass
    /// them as `required_limits` when creating a device for [`GpuContext::from_device`].
    ///
    /// # Errors
    /// [`Error::Limit`] naming the first limit the adapter cannot grant.
    pub fn required_limits(adapter: &wgpu::Limits) -> Result<wgpu::Limits> {
        required_limits(adapter)
    }

    fn assemble(
        adapter: Option<wgpu::Adapter>,
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        limits: wgpu::Limits,
        uncaptured: Arc<Mutex<Option<String>>>,
    ) -> Result<Arc<Self>> {
        // A software adapter (lavapipe, llvmpipe) runs workgroups on the host's few cores, and
        // every split costs it a pass over memory: 4 (measured on lavapipe with 2 cores; a
        // constant, not the core count, so that results do not change with a CPU quota). A
        // real GPU needs a couple of workgroups on each of 100+ compute units (an H200 has
        // 132). WGPU_RNN_FILL_WORKGROUPS overrides the rule, to time one against the other.
        let fill = match std::env::var("WGPU_RNN_FILL_WORKGROUPS").ok() {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&f| f > 0)
                .ok_or_else(|| {
                    Error::config(format!(
                        "WGPU_RNN_FILL_WORKGROUPS: expected a positive integer, found {v:?}"
                    ))
                })?,
            None => match info.device_type {
                wgpu::DeviceType::Cpu => 4,
                _ => 256,
            },
        };
        Ok(Arc::new(GpuContext {
            fill,
            adapter,
            device,
            queue,
            info,
            limits,
            pipelines: Mutex::new(HashMap::new()),
            uncaptured,
            created: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The wgpu device (the application's, for a context from [`GpuContext::from_device`]):
    /// for creating buffers that [`crate::gpu::GpuRnn::forward_buffers`] and
    /// [`crate::gpu::GpuStream::feed_buffers`] read and write.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Waits until everything submitted to the queue has finished.
    ///
    /// # Errors
    /// [`Error::Gpu`] when the device fails.
    pub fn wait_idle(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(drop)
            .map_err(|e| Error::Gpu {
                context: "waiting for the queue".into(),
                message: e.to_string(),
            })?;
        self.take_error("waiting for the queue")
    }

    /// Buffers and bind groups created through this context so far, by every model and
    /// stream on it: a pass that allocates nothing leaves it unchanged.
    pub fn resources_created(&self) -> u64 {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts one buffer or bind group creation.
    pub(crate) fn count_creation(&self) {
        self.created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The workgroups a dispatch should have to keep this adapter busy: 4 on a software
    /// adapter, 256 on a GPU, or the value of `WGPU_RNN_FILL_WORKGROUPS`. A reduction whose
    /// output has fewer tiles than this is split across workgroups, up to this many in all
    /// (fewer when the reduction is short); results are bit-identical run after run on one
    /// adapter with one value.
    pub fn fill_workgroups(&self) -> usize {
        self.fill
    }

    /// The adapter's name, vendor, backend and driver.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The limits granted to this device (what the kernels are sized against).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The adapter's own (maximum) limits; for a context on an application's device
    /// ([`GpuContext::from_device`]), the device's.
    pub fn adapter_limits(&self) -> wgpu::Limits {
        match &self.adapter {
            Some(a) => a.limits(),
            None => self.device.limits(),
        }
    }

    /// The adapter's features; for a context on an application's device, the device's.
    pub fn adapter_features(&self) -> wgpu::Features {
        match &self.adapter {
            Some(a) => a.features(),
            None => self.device.features(),
        }
    }

    /// A one-line description: `name (backend, device type)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// The compute pipeline and bind group layout of `kernel`, created on first use.
    pub(crate) fn pipeline(
        &self,
        kernel: Kernel,
    ) -> Result<Arc<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&kernel) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let built = kernels::build_pipeline(&self.device, kernel);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                context: format!("creating pipeline {kernel:?}"),
                message: e.to_string(),
            });
        }
        let built = Arc::new(built);
        cache.insert(kernel, built.clone());
        Ok(built)
    }

    /// Checks that a buffer of `bytes` can be bound as storage on this device.
    ///
    /// # Errors
    /// [`Error::Limit`] naming `what` and the limit exceeded.
    pub fn check_buffer(&self, what: &str, bytes: u64) -> Result<()> {
        for (limit, max) in [
            (
                "max_storage_buffer_binding_size",
                self.limits.max_storage_buffer_binding_size,
            ),
            ("max_buffer_size", self.limits.max_buffer_size),
        ] {
            if bytes > max {
                return Err(Error::Limit {
                    what: format!("buffer {what}"),
                    limit,
                    needed: bytes,
                    max,
                });
            }
        }
        Ok(())
    }

    /// Checks a dispatch's workgroup counts against `max_compute_workgroups_per_dimension`.
    ///
    /// # Errors
    /// [`Error::Limit`] naming `what`.
    pub fn check_dispatch(&self, what: &str, groups: [u32; 3]) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        match groups.iter().find(|&&g| g > max) {
            Some(&g) => Err(Error::Limit {
                what: format!("dispatch {what}"),
                limit: "max_compute_workgroups_per_dimension",
                needed: g as u64,
                max: max as u64,
            }),
            None => Ok(()),
        }
    }

    /// Takes the first uncaptured device error since the last call, if any.
    pub(crate) fn take_error(&self, context: &str) -> Result<()> {
        let mut slot = self.uncaptured.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(message) => Err(Error::Gpu {
                context: context.into(),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Blocks until the queue has finished submission `index`.
    fn wait(&self, index: wgpu::SubmissionIndex, context: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map(drop)
            .map_err(|e| Error::Gpu {
                context: context.into(),
                message: e.to_string(),
            })
    }

    /// Submits `encoder` and waits until the queue has finished it.
    pub(crate) fn submit_wait(&self, encoder: wgpu::CommandEncoder, context: &str) -> Result<()> {
        let index = self.queue.submit([encoder.finish()]);
        self.wait(index, context)?;
        self.take_error(context)
    }

    /// Submits `encoder` with a copy of each `(src, staging, bytes)` into its host-readable
    /// staging buffer, waits for the GPU, and returns the staging buffers' contents.
    pub(crate) fn read_buffers(
        &self,
        encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, &wgpu::Buffer, u64)],
        context: &str,
    ) -> Result<Vec<Vec<f32>>> {
        let mut encoder = encoder;
        for (src, staging, bytes) in reads {
            encoder.copy_buffer_to_buffer(src, 0, staging, 0, *bytes);
        }
        let index = self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, (_, staging, bytes)) in reads.iter().enumerate() {
            let tx = tx.clone();
            staging
                .slice(..*bytes)
                .map_async(wgpu::MapMode::Read, move |r| {
                    let _ = tx.send((i, r));
                });
        }
        drop(tx);
        self.wait(index, context)?;
        let mut mapped = vec![false; reads.len()];
        let mut failure = None;
        for (i, r) in rx.iter() {
            match r {
                Ok(()) => mapped[i] = true,
                Err(e) => {
                    failure.get_or_insert(Error::Gpu {
                        context: format!("{context}: mapping readback buffer {i}"),
                        message: e.to_string(),
                    });
                }
            }
        }
        let mut out = Vec::with_capacity(reads.len());
        for ((_, staging, bytes), ok) in reads.iter().zip(&mapped) {
            if !ok {
                continue;
            }
            if failure.is_none() {
                match staging.slice(..*bytes).get_mapped_range() {
                    Ok(view) => out.push(bytemuck::cast_slice::<u8, f32>(&view).to_vec()),
                    Err(e) => {
                        failure = Some(Error::Gpu {
                            context: format!("{context}: reading mapped buffer"),
                            message: e.to_string(),
                        })
                    }
                }
            }
            // Unmapped on every path, so that a failed read never blocks the next one.
            staging.unmap();
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.take_error(context)?;
        Ok(out)
    }
}
