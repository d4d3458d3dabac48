//! Ops as data: a dispatch is a pipeline, a bind group, dynamic offsets and workgroup counts,
//! recorded once per shape and replayed into one compute pass per submit.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{ColSumDims, GemmParams, Kernel};

pub(crate) struct Op {
    kernel: Kernel,
    pipeline: Arc<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    bind_group: wgpu::BindGroup,
    offsets: Vec<u32>,
    groups: [u32; 3],
}

impl Op {
    /// Builds the op, binding `buffers` in order (binding 0, 1, ...).
    pub(crate) fn new(
        ctx: &GpuContext,
        kernel: Kernel,
        buffers: &[wgpu::BindingResource<'_>],
        groups: [u32; 3],
    ) -> Result<Self> {
        ctx.check_dispatch(&format!("{kernel:?}"), groups)?;
        let pipeline = ctx.pipeline(kernel)?;
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&format!("{kernel:?}")),
            layout: &pipeline.1,
            entries: &entries,
        });
        Ok(Op {
            kernel,
            pipeline,
            bind_group,
            offsets: Vec::new(),
            groups,
        })
    }

    /// The same op dispatched with other dynamic offsets and counts (shares the bind group).
    pub(crate) fn with_offsets(&self, offsets: Vec<u32>, groups: [u32; 3]) -> Op {
        Op {
            kernel: self.kernel,
            pipeline: self.pipeline.clone(),
            bind_group: self.bind_group.clone(),
            offsets,
            groups,
        }
    }
}

/// Records `ops` into one compute pass of `encoder`.
pub(crate) fn encode(encoder: &mut wgpu::CommandEncoder, ops: &[Op]) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("wgpu-rnn"),
        timestamp_writes: None,
    });
    for op in ops {
        pass.set_pipeline(&op.pipeline.0);
        pass.set_bind_group(0, &op.bind_group, &op.offsets);
        let [x, y, z] = op.groups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// The time one kind of dispatch takes per pass, from [`crate::gpu::GpuTrainer::profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// The kernel (see [`Kernel`]).
    pub kernel: Kernel,
    /// Its workgroup counts (x, y, z): dispatches of one kernel at different sizes are
    /// separate entries.
    pub groups: [u32; 3],
    /// How many such dispatches one pass records.
    pub dispatches: usize,
    /// Their total time per pass, in milliseconds (each dispatch timed in isolation).
    pub ms: f64,
}

/// Times every op of `passes` in isolation: each op is dispatched `repeats` times in one
/// compute pass and one submit, and waited for; its time is the wall time ÷ `repeats`.
/// Ops of the same kernel and workgroup counts are summed into one entry, in first-seen
/// order. The ops read and write their real buffers, so the state they touch is garbage
/// afterwards.
pub(crate) fn profile(
    ctx: &GpuContext,
    passes: &[&[Op]],
    repeats: usize,
) -> Result<Vec<KernelTime>> {
    let repeats = repeats.max(1);
    let mut out: Vec<KernelTime> = Vec::new();
    for op in passes.iter().flat_map(|p| p.iter()) {
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("profile"),
            });
        let copies: Vec<Op> = (0..repeats)
            .map(|_| op.with_offsets(op.offsets.clone(), op.groups))
            .collect();
        encode(&mut encoder, &copies);
        let start = std::time::Instant::now();
        let index = ctx.queue.submit([encoder.finish()]);
        ctx.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::Gpu {
                context: format!("profiling {:?}", op.kernel),
                message: e.to_string(),
            })?;
        let ms = start.elapsed().as_secs_f64() * 1e3 / repeats as f64;
        ctx.take_error(&format!("profiling {:?}", op.kernel))?;
        match out
            .iter_mut()
            .find(|k| k.kernel == op.kernel && k.groups == op.groups)
        {
            Some(k) => {
                k.dispatches += 1;
                k.ms += ms;
            }
            None => out.push(KernelTime {
                kernel: op.kernel,
                groups: op.groups,
                dispatches: 1,
                ms,
            }),
        }
    }
    Ok(out)
}

/// A storage buffer of `len` f32 elements (at least one, as wgpu requires).
pub(crate) fn storage(
    ctx: &GpuContext,
    label: &str,
    len: usize,
    extra: wgpu::BufferUsages,
) -> Result<wgpu::Buffer> {
    let bytes = (len.max(1) * 4) as u64;
    ctx.check_buffer(label, bytes)?;
    Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    }))
}

/// A storage buffer holding `data`.
pub(crate) fn upload(ctx: &GpuContext, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
    let bytes = (data.len().max(1) * 4) as u64;
    ctx.check_buffer(label, bytes)?;
    let contents: &[u8] = if data.is_empty() {
        &[0; 4]
    } else {
        bytemuck::cast_slice(data)
    };
    Ok(ctx
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
        }))
}

/// A uniform buffer holding `bytes`.
pub(crate) fn uniform(ctx: &GpuContext, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
}

/// A host-readable staging buffer of `len` f32 elements.
pub(crate) fn staging(ctx: &GpuContext, label: &str, len: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (len.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// The operands of one GEMM, `C(m, n) ← α·Σ_k A(m, k)·B(k, n) (+ bias(n)) (+ C(m, n))`, with
/// `A(m, k) = a[a_off + m·a_rs + k·a_cs]`, `B(k, n) = b[b_off + k·b_rs + n·b_cs]`,
/// `C(m, n) = c[c_off + m·c_rs + n]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmSpec {
    /// Rows of `C`.
    pub m: usize,
    /// Columns of `C`.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Offset of `A(0, 0)`.
    pub a_off: usize,
    /// Row stride of `A`.
    pub a_rs: usize,
    /// Column stride of `A`.
    pub a_cs: usize,
    /// Offset of `B(0, 0)`.
    pub b_off: usize,
    /// Row stride of `B`.
    pub b_rs: usize,
    /// Column stride of `B`.
    pub b_cs: usize,
    /// Offset of `C(0, 0)`.
    pub c_off: usize,
    /// Row stride of `C`.
    pub c_rs: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Whether to add the old `C` (β = 1) rather than overwrite it (β = 0, `C` not read).
    pub accumulate: bool,
}

impl GemmSpec {
    /// Contiguous row-major `A[m, k]·B[k, n]` into `C[m, n]`.
    pub fn row_major(m: usize, n: usize, k: usize) -> Self {
        GemmSpec {
            m,
            n,
            k,
            a_off: 0,
            a_rs: k,
            a_cs: 1,
            b_off: 0,
            b_rs: n,
            b_cs: 1,
            c_off: 0,
            c_rs: n,
            alpha: 1.0,
            accumulate: false,
        }
    }

    /// `A[m, k]·Wᵀ` for a row-major `W[n, k]` (the layout of PyTorch's weights).
    pub fn a_bt(m: usize, n: usize, k: usize) -> Self {
        GemmSpec {
            b_rs: 1,
            b_cs: k,
            ..Self::row_major(m, n, k)
        }
    }

    pub(crate) fn params(&self, bias: bool) -> Result<GemmParams> {
        let u = |name: &str, v: usize| index_u32(&format!("gemm {name}"), v);
        Ok(GemmParams {
            m: u("m", self.m)?,
            n: u("n", self.n)?,
            k: u("k", self.k)?,
            flags: if bias { GemmParams::FLAG_BIAS } else { 0 }
                | if self.accumulate {
                    GemmParams::FLAG_ACCUMULATE
                } else {
                    0
                },
            a_off: u("a_off", self.a_off)?,
            a_rs: u("a_rs", self.a_rs)?,
            a_cs: u("a_cs", self.a_cs)?,
            b_off: u("b_off", self.b_off)?,
            b_rs: u("b_rs", self.b_rs)?,
            b_cs: u("b_cs", self.b_cs)?,
            c_off: u("c_off", self.c_off)?,
            c_rs: u("c_rs", self.c_rs)?,
            alpha: self.alpha,
            ..Default::default()
        })
    }

    fn span(off: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            off + (rows - 1) * rs + (cols - 1) * cs + 1
        }
    }

    /// Checks that the operands are long enough for the spec.
    fn check(&self, a: usize, b: usize, bias: Option<usize>, c: usize) -> Result<()> {
        let need = [
            (
                "a",
                Self::span(self.a_off, self.m, self.k, self.a_rs, self.a_cs),
                a,
            ),
            (
                "b",
                Self::span(self.b_off, self.k, self.n, self.b_rs, self.b_cs),
                b,
            ),
            ("c", Self::span(self.c_off, self.m, self.n, self.c_rs, 1), c),
            (
                "bias",
                if bias.is_some() { self.n } else { 0 },
                bias.unwrap_or(0),
            ),
        ];
        for (name, needed, found) in need {
            if found < needed {
                return Err(Error::Shape {
                    name: format!("gemm operand {name} (elements)"),
                    expected: vec![needed],
                    found: vec![found],
                });
            }
        }
        Ok(())
    }
}

/// Records one GEMM over device buffers; returns the op and its uniform (keep both alive).
pub(crate) fn gemm_op(
    ctx: &GpuContext,
    spec: &GemmSpec,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: Option<&wgpu::Buffer>,
    c: &wgpu::Buffer,
    dummy: &wgpu::Buffer,
) -> Result<(Op, wgpu::Buffer)> {
    let params = spec.params(bias.is_some())?;
    let u = uniform(ctx, "gemm params", bytemuck::bytes_of(&params));
    let op = Op::new(
        ctx,
        Kernel::Gemm,
        &[
            u.as_entire_binding(),
            a.as_entire_binding(),
            b.as_entire_binding(),
            bias.unwrap_or(dummy).as_entire_binding(),
            c.as_entire_binding(),
        ],
        params.workgroups(),
    )?;
    Ok((op, u))
}

/// Runs one GEMM on the GPU on host data and returns the new `C` (the whole buffer).
///
/// This is the kernel the forward pass uses for the input projection, exposed for tests and
/// for callers with one-off products; it uploads and reads back, so it is not for hot loops.
///
/// # Errors
/// [`Error::Shape`] when an operand is too short for `spec`, [`Error::Limit`] when a size
/// exceeds the device, [`Error::Gpu`] when the device fails.
///
/// # Example
/// ```no_run
/// use wgpu_rnn::gpu::{gemm, AdapterOptions, GemmSpec, GpuContext};
/// let ctx = GpuContext::new(&AdapterOptions::default())?;
/// let c = gemm(&ctx, &GemmSpec::row_major(1, 1, 2), &[1.0, 2.0], &[3.0, 4.0], None, &[0.0])?;
/// assert_eq!(c, vec![11.0]);
/// # Ok::<(), wgpu_rnn::Error>(())
/// ```
pub fn gemm(
    ctx: &GpuContext,
    spec: &GemmSpec,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    c: &[f32],
) -> Result<Vec<f32>> {
    spec.check(a.len(), b.len(), bias.map(<[f32]>::len), c.len())?;
    if spec.m == 0 || spec.n == 0 {
        // Nothing to compute; wgpu cannot map an empty range.
        return Ok(c.to_vec());
    }
    let ba = upload(ctx, "a", a)?;
    let bb = upload(ctx, "b", b)?;
    let bbias = bias.map(|v| upload(ctx, "bias", v)).transpose()?;
    let bc = storage(
        ctx,
        "c",
        c.len(),
        wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    )?;
    ctx.queue.write_buffer(&bc, 0, bytemuck::cast_slice(c));
    let (op, _uniform) = gemm_op(ctx, spec, &ba, &bb, bbias.as_ref(), &bc, &ba)?;
    let out = staging(ctx, "c readback", c.len());
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gemm"),
        });
    encode(&mut encoder, &[op]);
    let mut res = ctx.read_buffers(encoder, &[(&bc, &out, (c.len() * 4) as u64)], "gemm")?;
    Ok(res.remove(0))
}

/// `v` as a kernel's u32 index or size; [`Error::Limit`] naming `what` when it does not fit.
fn index_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit {
        what: what.to_string(),
        limit: "u32 index range of the kernels",
        needed: v as u64,
        max: u32::MAX as u64,
    })
}

/// Workgroup counts covering `n` threads of a 64-wide kernel that indexes
/// `i = gid.y · num_workgroups.x · 64 + gid.x` (so that `n` can exceed 65535 · 64).
pub(crate) fn linear_groups(n: usize) -> [u32; 3] {
    let groups = n.div_ceil(64).max(1);
    let x = groups.min(65535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

/// Binds a whole buffer (shorthand for bind group entries).
pub(crate) fn bind(b: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
    b.as_entire_binding()
}

/// Builds ops and keeps the uniforms they bind alive for as long as the ops are kept.
pub(crate) struct Recorder<'a> {
    ctx: &'a GpuContext,
    dummy: &'a wgpu::Buffer,
    keep: Vec<wgpu::Buffer>,
}

impl<'a> Recorder<'a> {
    /// `dummy` is bound where an optional buffer (a GEMM's bias) is absent.
    pub(crate) fn new(ctx: &'a GpuContext, dummy: &'a wgpu::Buffer) -> Self {
        Recorder {
            ctx,
            dummy,
            keep: Vec::new(),
        }
    }

    /// A uniform holding `bytes`, kept with the ops.
    pub(crate) fn uniform(&mut self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let u = uniform(self.ctx, label, bytes);
        self.keep.push(u.clone());
        u
    }

    /// One GEMM (see [`GemmSpec`]).
    pub(crate) fn gemm(
        &mut self,
        spec: GemmSpec,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        c: &wgpu::Buffer,
    ) -> Result<Op> {
        let (op, u) = gemm_op(self.ctx, &spec, a, b, bias, c, self.dummy)?;
        self.keep.push(u);
        Ok(op)
    }

    /// Column sums `out[out0 + n] = out[out1 + n] = Σ_r a[a_off + r·a_rs + n]` for
    /// `n < cols`, `r < rows`, in a fixed order (see `shaders/colsum.wgsl`).
    pub(crate) fn colsum(
        &mut self,
        rows: usize,
        cols: usize,
        (a, a_off, a_rs): (&wgpu::Buffer, usize, usize),
        out: &wgpu::Buffer,
        out0: usize,
        out1: usize,
    ) -> Result<Op> {
        index_u32("column sum input", a_off + rows * a_rs + cols)?;
        index_u32("column sum output", out0.max(out1) + cols)?;
        let dims = ColSumDims {
            rows: rows as u32,
            cols: cols as u32,
            a_off: a_off as u32,
            a_rs: a_rs as u32,
            out0: out0 as u32,
            out1: out1 as u32,
            ..Default::default()
        };
        self.op(
            Kernel::ColSum,
            bytemuck::bytes_of(&dims),
            &[a, out],
            linear_groups(cols),
        )
    }

    /// An op of `kernel` whose binding 0 is a uniform holding `params` and whose next
    /// bindings are `buffers`, in order.
    pub(crate) fn op(
        &mut self,
        kernel: Kernel,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<Op> {
        let u = self.uniform(&format!("{kernel:?} params"), params);
        let mut bindings = vec![bind(&u)];
        bindings.extend(buffers.iter().map(|b| bind(b)));
        Op::new(self.ctx, kernel, &bindings, groups)
    }

    /// The uniforms to keep.
    pub(crate) fn finish(self) -> Vec<wgpu::Buffer> {
        self.keep
    }
}
