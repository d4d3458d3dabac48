//! The Elman stack on the GPU: resident weights, a per-shape workspace, and the scheduler
//! that records a forward pass as a list of ops.

use std::sync::Arc;

use crate::config::{Cell, RnnConfig};
use crate::cpu::{ForwardOutput, check_inputs};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Kernel, STEP_ROWS, STEP_UNITS, StepDims, StepParams, UNIFORM_STRIDE};
use crate::gpu::ops::{self, GemmSpec, Op};
use crate::params::RnnParams;
use crate::tensor::Tensor;

/// Weights of one layer, both directions stacked, resident on the GPU.
struct LayerWeights {
    /// `[D·G·H, I_l]`: the directions' `weight_ih` one above the other, so one GEMM
    /// projects the input for both.
    w_ih: wgpu::Buffer,
    /// `[D, H, G·H]`: each direction's `weight_hh` transposed, for coalesced reads.
    w_hh_t: wgpu::Buffer,
    /// `[D·G·H]`: `b_ih + b_hh` (folded, since Elman cells add them), when the model has bias.
    bias: Option<wgpu::Buffer>,
}

/// Buffers and recorded ops for one `(T, B)`; rebuilt only when the shape changes.
struct Workspace {
    t: usize,
    b: usize,
    input: wgpu::Buffer,
    h0: wgpu::Buffer,
    /// Every layer's output `[T, B, D·H]` (the last one is the model's output).
    ys: Vec<wgpu::Buffer>,
    h_n: wgpu::Buffer,
    out_staging: wgpu::Buffer,
    hn_staging: wgpu::Buffer,
    ops: Vec<Op>,
    // Kept alive for the bind groups that use them.
    _keep: Vec<wgpu::Buffer>,
}

/// An Elman RNN stack whose weights live on the GPU.
///
/// A forward pass is one GEMM per layer for the input projection of all steps (both
/// directions), then one fused step dispatch per time step (both directions), all recorded into
/// one command encoder and submitted once. Buffers and bind groups are made once per input shape
/// and reused; nothing is allocated inside the time loop.
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
    ctx: Arc<GpuContext>,
    config: RnnConfig,
    layers: Vec<LayerWeights>,
    dummy: wgpu::Buffer,
    workspace: Option<Workspace>,
}

impl GpuRnn {
    /// Uploads `params` to the device.
    ///
    /// # Errors
    /// [`crate::Error::Limit`] when a weight exceeds a buffer limit (checked before allocating).
    pub fn new(ctx: Arc<GpuContext>, params: &RnnParams<f32>) -> Result<Self> {
        let config = *params.config();
        let (d_n, h) = (config.directions(), config.hidden_size);
        let gh = config.cell.gates() * h;
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let dirs: Vec<_> = (0..d_n).map(|d| params.layer(l, d)).collect();
            let w_ih: Vec<f32> = dirs.iter().flat_map(|p| p.w_ih.data()).copied().collect();
            let mut w_hh_t = vec![0.0f32; d_n * h * gh];
            for (d, p) in dirs.iter().enumerate() {
                for r in 0..gh {
                    for k in 0..h {
                        w_hh_t[(d * h + k) * gh + r] = p.w_hh.data()[r * h + k];
                    }
                }
            }
            let bias = if config.bias {
                let folded: Vec<f32> = dirs
                    .iter()
                    .flat_map(|p| {
                        let (bi, bh) = (p.b_ih.as_ref(), p.b_hh.as_ref());
                        let (bi, bh) = (bi.expect("bias"), bh.expect("bias"));
                        bi.data().iter().zip(bh.data()).map(|(a, b)| a + b)
                    })
                    .collect();
                Some(ops::upload(&ctx, &format!("bias l{l}"), &folded)?)
            } else {
                None
            };
            layers.push(LayerWeights {
                w_ih: ops::upload(&ctx, &format!("weight_ih_l{l}"), &w_ih)?,
                w_hh_t: ops::upload(&ctx, &format!("weight_hh_l{l} (transposed)"), &w_hh_t)?,
                bias,
            });
        }
        let dummy = ops::upload(&ctx, "dummy", &[0.0])?;
        Ok(GpuRnn {
            ctx,
            config,
            layers,
            dummy,
            workspace: None,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// The device this model runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    fn build_workspace(&self, t_len: usize, b: usize) -> Result<Workspace> {
        let ctx = &*self.ctx;
        let cfg = &self.config;
        let (d_n, h) = (cfg.directions(), cfg.hidden_size);
        let g = cfg.cell.gates();
        let states = cfg.num_layers * d_n * b * h;
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        // Sizes are checked by ops::storage before any allocation of that buffer; check the
        // largest ones first so that an oversized request allocates nothing.
        ctx.check_buffer("input", (t_len * b * cfg.input_size * 4) as u64)?;
        ctx.check_buffer("output", (t_len * b * d_n * h * 4) as u64)?;
        ctx.check_buffer("projection", (t_len * b * d_n * g * h * 4) as u64)?;
        let input = ops::storage(ctx, "input", t_len * b * cfg.input_size, rw)?;
        let h0 = ops::storage(ctx, "h0", states, rw)?;
        let h_n = ops::storage(ctx, "h_n", states, rw)?;
        let proj = ops::storage(ctx, "projection", t_len * b * d_n * g * h, rw)?;
        let ys = (0..cfg.num_layers)
            .map(|l| ops::storage(ctx, &format!("output l{l}"), t_len * b * d_n * h, rw))
            .collect::<Result<Vec<_>>>()?;
        // One uniform slot per step, shared by all layers, selected by dynamic offset.
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
        let mut keep = vec![proj.clone(), step_uniform.clone()];
        let mut op_list = Vec::new();
        let step_groups = [
            (h as u32).div_ceil(STEP_UNITS),
            (b as u32).div_ceil(STEP_ROWS),
            d_n as u32,
        ];
        for (l, w) in self.layers.iter().enumerate() {
            let i_l = cfg.layer_input_size(l);
            let x = if l == 0 { &input } else { &ys[l - 1] };
            let spec = GemmSpec::a_bt(t_len * b, d_n * g * h, i_l);
            let gp = spec.params(w.bias.is_some())?;
            let gu = ops::uniform(ctx, &format!("projection l{l}"), bytemuck::bytes_of(&gp));
            op_list.push(Op::new(
                ctx,
                Kernel::Gemm,
                &[
                    gu.as_entire_binding(),
                    x.as_entire_binding(),
                    w.w_ih.as_entire_binding(),
                    w.bias.as_ref().unwrap_or(&self.dummy).as_entire_binding(),
                    proj.as_entire_binding(),
                ],
                gp.workgroups(),
            )?);
            let dims = StepDims {
                batch: b as u32,
                hidden: h as u32,
                dirs: d_n as u32,
                act: match cfg.cell {
                    Cell::RnnTanh => 0,
                    Cell::RnnRelu => 1,
                },
                state0: (l * d_n) as u32,
                ..Default::default()
            };
            let du = ops::uniform(ctx, &format!("step dims l{l}"), bytemuck::bytes_of(&dims));
            let step_binding = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &step_uniform,
                offset: 0,
                size: wgpu::BufferSize::new(std::mem::size_of::<StepParams>() as u64),
            });
            let step = Op::new(
                ctx,
                Kernel::RnnStep,
                &[
                    du.as_entire_binding(),
                    step_binding,
                    w.w_hh_t.as_entire_binding(),
                    proj.as_entire_binding(),
                    h0.as_entire_binding(),
                    ys[l].as_entire_binding(),
                    h_n.as_entire_binding(),
                ],
                step_groups,
            )?;
            for s in 0..t_len {
                op_list
                    .push(step.with_offsets(vec![(s as u64 * UNIFORM_STRIDE) as u32], step_groups));
            }
            keep.push(gu);
            keep.push(du);
        }
        Ok(Workspace {
            t: t_len,
            b,
            out_staging: ops::staging(ctx, "output readback", t_len * b * d_n * h),
            hn_staging: ops::staging(ctx, "h_n readback", states),
            input,
            h0,
            ys,
            h_n,
            ops: op_list,
            _keep: keep,
        })
    }

    /// Runs the stack forward: PyTorch's `nn.RNN.forward(input, h0)` on the GPU.
    ///
    /// `input` is `[T, B, I]`, `h0` is `[L·D, B, H]` (zeros when `None`); returns `output`
    /// `[T, B, D·H]` and `h_n` `[L·D, B, H]`.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] naming `input` or `h0`, [`crate::Error::Limit`] when the shape
    /// needs more than the device allows (checked before allocating), [`crate::Error::Gpu`]
    /// when the device fails.
    pub fn forward(&mut self, input: &Tensor, h0: Option<&Tensor>) -> Result<ForwardOutput> {
        let (t_len, b) = check_inputs(&self.config, input, h0)?;
        if !matches!(&self.workspace, Some(w) if w.t == t_len && w.b == b) {
            self.workspace = None;
            self.workspace = Some(self.build_workspace(t_len, b)?);
        }
        let ws = self.workspace.as_ref().expect("workspace just built");
        let ctx = &self.ctx;
        ctx.queue
            .write_buffer(&ws.input, 0, bytemuck::cast_slice(input.data()));
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("forward"),
            });
        match h0 {
            Some(h0) => ctx
                .queue
                .write_buffer(&ws.h0, 0, bytemuck::cast_slice(h0.data())),
            None => encoder.clear_buffer(&ws.h0, 0, None),
        }
        ops::encode(&mut encoder, &ws.ops);
        let (d_n, h, l_n) = (
            self.config.directions(),
            self.config.hidden_size,
            self.config.num_layers,
        );
        let out_len = t_len * b * d_n * h;
        let hn_len = l_n * d_n * b * h;
        let y = ws.ys.last().expect("num_layers >= 1");
        let mut res = ctx.read_buffers(
            encoder,
            &[
                (y, &ws.out_staging, (out_len * 4) as u64),
                (&ws.h_n, &ws.hn_staging, (hn_len * 4) as u64),
            ],
            "forward",
        )?;
        let h_n = Tensor::new(vec![l_n * d_n, b, h], res.pop().expect("two reads"))?;
        let output = Tensor::new(vec![t_len, b, d_n * h], res.pop().expect("two reads"))?;
        Ok(ForwardOutput { output, h_n })
    }
}
