//! Ops as data: a dispatch is a pipeline, a bind group, dynamic offsets and workgroup counts,
//! recorded once per shape and replayed into one compute pass per submit.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::dropout::Dropout;
use crate::error::{Error, Result};
use crate::gpu::buffer::Buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::budget::{COLSUM_CHUNK, GEMM_K_SPLIT, GEMM_MAX_SPLITS, REDUCE_CHUNK};
use crate::gpu::kernels::{
    ColSumDims, DropoutCounter, DropoutDims, GemmParams, Kernel, ReduceDims,
};

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
        ctx.count_creation();
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

    /// Builds the op, binding the whole of each of `buffers` in order (binding 0, 1, ...).
    pub(crate) fn with_buffers(
        ctx: &GpuContext,
        kernel: Kernel,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<Self> {
        let bindings: Vec<_> = buffers.iter().map(|b| bind(b)).collect();
        Op::new(ctx, kernel, &bindings, groups)
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

/// The commands of one submit, for code outside this folder (the trainer): compute passes of
/// recorded ops, copies, and the stack's passes (see [`crate::gpu::StackStep`]).
pub(crate) struct Encoder<'a> {
    ctx: &'a GpuContext,
    raw: wgpu::CommandEncoder,
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(ctx: &'a GpuContext, label: &str) -> Self {
        let raw = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Encoder { ctx, raw }
    }

    /// Records `ops` as one compute pass.
    pub(crate) fn ops(&mut self, ops: &[Op]) {
        encode(&mut self.raw, ops);
    }

    /// Records a copy of the whole of `src` to the start of `dst`.
    pub(crate) fn copy(&mut self, src: &Buffer, dst: &Buffer) {
        self.raw
            .copy_buffer_to_buffer(src, 0, dst, 0, Some((src.len() * 4) as u64));
    }

    /// Submits the commands without waiting for them.
    pub(crate) fn submit(self) {
        self.ctx.queue.submit([self.raw.finish()]);
    }

    /// wgpu's encoder, for the stack's passes.
    pub(super) fn raw(&mut self) -> &mut wgpu::CommandEncoder {
        &mut self.raw
    }
}

/// The time one kind of dispatch takes per pass, from the profile of a training step
/// (`GpuTrainer::profile`).
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
    ctx.count_creation();
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
    ctx.count_creation();
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
    ctx.count_creation();
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
}

/// A host-readable staging buffer of `len` f32 elements.
pub(crate) fn staging(ctx: &GpuContext, label: &str, len: usize) -> wgpu::Buffer {
    ctx.count_creation();
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

/// Elements of the scratch matrix of one split GEMM at most (64 MiB): a larger product is
/// split into fewer pieces, in more rounds.
const GEMM_SCRATCH: usize = 1 << 24;
/// Rows of the reduction below which a GEMM is not split merely to fill the device.
const GEMM_MIN_SPLIT: usize = 256;
/// Rows below which a column-sum chunk is not split merely to fill the device.
const COLSUM_MIN_CHUNK: usize = 256;

/// How one GEMM of reduction length `k` is dispatched within the loop budget
/// ([`crate::gpu::kernels::budget`]): in `rounds` rounds of `splits · k_split` rows each
/// (the last may be shorter), each round's splits summed in order and added to `C`.
///
/// With `splits == 1` every round is one dispatch of `main` straight into `C`; otherwise a
/// round writes each split's partial product to a scratch matrix and `sum_splits` adds them.
/// A reduction is split when it is longer than [`GEMM_K_SPLIT`] rows, or when the output's
/// 64×64 tiles are fewer than `fill` workgroups (a real GPU needs hundreds; a software
/// adapter as many as it has cores) and `k` is long enough to share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmPlan {
    /// Splits per round (workgroups along z).
    pub splits: usize,
    /// Rows of the reduction per split (a multiple of 16 unless it is all of `k`).
    pub k_split: usize,
    /// Rounds; 0 only when the output is empty.
    pub rounds: usize,
}

impl GemmPlan {
    /// The plan for `C[m, n]` with reduction length `k` on a device that wants `fill`
    /// workgroups per dispatch.
    pub fn new(m: usize, n: usize, k: usize, fill: usize) -> Self {
        let kmax = GEMM_K_SPLIT as usize;
        if m == 0 || n == 0 {
            return GemmPlan {
                splits: 1,
                k_split: 0,
                rounds: 0,
            };
        }
        let tiles = m.div_ceil(64) * n.div_ceil(64);
        let needed = k.div_ceil(kmax).max(1);
        let to_fill = fill.div_ceil(tiles).min(k.div_ceil(GEMM_MIN_SPLIT)).max(1);
        let splits = needed
            .max(to_fill)
            .min(GEMM_MAX_SPLITS as usize)
            .min((GEMM_SCRATCH / (m * n)).max(1));
        if splits == 1 {
            return GemmPlan {
                splits: 1,
                k_split: k.min(kmax),
                rounds: needed,
            };
        }
        let k_split = k.div_ceil(splits).next_multiple_of(16).min(kmax);
        GemmPlan {
            splits,
            k_split,
            rounds: k.div_ceil(splits * k_split),
        }
    }
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
    let mut rec = Recorder::new(ctx, &ba);
    let ops = rec.gemm(*spec, &ba, &bb, bbias.as_ref(), &bc)?;
    let out = staging(ctx, "c readback", c.len());
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gemm"),
        });
    encode(&mut encoder, &ops);
    let mut res = ctx.read_buffers(encoder, &[(&bc, &out, (c.len() * 4) as u64)], "gemm")?;
    Ok(res.remove(0))
}

/// Multiplies `x`, layer `layer`'s output `[T, B, D·H]` flat (or the gradient flowing into
/// it), by dropout's mask on the GPU (`shaders/dropout.wgsl`, the kernel of training steps)
/// and returns the product: `x·1/(1-p)` where kept, `x·0` where dropped (see
/// [`crate::dropout`]). For tests, which compare it with [`Dropout::apply`] on the CPU; it
/// uploads and reads back.
///
/// # Errors
/// [`Error::Config`] naming `dropout` for `p` outside `[0, 1)`, [`Error::Limit`] when `x`
/// exceeds the device, [`Error::Gpu`] when the device fails.
///
/// # Example
/// ```no_run
/// use wgpu_rnn::{dropout::Dropout, gpu::{self, AdapterOptions, GpuContext}};
/// let ctx = GpuContext::new(&AdapterOptions::default())?;
/// let d = Dropout::new(0.5, 1, 0)?;
/// let y = gpu::dropout(&ctx, &d, 0, &[1.0; 8])?;
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// # Ok::<(), wgpu_rnn::Error>(())
/// ```
pub fn dropout(ctx: &GpuContext, d: &Dropout, layer: usize, x: &[f32]) -> Result<Vec<f32>> {
    crate::dropout::check_p(d.p)?;
    if x.is_empty() {
        return Ok(Vec::new());
    }
    index_u32("dropout elements", x.len())?;
    let src = upload(ctx, "dropout input", x)?;
    let counter = DropoutCounter::of(d);
    let counter = upload(ctx, "dropout counter", bytemuck::cast_slice(&[counter]))?;
    let dst = storage(ctx, "dropout output", x.len(), wgpu::BufferUsages::COPY_SRC)?;
    let mut rec = Recorder::new(ctx, &src);
    let dims = DropoutDims::new(d.p, layer, x.len());
    let op = rec.op(
        Kernel::Dropout,
        bytemuck::bytes_of(&dims),
        &[&counter, &src, &dst],
        linear_groups(x.len().div_ceil(4)),
    )?;
    let out = staging(ctx, "dropout readback", x.len());
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("dropout"),
        });
    encode(&mut encoder, &[op]);
    let mut res = ctx.read_buffers(encoder, &[(&dst, &out, (x.len() * 4) as u64)], "dropout")?;
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
    /// Two scratch buffers for the partial results of split reductions (two so that one
    /// level of a multi-level sum reads one and writes the other). Ops run in order, so every
    /// op of the recorder shares them; a larger need allocates a larger buffer.
    scratch: [Option<wgpu::Buffer>; 2],
}

impl<'a> Recorder<'a> {
    /// `dummy` is bound where an optional buffer (a GEMM's bias) is absent.
    pub(crate) fn new(ctx: &'a GpuContext, dummy: &'a wgpu::Buffer) -> Self {
        Recorder {
            ctx,
            dummy,
            keep: Vec::new(),
            scratch: [None, None],
        }
    }

    /// Scratch buffer `slot` (0 or 1) with at least `len` elements.
    fn scratch(&mut self, slot: usize, len: usize) -> Result<wgpu::Buffer> {
        if let Some(b) = &self.scratch[slot]
            && b.size() >= (len * 4) as u64
        {
            return Ok(b.clone());
        }
        let b = storage(
            self.ctx,
            "split reduction partials",
            len,
            wgpu::BufferUsages::empty(),
        )?;
        self.keep.push(b.clone());
        self.scratch[slot] = Some(b.clone());
        Ok(b)
    }

    /// A uniform holding `bytes`, kept with the ops.
    pub(crate) fn uniform(&mut self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let u = uniform(self.ctx, label, bytes);
        self.keep.push(u.clone());
        u
    }

    /// One GEMM (see [`GemmSpec`]), as the dispatches of its [`GemmPlan`].
    pub(crate) fn gemm(
        &mut self,
        spec: GemmSpec,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        c: &wgpu::Buffer,
    ) -> Result<Vec<Op>> {
        let plan = GemmPlan::new(spec.m, spec.n, spec.k, self.ctx.fill_workgroups());
        let per_round = plan.splits * plan.k_split;
        let mut ops = Vec::new();
        for r in 0..plan.rounds {
            let k0 = r * per_round;
            let round = GemmSpec {
                k: per_round.min(spec.k - k0),
                a_off: spec.a_off + k0 * spec.a_cs,
                b_off: spec.b_off + k0 * spec.b_rs,
                accumulate: spec.accumulate || r > 0,
                ..spec
            };
            let bias = bias.filter(|_| r == 0);
            if plan.splits == 1 {
                let mut params = round.params(bias.is_some())?;
                params.k_split = params.k;
                let groups = params.workgroups(1);
                ops.push(self.gemm_op(
                    Kernel::Gemm,
                    params,
                    [Some(a), Some(b), bias, Some(c)],
                    groups,
                )?);
                continue;
            }
            let (m, n) = (spec.m, spec.n);
            let splits = round.k.div_ceil(plan.k_split);
            let scratch = self.scratch(0, splits * m * n)?;
            let partial = GemmSpec {
                c_off: 0,
                c_rs: n,
                alpha: 1.0,
                accumulate: false,
                ..round
            };
            let mut params = partial.params(false)?;
            params.k_split = plan.k_split as u32;
            params.c_split = index_u32("gemm split stride", m * n)?;
            let groups = params.workgroups(splits as u32);
            ops.push(self.gemm_op(
                Kernel::Gemm,
                params,
                [Some(a), Some(b), None, Some(&scratch)],
                groups,
            )?);
            let sum = GemmSpec {
                k: splits,
                a_off: 0,
                a_rs: n,
                a_cs: m * n,
                ..round
            };
            let params = sum.params(bias.is_some())?;
            let groups = linear_groups(m * n);
            ops.push(self.gemm_op(
                Kernel::GemmSumSplits,
                params,
                [Some(&scratch), None, bias, Some(c)],
                groups,
            )?);
        }
        Ok(ops)
    }

    fn gemm_op(
        &mut self,
        kernel: Kernel,
        params: GemmParams,
        [a, b, bias, c]: [Option<&wgpu::Buffer>; 4],
        groups: [u32; 3],
    ) -> Result<Op> {
        let d = self.dummy;
        let buffers = [
            a.unwrap_or(d),
            b.unwrap_or(d),
            bias.unwrap_or(d),
            c.unwrap_or(d),
        ];
        self.op(kernel, bytemuck::bytes_of(&params), &buffers, groups)
    }

    /// Column sums `out[out0 + n] = out[out1 + n] = Σ_r a[a_off + r·a_rs + n]` for
    /// `n < cols`, `r < rows`, in a fixed order (see `shaders/colsum.wgsl`): chunks of rows
    /// summed into a scratch matrix, whose rows are summed again, until one chunk is left.
    pub(crate) fn colsum(
        &mut self,
        rows: usize,
        cols: usize,
        (a, a_off, a_rs): (&wgpu::Buffer, usize, usize),
        out: &wgpu::Buffer,
        out0: usize,
        out1: usize,
    ) -> Result<Vec<Op>> {
        index_u32("column sum input", a_off + rows * a_rs + cols)?;
        index_u32("column sum output", out0.max(out1) + cols)?;
        let col_groups = cols.div_ceil(64).max(1);
        let want = self.ctx.fill_workgroups().div_ceil(col_groups).max(1);
        let (mut src, mut off, mut rs, mut rows) = (a.clone(), a_off, a_rs, rows);
        let mut ops = Vec::new();
        for level in 0.. {
            let chunk = rows
                .div_ceil(want)
                .max(COLSUM_MIN_CHUNK)
                .min(COLSUM_CHUNK as usize);
            let chunks = rows.div_ceil(chunk).max(1);
            let mut dims = ColSumDims {
                rows: rows as u32,
                cols: cols as u32,
                a_off: off as u32,
                a_rs: rs as u32,
                out0: out0 as u32,
                out1: out1 as u32,
                chunk: chunk as u32,
                out_rs: 0,
            };
            let groups = [col_groups as u32, chunks as u32, 1];
            if chunks == 1 {
                ops.push(self.op(
                    Kernel::ColSum,
                    bytemuck::bytes_of(&dims),
                    &[&src, out],
                    groups,
                )?);
                break;
            }
            let scratch = self.scratch(level % 2, chunks * cols)?;
            dims.out0 = 0;
            dims.out1 = 0;
            dims.out_rs = cols as u32;
            ops.push(self.op(
                Kernel::ColSum,
                bytemuck::bytes_of(&dims),
                &[&src, &scratch],
                groups,
            )?);
            (src, off, rs, rows) = (scratch, 0, cols, chunks);
        }
        Ok(ops)
    }

    /// `out[slot] = Σ_{i < n} src[off + i]` (of squares when `squares`), in a fixed order
    /// (see `shaders/reduce.wgsl`): chunks summed into scratch, then summed again.
    pub(crate) fn sum(
        &mut self,
        squares: bool,
        (src, off, n): (&wgpu::Buffer, usize, usize),
        out: &wgpu::Buffer,
        slot: usize,
    ) -> Result<Vec<Op>> {
        index_u32("reduction input", off + n)?;
        let (mut src, mut off, mut n) = (src.clone(), off, n);
        let mut ops = Vec::new();
        for level in 0.. {
            let kernel = if squares && level == 0 {
                Kernel::SumSq
            } else {
                Kernel::Sum
            };
            let groups = n.div_ceil(REDUCE_CHUNK as usize).max(1);
            let mut dims = ReduceDims {
                n: n as u32,
                off: off as u32,
                slot: slot as u32,
                chunk: REDUCE_CHUNK as u32,
            };
            if groups == 1 {
                ops.push(self.op(kernel, bytemuck::bytes_of(&dims), &[&src, out], [1, 1, 1])?);
                break;
            }
            let scratch = self.scratch(level % 2, groups)?;
            dims.slot = 0;
            let g = [groups as u32, 1, 1];
            ops.push(self.op(kernel, bytemuck::bytes_of(&dims), &[&src, &scratch], g)?);
            (src, off, n) = (scratch, 0, groups);
        }
        Ok(ops)
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
