//! A recurrent stack on the GPU, for every cell: parameters resident in one flat buffer, a
//! per-shape workspace, and the scheduler that records forward and backward passes as lists
//! of ops. What differs between cells comes from [`crate::cell::CellSpec`]; nothing here
//! matches on the cell.

use std::sync::Arc;

use crate::cell::CellSpec;
use crate::config::RnnConfig;
use crate::error::{Error, Result};
use crate::gpu::buffer::Buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::budget::{self, EMBED_BWD_CHUNK};
use crate::gpu::kernels::{
    DropoutCounter, DropoutDims, EmbedDims, Kernel, PrepareDims, STEP_ROWS, StepDims, StepParams,
    StepTunables, UNIFORM_STRIDE, saved_units,
};
use crate::gpu::ops::{self, Encoder, GemmSpec, Op, bind, linear_groups};
use crate::params::{ParamLayout, RnnParams};
use crate::state::{ForwardOutput, Gradients, State, check_inputs};
use crate::tensor::Tensor;

/// Weights derived from the parameters, refreshed by `prepare.wgsl` after every update.
struct Derived {
    /// `[D, H, G·H]`: each direction's `weight_hh` transposed, for coalesced reads forward;
    /// then `[D, G·H]`: the `b_hh` blocks that do not fold (zeros where they do).
    w_hh_t: wgpu::Buffer,
    /// `[D·G·H]`: `b_ih` plus the `b_hh` blocks that fold.
    bias: Option<wgpu::Buffer>,
}

/// Buffers and recorded ops for one `(T, B)`; rebuilt only when the shape changes.
pub(super) struct Workspace {
    pub(super) t: usize,
    pub(super) b: usize,
    /// `[T, B, I]` floats, or `[T, B]` token ids (u32) for token input.
    pub(super) input: wgpu::Buffer,
    /// The initial state: `h0` `[L·D, B, H]`, then `c0` for cells with a cell state, then
    /// every batch row's sequence length (u32 bits; `T` unless a forward pass gave lengths).
    pub(super) states0: wgpu::Buffer,
    /// `[B]` u32: `T` for every row, copied into `states0`'s lengths inside an encoder
    /// (GPU-resident forward passes recorded into an application's encoder).
    full_lengths: wgpu::Buffer,
    /// Bytes of the states in `states0` (and all of `states_n`).
    pub(super) states_bytes: u64,
    /// Every layer's output `[T, B, D·H]` (the last one is the model's output).
    pub(super) ys: Vec<wgpu::Buffer>,
    /// With dropout (a training stack only): layer `l`'s output after its mask, the input of
    /// layer `l + 1`, `[T, B, D·R]` (`R` = `P` with a projection; `L - 1` of them; none
    /// without dropout).
    dropped: Vec<wgpu::Buffer>,
    /// Every layer's saved activations `[T, B, D, S·H]` (the dummy for `S = 0`).
    saved: Vec<wgpu::Buffer>,
    /// The final state: `h_n`, then `c_n`, as `states0`.
    pub(super) states_n: wgpu::Buffer,
    pub(super) forward_ops: Vec<Op>,
    /// Host-readable copies of the output and the final state, for `forward`'s readback.
    pub(super) out_staging: wgpu::Buffer,
    hn_staging: wgpu::Buffer,
    /// One [`StepParams`] slot per step, shared by all layers and both passes.
    step_uniform: wgpu::Buffer,
    /// The training half, built by the first backward pass or training step: inference
    /// allocates none of it.
    backward: Option<BackwardWorkspace>,
    // Kept alive for the bind groups that use them.
    _keep: Vec<wgpu::Buffer>,
}

/// The buffers and recorded ops of the backward pass for one `(T, B)`.
struct BackwardWorkspace {
    /// `∂L/∂output`, `[T, B, D·H]`: written by the caller (or a loss head) before backward.
    grad_out: wgpu::Buffer,
    /// `∂L/∂h_n`, then `∂L/∂c_n`, as `states_n`.
    grad_states_n: wgpu::Buffer,
    /// `∂L/∂h0`, then `∂L/∂c0`, as `states0`; the c part is the step kernels' carried `δc`.
    grad_states0: wgpu::Buffer,
    /// `∂L/∂x` of each layer, `[T, B, I_l]` (layer 0's is the input gradient; unused for
    /// token input).
    grad_x: Vec<wgpu::Buffer>,
    /// With dropout: `∂L/∂y_l = ∂L/∂x_{l+1}·mask` `[T, B, D·R]`, the incoming gradient of
    /// every layer but the last, one layer at a time (the layers' backward passes run in
    /// order, so one buffer serves them all).
    grad_masked: Option<wgpu::Buffer>,
    backward_ops: Vec<Op>,
    _keep: Vec<wgpu::Buffer>,
}

impl Workspace {
    /// Records the forward pass into `encoder`; `clear_states` zeroes `h0` (and `c0`) first
    /// (else the caller has written them, or carried `h_n` into them for truncated BPTT).
    fn record_forward(&self, encoder: &mut wgpu::CommandEncoder, clear_states: bool) {
        if clear_states {
            // The states only: the rows' lengths follow them.
            encoder.clear_buffer(&self.states0, 0, Some(self.states_bytes));
        }
        ops::encode(encoder, &self.forward_ops);
    }
}

impl BackwardWorkspace {
    /// Records the backward pass; `grad_out` (and `grad_states_n`) must hold the incoming
    /// gradients.
    fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        ops::encode(encoder, &self.backward_ops);
    }
}

/// The stack's part of a training step on one `(T, B)`, from [`GpuRnn::ensure_training`]:
/// the buffers that a loss head and an optimizer bind, and the passes to record around them.
pub(crate) struct StackStep<'a> {
    rnn: &'a GpuRnn,
    ws: &'a Workspace,
    bw: &'a BackwardWorkspace,
    grads: &'a wgpu::Buffer,
}

impl<'a> StackStep<'a> {
    /// The input, `[T, B, I]` floats or `[T, B]` token ids, written before the forward pass.
    pub(crate) fn input(&self) -> Buffer {
        Buffer::from(self.ws.input.clone())
    }

    /// The stack's output `y`, `[T, B, D·H]`, once the forward pass has run.
    pub(crate) fn output(&self) -> Buffer {
        Buffer::from(self.ws.ys.last().expect("num_layers >= 1").clone())
    }

    /// `∂L/∂y`, `[T, B, D·H]`, which the caller's ops write before the backward pass.
    pub(crate) fn grad_output(&self) -> Buffer {
        Buffer::from(self.bw.grad_out.clone())
    }

    /// The parameters, flat (see [`ParamLayout`]).
    pub(crate) fn params(&self) -> Buffer {
        self.rnn.param_buffer()
    }

    /// The parameter gradients, in the parameters' layout, once the backward pass has run.
    pub(crate) fn grads(&self) -> Buffer {
        Buffer::from(self.grads.clone())
    }

    /// Records the forward pass of a training step: from zeros, or with `carry` from the
    /// final state of the last pass on this shape (truncated BPTT). It also zeroes
    /// `∂L/∂h_n` (and `∂L/∂c_n`): a training step's loss depends on the outputs only.
    pub(crate) fn record_forward(&self, encoder: &mut Encoder<'_>, carry: bool) {
        let encoder = encoder.raw();
        if carry {
            encoder.copy_buffer_to_buffer(&self.ws.states_n, 0, &self.ws.states0, 0, None);
        }
        encoder.clear_buffer(&self.bw.grad_states_n, 0, None);
        self.ws.record_forward(encoder, !carry);
    }

    /// Writes the dropout counter of the step about to be recorded (`d` from the training
    /// state; its `p` is the config's). No-op for a stack without dropout. A queue write,
    /// so it lands before the next submit and after the previous one.
    pub(crate) fn set_dropout(&self, d: Option<crate::dropout::Dropout>) {
        if let (Some(buf), Some(d)) = (&self.rnn.dropout, d) {
            let c = DropoutCounter::of(&d);
            self.rnn
                .ctx
                .queue
                .write_buffer(buf, 0, bytemuck::bytes_of(&c));
        }
    }

    /// Records the backward pass, from [`StackStep::grad_output`].
    pub(crate) fn record_backward(&self, encoder: &mut Encoder<'_>) {
        self.bw.record(encoder.raw());
    }

    /// Records the refresh of the derived weights, after an update of the parameters.
    pub(crate) fn record_prepare(&self, encoder: &mut Encoder<'_>) {
        self.rnn.record_prepare(encoder.raw());
    }

    /// The recorded passes in the order a training step runs them: forward, backward,
    /// prepare (for profiling).
    pub(crate) fn passes(&self) -> [&'a [Op]; 3] {
        [
            &self.ws.forward_ops,
            &self.bw.backward_ops,
            &self.rnn.prepare_ops,
        ]
    }
}

/// A recurrent stack (any [`crate::Cell`]) whose parameters live on the GPU.
///
/// A forward pass is one GEMM per layer for the input projection of all steps (both
/// directions), then one fused step dispatch per time step (both directions). Backward is one
/// fused dispatch per reverse step, then the weight gradients as GEMMs over all steps at once.
/// Each pass is recorded into one command encoder and submitted once. Buffers and bind groups
/// are made once per input shape and reused; nothing is allocated inside the time loop.
///
/// # Example
/// ```no_run
/// use wgpu_rnn::gpu::{AdapterOptions, GpuContext, GpuRnn};
/// use wgpu_rnn::{Cell, RnnConfig, RnnParams, Tensor};
/// let ctx = GpuContext::new(&AdapterOptions::default())?;
/// let params = RnnParams::random(RnnConfig::new(Cell::RnnTanh, 8, 16), 0);
/// let mut rnn = GpuRnn::new(ctx, &params)?;
/// let out = rnn.forward(&Tensor::zeros(&[5, 2, 8]), None)?;
/// assert_eq!(out.h_n.shape(), &[1, 2, 16]);
/// # Ok::<(), wgpu_rnn::Error>(())
/// ```
pub struct GpuRnn {
    pub(super) ctx: Arc<GpuContext>,
    pub(super) config: RnnConfig,
    cell: &'static dyn CellSpec,
    tune: StepTunables,
    token_input: bool,
    layout: ParamLayout,
    /// All parameters, flat (see [`ParamLayout`]).
    params: wgpu::Buffer,
    /// All parameter gradients, same layout; written by the backward pass, allocated with
    /// the first backward workspace.
    grads: Option<wgpu::Buffer>,
    derived: Vec<Derived>,
    prepare_ops: Vec<Op>,
    dummy: wgpu::Buffer,
    workspace: Option<Workspace>,
    /// Whether `forward` ran on the current workspace since it was built.
    has_forward: bool,
    /// Dropout between layers, only in a training stack (the trainer's, built with
    /// `train_dropout`) whose config has `dropout > 0` and more than one layer: Philox's key
    /// and the step's counter ([`DropoutCounter`]), written before each step. Every forward
    /// pass of such a stack masks; inference stacks ([`GpuRnn::new`]) never do.
    dropout: Option<wgpu::Buffer>,
    _keep: Vec<wgpu::Buffer>,
}

/// Binds one [`StepParams`] slot of `steps` (the offset is dynamic, set per dispatch).
fn step_binding(steps: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: steps,
        offset: 0,
        size: wgpu::BufferSize::new(std::mem::size_of::<StepParams>() as u64),
    })
}

impl GpuRnn {
    /// Uploads `params` to the device.
    ///
    /// # Errors
    /// [`Error::Limit`] when a weight exceeds a buffer limit (checked before allocating), or
    /// `hidden_size` exceeds [`budget::max_step_hidden`] (the step kernels' loop budget).
    pub fn new(ctx: Arc<GpuContext>, params: &RnnParams<f32>) -> Result<Self> {
        Self::with_input(ctx, params, false, false)
    }

    /// As [`GpuRnn::new`]; with `token_input`, layer 0 reads token ids in `0..input_size`
    /// and its input projection is a gather of columns of `weight_ih_l0` (an embedding); with
    /// `train_dropout`, every forward pass applies the config's `dropout` between the layers
    /// (a training stack: see [`StackStep::set_dropout`]).
    pub(crate) fn with_input(
        ctx: Arc<GpuContext>,
        params: &RnnParams<f32>,
        token_input: bool,
        train_dropout: bool,
    ) -> Result<Self> {
        let config = *params.config();
        let cell = config.cell.spec();
        budget::check(
            "hidden_size",
            "hidden units of the step kernels within their loop budget",
            config.hidden_size,
            budget::max_step_hidden(cell.gates()),
        )?;
        params.validate()?;
        let layout = ParamLayout::new(&config);
        let (d_n, h) = (config.directions(), config.hidden_size);
        let (r, pr) = (config.real_hidden_size(), config.proj_size);
        let gh = config.cell.gates() * h;
        ctx.check_buffer("parameters", (layout.total * 4) as u64)?;
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let flat = ops::upload(&ctx, "parameters", &layout.flatten(params))?;
        let dummy = ops::upload(&ctx, "dummy", &[0.0])?;
        let mut derived = Vec::new();
        let mut prepare_ops = Vec::new();
        let mut keep = Vec::new();
        for (l, off) in layout.layers.iter().enumerate() {
            let d = Derived {
                // W_hhᵀ, the unfolded b_hh, W_hrᵀ; 4 floats more, which the kernels' vec4
                // reads past the last row may touch (their lanes are discarded).
                w_hh_t: ops::storage(
                    &ctx,
                    &format!("weight_hh_l{l} transposed"),
                    d_n * r * gh + d_n * gh + d_n * h * pr + 4,
                    rw,
                )?,
                bias: match config.bias {
                    true => Some(ops::storage(&ctx, &format!("bias l{l}"), d_n * gh, rw)?),
                    false => None,
                },
            };
            let (b_ih, b_hh) = off.bias.unwrap_or((0, 0));
            let dims = PrepareDims {
                dirs: d_n as u32,
                hidden: h as u32,
                w_hh_off: off.w_hh as u32,
                b_ih_off: b_ih as u32,
                b_hh_off: b_hh as u32,
                has_bias: config.bias as u32,
                gates: cell.gates() as u32,
                fold_mask: cell.fold_mask(),
                width: r as u32,
                w_hr_off: off.w_hr.unwrap_or(0) as u32,
                proj: pr as u32,
                _pad: 0,
            };
            let mut rec = ops::Recorder::new(&ctx, &dummy);
            prepare_ops.push(rec.op(
                Kernel::Prepare,
                bytemuck::bytes_of(&dims),
                &[&flat, &d.w_hh_t, d.bias.as_ref().unwrap_or(&dummy)],
                linear_groups(d_n * r * gh),
            )?);
            keep.extend(rec.finish());
            derived.push(d);
        }
        // p = 0 (or one layer) records no dropout at all: bit for bit the pass without it.
        let dropout = match train_dropout && config.dropout > 0.0 && config.num_layers > 1 {
            // Four u32 words, the size of four f32s.
            true => Some(ops::storage(
                &ctx,
                "dropout counter",
                std::mem::size_of::<DropoutCounter>() / 4,
                wgpu::BufferUsages::COPY_DST,
            )?),
            false => None,
        };
        let rnn = GpuRnn {
            dropout,
            ctx,
            config,
            cell,
            tune: StepTunables::SOFTWARE,
            token_input,
            layout,
            params: flat,
            grads: None,
            derived,
            prepare_ops,
            dummy,
            workspace: None,
            has_forward: false,
            _keep: keep,
        };
        let mut encoder = rnn.encoder("prepare");
        rnn.record_prepare(&mut encoder);
        rnn.ctx.queue.submit([encoder.finish()]);
        Ok(rnn)
    }

    /// The model's configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// The device this model runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    pub(super) fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Records the refresh of the derived weights (after the parameters changed).
    fn record_prepare(&self, encoder: &mut wgpu::CommandEncoder) {
        ops::encode(encoder, &self.prepare_ops);
    }

    /// Reads the parameters back to the host.
    ///
    /// # Errors
    /// [`Error::Gpu`] when the device fails.
    pub fn params(&self) -> Result<RnnParams<f32>> {
        let flat = self.read(&[(&self.params, self.layout.total)], "reading parameters")?;
        Ok(self.layout.unflatten(&self.config, &flat[0]))
    }

    /// Replaces the parameters (same config) and refreshes the derived weights.
    ///
    /// # Errors
    /// [`Error::Config`] when `params` has another configuration.
    pub fn set_params(&mut self, params: &RnnParams<f32>) -> Result<()> {
        if *params.config() != self.config {
            return Err(Error::config(format!(
                "set_params: expected config {:?}, found {:?}",
                self.config,
                params.config()
            )));
        }
        params.validate()?;
        let flat = self.layout.flatten(params);
        self.ctx
            .queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&flat));
        let mut encoder = self.encoder("prepare");
        self.record_prepare(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
        Ok(())
    }

    fn read(&self, bufs: &[(&wgpu::Buffer, usize)], what: &str) -> Result<Vec<Vec<f32>>> {
        let stagings: Vec<wgpu::Buffer> = bufs
            .iter()
            .map(|(_, n)| ops::staging(&self.ctx, what, *n))
            .collect();
        let triples: Vec<_> = bufs
            .iter()
            .zip(&stagings)
            .map(|((src, n), st)| (*src, st, (*n * 4) as u64))
            .collect();
        self.ctx.read_buffers(self.encoder(what), &triples, what)
    }

    /// The parameters' buffer, flat (see [`ParamLayout`]).
    pub(crate) fn param_buffer(&self) -> Buffer {
        Buffer::from(self.params.clone())
    }

    /// Makes sure the workspaces of a training step on `(t_len, b)` exist (forward, backward
    /// and the parameter gradients), rebuilding them when the shape changed, and returns the
    /// stack's part of the step.
    ///
    /// # Errors
    /// [`Error::Limit`] when a buffer or dispatch exceeds the device.
    pub(crate) fn ensure_training(&mut self, t_len: usize, b: usize) -> Result<StackStep<'_>> {
        self.ensure_workspace(t_len, b)?;
        self.ensure_backward()?;
        Ok(self.stack_step().expect("both halves built above"))
    }

    /// The stack's part of a training step, when both halves of the workspace exist.
    fn stack_step(&self) -> Option<StackStep<'_>> {
        let ws = self.workspace.as_ref()?;
        Some(StackStep {
            rnn: self,
            ws,
            bw: ws.backward.as_ref()?,
            grads: self.grads.as_ref()?,
        })
    }

    /// Makes sure the workspace fits `(t, b)`, rebuilding it when the shape changed.
    fn ensure_workspace(&mut self, t_len: usize, b: usize) -> Result<()> {
        if !matches!(&self.workspace, Some(w) if w.t == t_len && w.b == b) {
            self.workspace = None;
            self.has_forward = false;
            self.workspace = Some(self.build_workspace(t_len, b)?);
        }
        Ok(())
    }

    pub(super) fn build_workspace(&self, t_len: usize, b: usize) -> Result<Workspace> {
        let ctx = &*self.ctx;
        let cfg = &self.config;
        let (d_n, h) = (cfg.directions(), cfg.hidden_size);
        let g = self.cell.gates();
        let dh = cfg.output_size();
        let tb = t_len * b;
        let states = self.states_len(b);
        let saved_len = tb * d_n * saved_units(cfg.cell, self.projects()) * h;
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let in_len = if self.token_input {
            tb
        } else {
            tb * cfg.input_size
        };
        // Check every size and dispatch before allocating anything.
        ctx.check_buffer("input", (in_len * 4) as u64)?;
        ctx.check_buffer("output", (tb * dh * 4) as u64)?;
        ctx.check_buffer("projection", (tb * d_n * g * h * 4) as u64)?;
        ctx.check_buffer("saved activations", (saved_len * 4) as u64)?;
        ctx.check_buffer("step uniforms", t_len as u64 * UNIFORM_STRIDE)?;
        let step_groups = self.step_groups(b);
        ctx.check_dispatch(&self.step_kernel().name(), step_groups)?;
        let proj_groups = self.proj_groups(b);
        ctx.check_dispatch(&Kernel::Project(self.tune).name(), proj_groups)?;
        for l in 0..cfg.num_layers {
            let spec = GemmSpec::a_bt(tb, d_n * g * h, cfg.layer_input_size(l));
            ctx.check_dispatch("Gemm", spec.params(false)?.workgroups(1))?;
        }
        let input = ops::storage(ctx, "input", in_len, rw)?;
        let states0 = ops::storage(ctx, "h0, c0, lengths", states + b, rw)?;
        // Every row runs all T steps until a forward pass says otherwise.
        let all_t = vec![t_len as u32; b];
        ctx.queue
            .write_buffer(&states0, (states * 4) as u64, bytemuck::cast_slice(&all_t));
        let full_lengths = ops::upload(ctx, "lengths all T", bytemuck::cast_slice(&all_t))?;
        let states_n = ops::storage(ctx, "h_n, c_n", states, rw)?;
        let proj = ops::storage(ctx, "projection", tb * d_n * g * h, rw)?;
        let ys = (0..cfg.num_layers)
            .map(|l| ops::storage(ctx, &format!("output l{l}"), tb * dh, rw))
            .collect::<Result<Vec<_>>>()?;
        let dropped = match self.dropout {
            Some(_) => (0..cfg.num_layers - 1)
                .map(|l| ops::storage(ctx, &format!("dropped output l{l}"), tb * dh, rw))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let saved = (0..cfg.num_layers)
            .map(|l| match saved_len {
                0 => Ok(self.dummy.clone()),
                n => ops::storage(ctx, &format!("saved activations l{l}"), n, rw),
            })
            .collect::<Result<Vec<_>>>()?;

        // One uniform slot per step, shared by all layers and both passes.
        let mut steps = vec![0u8; t_len * UNIFORM_STRIDE as usize];
        for s in 0..t_len {
            let p = StepParams {
                t_fwd: s as u32,
                t_rev: (t_len - 1 - s) as u32,
                first: (s == 0) as u32,
                last: (s == t_len - 1) as u32,
            };
            steps[s * UNIFORM_STRIDE as usize..][..16].copy_from_slice(bytemuck::bytes_of(&p));
        }
        let step_uniform = ops::uniform(ctx, "steps", &steps);
        let mut rec = ops::Recorder::new(ctx, &self.dummy);
        let mut fwd = Vec::new();
        for (l, off) in self.layout.layers.iter().enumerate() {
            let i_l = cfg.layer_input_size(l);
            let der = &self.derived[l];
            let x = match l {
                0 => &input,
                _ => dropped.get(l - 1).unwrap_or(&ys[l - 1]),
            };
            // Input projection of all steps, both directions: P = X·W_ihᵀ + (b_ih + b_hh).
            if l == 0 && self.token_input {
                let dims = EmbedDims {
                    rows: tb as u32,
                    cols: (d_n * g * h) as u32,
                    vocab: i_l as u32,
                    w_off: off.w_ih as u32,
                    has_bias: cfg.bias as u32,
                    ..Default::default()
                };
                let bias = der.bias.as_ref().unwrap_or(&self.dummy);
                fwd.push(rec.op(
                    Kernel::Embed,
                    bytemuck::bytes_of(&dims),
                    &[&input, &self.params, bias, &proj],
                    linear_groups(tb * d_n * g * h),
                )?);
            } else {
                let spec = GemmSpec {
                    b_off: off.w_ih,
                    ..GemmSpec::a_bt(tb, d_n * g * h, i_l)
                };
                fwd.extend(rec.gemm(spec, x, &self.params, der.bias.as_ref(), &proj)?);
            }
            let du = rec.uniform(
                &format!("step dims l{l}"),
                bytemuck::bytes_of(&self.step_dims(l, t_len, b)),
            );
            let step = Op::new(
                ctx,
                self.step_kernel(),
                &[
                    bind(&du),
                    step_binding(&step_uniform),
                    bind(&der.w_hh_t),
                    bind(&proj),
                    bind(&states0),
                    bind(&ys[l]),
                    bind(&states_n),
                    bind(&saved[l]),
                ],
                step_groups,
            )?;
            // With a projection, h_t = W_hr m_t after each step (the next one reads it).
            let project = match self.projects() {
                true => Some(Op::new(
                    ctx,
                    Kernel::Project(self.tune),
                    &[
                        bind(&du),
                        step_binding(&step_uniform),
                        bind(&der.w_hh_t),
                        bind(&saved[l]),
                        bind(&states0),
                        bind(&ys[l]),
                        bind(&states_n),
                    ],
                    proj_groups,
                )?),
                false => None,
            };
            for s in 0..t_len {
                let offsets = vec![(s as u64 * UNIFORM_STRIDE) as u32];
                fwd.push(step.with_offsets(offsets.clone(), step_groups));
                if let Some(project) = &project {
                    fwd.push(project.with_offsets(offsets, proj_groups));
                }
            }
            // Dropout: the mask of this layer's output, into the next layer's input.
            if let (Some(counter), Some(dst)) = (&self.dropout, dropped.get(l)) {
                fwd.push(self.dropout_op(&mut rec, counter, l, tb * dh, &ys[l], dst)?);
            }
        }

        let mut keep = rec.finish();
        keep.push(proj);
        Ok(Workspace {
            t: t_len,
            b,
            input,
            states0,
            full_lengths,
            states_bytes: (states * 4) as u64,
            ys,
            dropped,
            saved,
            states_n,
            forward_ops: fwd,
            out_staging: ops::staging(ctx, "output readback", tb * dh),
            hn_staging: ops::staging(ctx, "h_n readback", states),
            step_uniform,
            backward: None,
            _keep: keep,
        })
    }

    /// Whether the layers project `h` (an LSTM with `proj_size`).
    fn projects(&self) -> bool {
        self.config.proj_size > 0
    }

    /// The forward step kernel.
    fn step_kernel(&self) -> Kernel {
        match self.projects() {
            true => Kernel::StepProj(self.tune),
            false => Kernel::Step(self.config.cell, self.tune),
        }
    }

    /// The backward step kernel.
    fn step_bwd_kernel(&self) -> Kernel {
        match self.projects() {
            true => Kernel::StepProjBwd(self.tune),
            false => Kernel::StepBwd(self.config.cell, self.tune),
        }
    }

    /// Floats of the `h` part of a state buffer for batch `b`: `L·D·B·R`.
    pub(super) fn h_part_len(&self, b: usize) -> usize {
        let cfg = &self.config;
        cfg.num_layers * cfg.directions() * b * cfg.real_hidden_size()
    }

    /// Floats of a state buffer for batch `b`: `h` `[L·D, B, R]`, then `c` `[L·D, B, H]` for
    /// cells with a cell state.
    pub(super) fn states_len(&self, b: usize) -> usize {
        let cfg = &self.config;
        let c = self.cell.has_cell_state() as usize;
        self.h_part_len(b) + c * cfg.num_layers * cfg.directions() * b * cfg.hidden_size
    }

    /// The dispatch of `shaders/dropout.wgsl` for layer `layer`'s output of `n` elements:
    /// `dst = src·mask` (forward from `y_l`, backward from the gradient of the masked `y_l`).
    fn dropout_op(
        &self,
        rec: &mut ops::Recorder<'_>,
        counter: &wgpu::Buffer,
        layer: usize,
        n: usize,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
    ) -> Result<Op> {
        let dims = DropoutDims::new(self.config.dropout, layer, n);
        rec.op(
            Kernel::Dropout,
            bytemuck::bytes_of(&dims),
            &[counter, src, dst],
            linear_groups(n.div_ceil(4)),
        )
    }

    /// The uniform `Dims` of layer `l`'s step kernels for `(t_len, b)`.
    fn step_dims(&self, l: usize, t_len: usize, b: usize) -> StepDims {
        let cfg = &self.config;
        let (d_n, h) = (cfg.directions(), cfg.hidden_size);
        StepDims {
            batch: b as u32,
            hidden: h as u32,
            dirs: d_n as u32,
            state0: (l * d_n) as u32,
            states_len: self.h_part_len(b) as u32,
            w_off: self.layout.layers[l].w_hh as u32,
            split_off: (t_len * b * d_n * self.cell.gates() * h) as u32,
            lengths_off: self.states_len(b) as u32,
            steps: t_len as u32,
            first_off: self.first_off(t_len, b) as u32,
            width: cfg.real_hidden_size() as u32,
            hr_off: self.layout.layers[l].w_hr.unwrap_or(0) as u32,
        }
    }

    /// Offset of the rows' first-step `δR` `[B, D·G·H]` in the gate-gradient buffer: after
    /// `δX` (and `δR` for cells that split them) of all steps.
    fn first_off(&self, t_len: usize, b: usize) -> usize {
        let dgh = self.config.directions() * self.cell.gates() * self.config.hidden_size;
        t_len * b * dgh * (1 + self.cell.splits_gate_gradients() as usize)
    }

    /// Workgroups of one step dispatch for batch `b` (both directions).
    fn step_groups(&self, b: usize) -> [u32; 3] {
        [
            (self.config.hidden_size as u32).div_ceil(self.tune.units()),
            (b as u32).div_ceil(STEP_ROWS),
            self.config.directions() as u32,
        ]
    }

    /// Workgroups of one projection dispatch (forward or backward) for batch `b`: over the
    /// `P` units of `h`.
    fn proj_groups(&self, b: usize) -> [u32; 3] {
        [
            (self.config.real_hidden_size() as u32).div_ceil(self.tune.units()),
            (b as u32).div_ceil(STEP_ROWS),
            self.config.directions() as u32,
        ]
    }

    /// Makes sure the backward half of the workspace (and the parameter gradients) exist for
    /// the current shape: built on the first backward pass or training step, so that
    /// inference never allocates them.
    ///
    /// # Errors
    /// [`Error::Config`] when no workspace exists yet (no forward shape), [`Error::Limit`]
    /// when a buffer exceeds the device.
    fn ensure_backward(&mut self) -> Result<()> {
        if self.grads.is_none() {
            let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
            self.grads = Some(ops::storage(&self.ctx, "gradients", self.layout.total, rw)?);
        }
        let (Some(ws), Some(grads)) = (&self.workspace, &self.grads) else {
            return Err(Error::config(
                "backward: no workspace; run a forward pass first",
            ));
        };
        if ws.backward.is_none() {
            let bw = self.build_backward(ws, grads)?;
            self.workspace.as_mut().expect("checked above").backward = Some(bw);
        }
        Ok(())
    }

    /// The backward pass's buffers and ops for the forward workspace `ws`, writing the
    /// parameter gradients into `grads`.
    fn build_backward(&self, ws: &Workspace, grads: &wgpu::Buffer) -> Result<BackwardWorkspace> {
        let ctx = &*self.ctx;
        let cfg = &self.config;
        let cell = self.cell;
        let (d_n, h, g_n) = (cfg.directions(), cfg.hidden_size, cell.gates());
        let r = cfg.real_hidden_size();
        let (t_len, b) = (ws.t, ws.b);
        let (dr, gh) = (d_n * r, g_n * h);
        let dgh = d_n * gh;
        let tb = t_len * b;
        let states = self.states_len(b);
        // δX [T, B, D·G·H], then δR for cells that split them.
        let split = cell.splits_gate_gradients();
        let first_off = self.first_off(t_len, b);
        let gates_len = first_off + b * dgh;
        let r_off = if split { tb * dgh } else { 0 };
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        ctx.check_buffer("gate gradients", (gates_len * 4) as u64)?;
        let input = ws.input.clone();
        let step_groups = self.step_groups(b);
        let grad_out = ops::storage(ctx, "grad_output", tb * dr, rw)?;
        // With a projection: ∂L/∂h_t of the layer being differentiated, [T, B, D·P].
        let grad_h = match self.projects() {
            true => Some(ops::storage(ctx, "grad h (projection)", tb * dr, rw)?),
            false => None,
        };
        let proj_groups = self.proj_groups(b);
        let grad_states_n = ops::storage(ctx, "grad_h_n, grad_c_n", states, rw)?;
        let grad_states0 = ops::storage(ctx, "grad.h0, grad.c0", states, rw)?;
        let grad_gates = ops::storage(ctx, "gate gradients", gates_len, rw)?;
        let grad_x = (0..cfg.num_layers)
            .map(|l| {
                let n = if l == 0 && self.token_input {
                    1
                } else {
                    tb * cfg.layer_input_size(l)
                };
                ops::storage(ctx, &format!("grad x l{l}"), n, rw)
            })
            .collect::<Result<Vec<_>>>()?;
        let grad_masked = match self.dropout {
            Some(_) => Some(ops::storage(ctx, "grad masked output", tb * dr, rw)?),
            None => None,
        };
        let mut rec = ops::Recorder::new(ctx, &self.dummy);
        let mut bwd = Vec::new();
        // Backward, from the top layer down.
        for l in (0..cfg.num_layers).rev() {
            let off = self.layout.layers[l];
            let i_l = cfg.layer_input_size(l);
            let x = match l {
                0 => &input,
                _ => ws.dropped.get(l - 1).unwrap_or(&ws.ys[l - 1]),
            };
            let y = &ws.ys[l];
            let grad_y = match (l + 1 == cfg.num_layers, &self.dropout, &grad_masked) {
                (true, ..) => &grad_out,
                // Through the mask the forward pass drew (regenerated from the counter):
                // ∂y_l = ∂x_{l+1}·mask.
                (false, Some(counter), Some(gm)) => {
                    bwd.push(self.dropout_op(&mut rec, counter, l, tb * dr, &grad_x[l + 1], gm)?);
                    gm
                }
                _ => &grad_x[l + 1],
            };
            let du = rec.uniform(
                &format!("backward dims l{l}"),
                bytemuck::bytes_of(&self.step_dims(l, t_len, b)),
            );
            // With a projection, ∂L/∂h_t first (into grad_h), which the step kernel then
            // reads in place of the output's gradient.
            let project = match &grad_h {
                Some(grad_h) => Some(Op::new(
                    ctx,
                    Kernel::ProjectBwd(self.tune),
                    &[
                        bind(&du),
                        step_binding(&ws.step_uniform),
                        bind(&self.params),
                        bind(grad_y),
                        bind(&grad_states_n),
                        bind(&ws.states0),
                        bind(&grad_gates),
                        bind(grad_h),
                    ],
                    proj_groups,
                )?),
                None => None,
            };
            let step = Op::new(
                ctx,
                self.step_bwd_kernel(),
                &[
                    bind(&du),
                    step_binding(&ws.step_uniform),
                    bind(&self.params),
                    bind(grad_h.as_ref().unwrap_or(grad_y)),
                    bind(&grad_states_n),
                    bind(y),
                    bind(&ws.saved[l]),
                    bind(&ws.states0),
                    bind(&grad_gates),
                    bind(&grad_states0),
                ],
                step_groups,
            )?;
            for s in 0..t_len {
                let entry = vec![((t_len - 1 - s) as u64 * UNIFORM_STRIDE) as u32];
                if let Some(project) = &project {
                    bwd.push(project.with_offsets(entry.clone(), proj_groups));
                }
                bwd.push(step.with_offsets(entry, step_groups));
            }
            for d in 0..d_n {
                let ld = l * d_n + d;
                // Each row's first step (t = 0 forward; its own last step in reverse, for a
                // variable-length batch) read h0: the step kernel copied its δR to first_off.
                // ∂h0 = δR_first·W_hh (+ the direct term the step kernel left in grad.h0).
                let spec = GemmSpec {
                    a_off: first_off + d * gh,
                    a_rs: dgh,
                    b_off: off.w_hh + d * gh * r,
                    c_off: ld * b * r,
                    accumulate: cell.carries_h_directly(),
                    ..GemmSpec::row_major(b, r, gh)
                };
                bwd.extend(rec.gemm(spec, &grad_gates, &self.params, None, &grad_states0)?);
                // ∂W_hh = Σ_t δR_tᵀ·h_{t-1}: the steps whose h_prev is in y, then the h0 step.
                let (a_first, y_first) = if d == 0 { (1, 0) } else { (0, 1) };
                let spec = GemmSpec {
                    a_off: r_off + a_first * b * dgh + d * gh,
                    a_rs: 1,
                    a_cs: dgh,
                    b_off: y_first * b * dr + d * r,
                    b_rs: dr,
                    c_off: off.w_hh + d * gh * r,
                    ..GemmSpec::row_major(gh, r, (t_len - 1) * b)
                };
                bwd.extend(rec.gemm(spec, &grad_gates, y, None, grads)?);
                let spec = GemmSpec {
                    a_off: first_off + d * gh,
                    a_rs: 1,
                    a_cs: dgh,
                    b_off: ld * b * r,
                    c_off: off.w_hh + d * gh * r,
                    accumulate: true,
                    ..GemmSpec::row_major(gh, r, b)
                };
                bwd.extend(rec.gemm(spec, &grad_gates, &ws.states0, None, grads)?);
                // ∂W_hr = Σ_t ∂L/∂h_tᵀ·m_t, m_t in the last slot of the saved activations
                // [T·B, D, S·H] (zero past a row's end, as is ∂L/∂h_t).
                if let (Some(grad_h), Some(w_hr)) = (&grad_h, off.w_hr) {
                    let s_h = saved_units(cfg.cell, true) * h;
                    let spec = GemmSpec {
                        a_off: d * r,
                        a_rs: 1,
                        a_cs: dr,
                        b_off: d * s_h + cell.saved_units() * h,
                        b_rs: d_n * s_h,
                        c_off: w_hr + d * r * h,
                        ..GemmSpec::row_major(r, h, tb)
                    };
                    bwd.extend(rec.gemm(spec, grad_h, &ws.saved[l], None, grads)?);
                }
            }
            // Both directions at once: ∂W_ih = δXᵀ·X (a scatter for token input),
            // ∂b_ih = 1ᵀ·δX, ∂b_hh = 1ᵀ·δR, ∂X = δX·W_ih.
            if l == 0 && self.token_input {
                let dims = EmbedDims {
                    rows: tb as u32,
                    cols: dgh as u32,
                    vocab: i_l as u32,
                    w_off: off.w_ih as u32,
                    ..Default::default()
                };
                let bufs = [&input, &grad_gates, grads];
                let bytes = bytemuck::bytes_of(&dims);
                bwd.push(rec.op(Kernel::EmbedZero, bytes, &bufs, linear_groups(dgh * i_l))?);
                // Consecutive dispatches over chunks of positions, within the loop budget.
                for begin in (0..tb).step_by(EMBED_BWD_CHUNK as usize) {
                    let dims = EmbedDims {
                        row_begin: begin as u32,
                        rows: (begin + EMBED_BWD_CHUNK as usize).min(tb) as u32,
                        ..dims
                    };
                    let bytes = bytemuck::bytes_of(&dims);
                    bwd.push(rec.op(Kernel::EmbedBwd, bytes, &bufs, linear_groups(dgh))?);
                }
            } else {
                let spec = GemmSpec {
                    a_rs: 1,
                    a_cs: dgh,
                    c_off: off.w_ih,
                    ..GemmSpec::row_major(dgh, i_l, tb)
                };
                bwd.extend(rec.gemm(spec, &grad_gates, x, None, grads)?);
                let spec = GemmSpec {
                    b_off: off.w_ih,
                    ..GemmSpec::row_major(tb, i_l, dgh)
                };
                bwd.extend(rec.gemm(spec, &grad_gates, &self.params, None, &grad_x[l])?);
            }
            if let Some((bi, bh)) = off.bias {
                if split {
                    bwd.extend(rec.colsum(tb, dgh, (&grad_gates, 0, dgh), grads, bi, bi)?);
                    bwd.extend(rec.colsum(tb, dgh, (&grad_gates, r_off, dgh), grads, bh, bh)?);
                } else {
                    bwd.extend(rec.colsum(tb, dgh, (&grad_gates, 0, dgh), grads, bi, bh)?);
                }
            }
        }
        let mut keep = rec.finish();
        keep.push(grad_gates);
        keep.extend(grad_h);
        Ok(BackwardWorkspace {
            grad_out,
            grad_states_n,
            grad_states0,
            grad_x,
            grad_masked,
            backward_ops: bwd,
            _keep: keep,
        })
    }

    /// Writes the parts of `state` into `buffer` (`h`, then `c`), zeroing the absent ones.
    fn write_state(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        state: State<'_>,
        b: usize,
    ) {
        // h [L·D, B, R] at 0, c [L·D, B, H] after it.
        let h_bytes = (self.h_part_len(b) * 4) as u64;
        let c_bytes = (self.states_len(b) * 4) as u64 - h_bytes;
        let parts = [(state.h, 0, h_bytes), (state.c, h_bytes, c_bytes)];
        for (t, at, bytes) in parts.into_iter().filter(|p| p.2 > 0) {
            match t {
                Some(t) => self
                    .ctx
                    .queue
                    .write_buffer(buffer, at, bytemuck::cast_slice(t.data())),
                None => encoder.clear_buffer(buffer, at, Some(bytes)),
            }
        }
    }

    /// Runs the stack forward: PyTorch's `nn.RNN.forward(input, h0)` (`nn.LSTM`'s
    /// `(input, (h0, c0))`) on the GPU.
    ///
    /// `input` is `[T, B, I]`, `state` the initial [`State`] (`[L·D, B, H]` each, zeros when
    /// absent); returns `output` `[T, B, D·H]`, `h_n` (and `c_n`) `[L·D, B, H]`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `input`, `h0` or `c0`, [`Error::Limit`] when the shape needs
    /// more than the device allows (checked before allocating), [`Error::Gpu`] when the device
    /// fails.
    pub fn forward<'a>(
        &mut self,
        input: &Tensor,
        state: impl Into<State<'a>>,
    ) -> Result<ForwardOutput> {
        self.forward_lengths(input, state, None)
    }

    /// Forgets the last forward pass: [`GpuRnn::backward`] then has nothing to differentiate.
    pub(crate) fn forget_forward(&mut self) {
        self.has_forward = false;
    }

    /// [`GpuRnn::forward`] for a variable-length batch (see [`crate::Rnn::forward_with_lengths`]):
    /// row `b` runs its first `lengths[b]` steps, `None` meaning all `T`.
    ///
    /// # Errors
    /// As [`GpuRnn::forward`]; [`Error::Config`] naming `lengths`.
    pub fn forward_lengths<'a>(
        &mut self,
        input: &Tensor,
        state: impl Into<State<'a>>,
        lengths: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        let state = state.into();
        // A forward that fails leaves nothing to differentiate.
        self.has_forward = false;
        if self.token_input {
            return Err(Error::config(
                "forward: this model takes token ids, not a float tensor",
            ));
        }
        let (t_len, b) = check_inputs(&self.config, input, state)?;
        let lengths: Vec<u32> = match lengths {
            Some(l) => {
                let l: Vec<i64> = l.iter().map(|&v| v as i64).collect();
                crate::cpu::check_lengths(&l, t_len, b)?
                    .into_iter()
                    .map(|v| v as u32)
                    .collect()
            }
            None => vec![t_len as u32; b],
        };
        self.ensure_workspace(t_len, b)?;
        let ws = self.workspace.as_ref().expect("built above");
        self.ctx
            .queue
            .write_buffer(&ws.input, 0, bytemuck::cast_slice(input.data()));
        self.ctx
            .queue
            .write_buffer(&ws.states0, ws.states_bytes, bytemuck::cast_slice(&lengths));
        let mut encoder = self.encoder("forward");
        self.write_state(&mut encoder, &ws.states0, state, b);
        ws.record_forward(&mut encoder, false);
        let dr = self.config.output_size();
        let out_len = t_len * b * dr;
        let states_len = self.states_len(b);
        let y = ws.ys.last().expect("num_layers >= 1");
        let mut res = self.ctx.read_buffers(
            encoder,
            &[
                (y, &ws.out_staging, (out_len * 4) as u64),
                (&ws.states_n, &ws.hn_staging, (states_len * 4) as u64),
            ],
            "forward",
        )?;
        let (h_n, c_n) = self.split_state(res.pop().expect("two reads"), b)?;
        let output = Tensor::new(vec![t_len, b, dr], res.pop().expect("two reads"))?;
        self.has_forward = true;
        Ok(ForwardOutput { output, h_n, c_n })
    }

    /// GPU-resident [`GpuRnn::forward`] from zero initial states: the input `[T, B, I]`
    /// (f32) is read from the application's `input` buffer (which needs `COPY_SRC`) and the
    /// output `[T, B, D·R]` written to its `output` buffer (`COPY_DST`), both from byte 0,
    /// with no host round trip. With `encoder`, everything is recorded into it, after what the
    /// application recorded before (e.g. the compute pass that writes `input`), and the
    /// application submits it; without one it is submitted here (not waited for). The
    /// context must be the application's ([`GpuContext::from_device`]) for its buffers to be
    /// usable (wgpu panics on a buffer of another device; it offers no way to check first).
    /// Everything the pass reads is set inside the encoder (the input copy, the zero state,
    /// every row's length), so calls on this model between recording and the submit do not
    /// change its result. [`GpuRnn::backward`] does not follow it (call [`GpuRnn::forward`]
    /// for that).
    ///
    /// # Errors
    /// [`Error::Config`] naming `input` or `output` when a buffer is too small or lacks its
    /// usage, or for a token model; [`Error::Limit`] as [`GpuRnn::forward`].
    pub fn forward_buffers(
        &mut self,
        encoder: Option<&mut wgpu::CommandEncoder>,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
        steps: usize,
        batch: usize,
    ) -> Result<()> {
        self.has_forward = false;
        if self.token_input {
            return Err(Error::config(
                "forward_buffers: this model takes token ids, not a float tensor",
            ));
        }
        if steps == 0 || batch == 0 {
            return Err(Error::config(format!(
                "forward_buffers: expected steps >= 1 and batch >= 1, found {steps} and {batch}"
            )));
        }
        let cfg = self.config;
        let x_len = steps * batch * cfg.input_size;
        let y_len = steps * batch * cfg.output_size();
        let (src, dst) = (wgpu::BufferUsages::COPY_SRC, wgpu::BufferUsages::COPY_DST);
        super::stream::check_app_buffer("input", input, x_len, src)?;
        super::stream::check_app_buffer("output", output, y_len, dst)?;
        self.ensure_workspace(steps, batch)?;
        let ws = self.workspace.as_ref().expect("built above");
        let mut own = None;
        let encoder = match encoder {
            Some(e) => e,
            None => own.insert(self.encoder("forward (buffers)")),
        };
        // Every row runs all T steps (a forward_lengths may have left other lengths),
        // recorded in the encoder so that host calls before its submit cannot change it.
        let lengths_bytes = Some((batch * 4) as u64);
        encoder.copy_buffer_to_buffer(
            &ws.full_lengths,
            0,
            &ws.states0,
            ws.states_bytes,
            lengths_bytes,
        );
        encoder.copy_buffer_to_buffer(input, 0, &ws.input, 0, Some((x_len * 4) as u64));
        ws.record_forward(encoder, true);
        let y = ws.ys.last().expect("num_layers >= 1");
        encoder.copy_buffer_to_buffer(y, 0, output, 0, Some((y_len * 4) as u64));
        if let Some(e) = own {
            self.ctx.queue.submit([e.finish()]);
        }
        Ok(())
    }

    /// A state buffer's contents as `(h, c)`: `h` `[L·D, B, R]`, `c` `[L·D, B, H]` for cells
    /// with one.
    fn split_state(&self, mut data: Vec<f32>, b: usize) -> Result<(Tensor, Option<Tensor>)> {
        let cfg = &self.config;
        let ld = cfg.num_layers * cfg.directions();
        let c = match self.cell.has_cell_state() {
            true => Some(Tensor::new(
                vec![ld, b, cfg.hidden_size],
                data.split_off(self.h_part_len(b)),
            )?),
            false => None,
        };
        Ok((Tensor::new(vec![ld, b, cfg.real_hidden_size()], data)?, c))
    }

    /// Runs the last forward pass again on the input, `h0` (and lengths) already on the device and waits
    /// for the queue, reading nothing back: the device's own time for a pass, for benchmarks
    /// (PyTorch's CUDA timings likewise keep the input resident).
    ///
    /// # Errors
    /// [`Error::Config`] when no forward pass ran on this shape, [`Error::Gpu`] when the
    /// device fails.
    pub fn rerun_forward(&mut self) -> Result<()> {
        let Some(ws) = self.workspace.as_ref().filter(|_| self.has_forward) else {
            return Err(Error::config(
                "rerun_forward: no forward pass to repeat; call forward first",
            ));
        };
        let mut encoder = self.encoder("forward again");
        // The state was either written by the caller or zeroed by the first run; keep it.
        ws.record_forward(&mut encoder, false);
        self.ctx.submit_wait(encoder, "forward again")
    }

    /// Bytes of device memory this model holds: parameters, derived weights and, once a pass
    /// has run, the workspace of its shape (activations, uniforms); after a backward pass or
    /// training step also the parameter gradients and the backward workspace.
    /// The host-readable staging buffers of `forward`'s readback are not counted: on a
    /// discrete GPU they live in host memory.
    pub fn memory_bytes(&self) -> u64 {
        let mut buffers: Vec<&wgpu::Buffer> = vec![&self.params, &self.dummy];
        buffers.extend(&self.grads);
        for d in &self.derived {
            buffers.push(&d.w_hh_t);
            buffers.extend(d.bias.as_ref());
        }
        buffers.extend(self._keep.iter().chain(&self.dropout));
        if let Some(ws) = &self.workspace {
            buffers.extend([&ws.input, &ws.states0, &ws.states_n, &ws.step_uniform]);
            buffers.extend(ws.ys.iter().chain(&ws.dropped).chain(&ws._keep));
            // The dummy stands in for the saved activations of cells that save none.
            buffers.extend(ws.saved.iter().filter(|b| **b != self.dummy));
            if let Some(bw) = &ws.backward {
                buffers.extend([&bw.grad_out, &bw.grad_states_n, &bw.grad_states0]);
                buffers.extend(bw.grad_x.iter().chain(&bw.grad_masked).chain(&bw._keep));
            }
        }
        buffers.iter().map(|b| b.size()).sum()
    }

    /// Backpropagation through time for the last [`GpuRnn::forward`]: the gradients of
    /// `L = Σ output·grad_output + Σ h_n·grad_h_n (+ Σ c_n·grad_c_n)` (`grad_state` zeros
    /// when absent) with respect to the input, `h0` (`c0`) and every parameter (see
    /// [`crate::cpu::backward`] for the math).
    ///
    /// # Errors
    /// [`Error::Config`] when no forward pass preceded it, [`Error::Shape`] naming
    /// `grad_output`, `grad_h_n` or `grad_c_n`, [`Error::Gpu`] when the device fails.
    pub fn backward<'a>(
        &mut self,
        grad_output: &Tensor,
        grad_state: impl Into<State<'a>>,
    ) -> Result<Gradients> {
        let grad_state = grad_state.into();
        let cfg = self.config;
        let Some(ws) = self
            .workspace
            .as_ref()
            .filter(|_| self.has_forward && !self.token_input)
        else {
            return Err(Error::config(
                "backward: no forward pass to differentiate; call forward first, with \
                 gradients enabled (set_grad_enabled)",
            ));
        };
        let (t_len, b) = (ws.t, ws.b);
        grad_output.expect_shape("grad_output", &[t_len, b, cfg.output_size()])?;
        grad_output.expect_finite("grad_output")?;
        grad_state.check(&cfg, b, ["grad_h_n", "grad_c_n"], true)?;
        self.ensure_backward()?;
        let StackStep { bw, grads, .. } = self.stack_step().expect("built above");
        let queue = &self.ctx.queue;
        queue.write_buffer(&bw.grad_out, 0, bytemuck::cast_slice(grad_output.data()));
        let mut encoder = self.encoder("backward");
        self.write_state(&mut encoder, &bw.grad_states_n, grad_state, b);
        bw.record(&mut encoder);
        let reads = [
            (&bw.grad_x[0], t_len * b * cfg.input_size),
            (&bw.grad_states0, (bw.grad_states0.size() / 4) as usize),
            (grads, self.layout.total),
        ];
        let stagings: Vec<wgpu::Buffer> = reads
            .iter()
            .map(|(_, n)| ops::staging(&self.ctx, "gradient readback", *n))
            .collect();
        let triples: Vec<_> = reads
            .iter()
            .zip(&stagings)
            .map(|((src, n), st)| (*src, st, (*n * 4) as u64))
            .collect();
        let mut data = self
            .ctx
            .read_buffers(encoder, &triples, "backward")?
            .into_iter();
        let mut next = || data.next().expect("one result per read");
        let input = Tensor::new(vec![t_len, b, cfg.input_size], next())?;
        let (h0, c0) = self.split_state(next(), b)?;
        let params = self.layout.unflatten(&cfg, &next());
        Ok(Gradients {
            input,
            h0,
            c0,
            params,
        })
    }
}
