//! The Elman stack on the GPU: resident weights, a per-shape workspace, and the scheduler
//! that records a forward pass as a list of ops.

use std::sync::Arc;

use crate::config::{Cell, RnnConfig};
use crate::cpu::{ForwardOutput, Gradients, check_inputs};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Kernel, STEP_ROWS, STEP_UNITS, StepDims, StepParams, UNIFORM_STRIDE};
use crate::gpu::ops::{self, GemmSpec, Op};
use crate::params::{LayerParams, RnnParams};
use crate::tensor::Tensor;

/// Weights of one layer, both directions stacked, resident on the GPU.
struct LayerWeights {
    /// `[D·G·H, I_l]`: the directions' `weight_ih` one above the other, so one GEMM
    /// projects the input for both.
    w_ih: wgpu::Buffer,
    /// `[D, G·H, H]`: each direction's `weight_hh` as PyTorch stores it (read by backward).
    w_hh: wgpu::Buffer,
    /// `[D, H, G·H]`: each direction's `weight_hh` transposed, for coalesced reads forward.
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
    /// The per-step uniforms (shared with the backward pass).
    steps: wgpu::Buffer,
    ops: Vec<Op>,
    /// The backward pass's buffers and ops, built on the first `backward` at this shape.
    backward: Option<BackwardWorkspace>,
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
    /// Whether `forward` ran on the current workspace since it was built.
    has_forward: bool,
}

/// Gradient buffers of one layer (both directions stacked, like the weights).
struct LayerGrads {
    w_ih: wgpu::Buffer,
    w_hh: wgpu::Buffer,
    bias: Option<wgpu::Buffer>,
}

struct BackwardWorkspace {
    grad_out: wgpu::Buffer,
    grad_hn: wgpu::Buffer,
    grad_h0: wgpu::Buffer,
    /// `∂L/∂x` of each layer, `[T, B, I_l]` (layer 0's is the input gradient).
    grad_x: Vec<wgpu::Buffer>,
    grads: Vec<LayerGrads>,
    ops: Vec<Op>,
    _keep: Vec<wgpu::Buffer>,
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
            let w_hh: Vec<f32> = dirs.iter().flat_map(|p| p.w_hh.data()).copied().collect();
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
                w_hh: ops::upload(&ctx, &format!("weight_hh_l{l}"), &w_hh)?,
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
            has_forward: false,
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
        let step_groups = [
            (h as u32).div_ceil(STEP_UNITS),
            (b as u32).div_ceil(STEP_ROWS),
            d_n as u32,
        ];
        ctx.check_dispatch("RnnStep", step_groups)?;
        for l in 0..cfg.num_layers {
            let spec = GemmSpec::a_bt(t_len * b, d_n * g * h, cfg.layer_input_size(l));
            ctx.check_dispatch("Gemm", spec.params(false)?.workgroups())?;
        }
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
        let mut keep = vec![proj.clone()];
        let mut op_list = Vec::new();
        for (l, w) in self.layers.iter().enumerate() {
            let i_l = cfg.layer_input_size(l);
            let x = if l == 0 { &input } else { &ys[l - 1] };
            let spec = GemmSpec::a_bt(t_len * b, d_n * g * h, i_l);
            let (op, gu) =
                ops::gemm_op(ctx, &spec, x, &w.w_ih, w.bias.as_ref(), &proj, &self.dummy)?;
            op_list.push(op);
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
            steps: step_uniform,
            backward: None,
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
        self.has_forward = false;
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
        self.has_forward = true;
        Ok(ForwardOutput { output, h_n })
    }

    fn build_backward(&self, ws: &Workspace) -> Result<BackwardWorkspace> {
        let ctx = &*self.ctx;
        let cfg = &self.config;
        let (t_len, b) = (ws.t, ws.b);
        let (d_n, h) = (cfg.directions(), cfg.hidden_size);
        let dh = d_n * h;
        let tb = t_len * b;
        let states = cfg.num_layers * d_n * b * h;
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let grad_out = ops::storage(ctx, "grad_output", tb * dh, rw)?;
        let grad_hn = ops::storage(ctx, "grad_h_n", states, rw)?;
        let grad_h0 = ops::storage(ctx, "grad.h0", states, rw)?;
        let grad_a = ops::storage(ctx, "gate gradients", tb * dh, rw)?;
        let ones = ops::upload(ctx, "ones", &vec![1.0; tb])?;
        let grad_x = (0..cfg.num_layers)
            .map(|l| {
                ops::storage(
                    ctx,
                    &format!("grad x l{l}"),
                    tb * cfg.layer_input_size(l),
                    rw,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let grads = (0..cfg.num_layers)
            .map(|l| {
                Ok(LayerGrads {
                    w_ih: ops::storage(
                        ctx,
                        &format!("grad.weight_ih_l{l}"),
                        dh * cfg.layer_input_size(l),
                        rw,
                    )?,
                    w_hh: ops::storage(ctx, &format!("grad.weight_hh_l{l}"), d_n * h * h, rw)?,
                    bias: if cfg.bias {
                        Some(ops::storage(ctx, &format!("grad.bias_l{l}"), dh, rw)?)
                    } else {
                        None
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut op_list = Vec::new();
        let mut keep = vec![grad_a.clone(), ones.clone()];
        let mut dims_keep = Vec::new();
        let step_groups = [
            (h as u32).div_ceil(STEP_UNITS),
            (b as u32).div_ceil(STEP_ROWS),
            d_n as u32,
        ];
        let mut gemm = |spec: GemmSpec,
                        a: &wgpu::Buffer,
                        bm: &wgpu::Buffer,
                        c: &wgpu::Buffer,
                        list: &mut Vec<Op>|
         -> Result<()> {
            let (op, u) = ops::gemm_op(ctx, &spec, a, bm, None, c, &self.dummy)?;
            list.push(op);
            keep.push(u);
            Ok(())
        };
        for l in (0..cfg.num_layers).rev() {
            let w = &self.layers[l];
            let g = &grads[l];
            let i_l = cfg.layer_input_size(l);
            let x = if l == 0 { &ws.input } else { &ws.ys[l - 1] };
            let grad_y = if l + 1 == cfg.num_layers {
                &grad_out
            } else {
                &grad_x[l + 1]
            };
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
            let du = ops::uniform(
                ctx,
                &format!("backward dims l{l}"),
                bytemuck::bytes_of(&dims),
            );
            let step = Op::new(
                ctx,
                Kernel::RnnStepBwd,
                &[
                    du.as_entire_binding(),
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &ws.steps,
                        offset: 0,
                        size: wgpu::BufferSize::new(std::mem::size_of::<StepParams>() as u64),
                    }),
                    w.w_hh.as_entire_binding(),
                    grad_y.as_entire_binding(),
                    grad_hn.as_entire_binding(),
                    ws.ys[l].as_entire_binding(),
                    grad_a.as_entire_binding(),
                ],
                step_groups,
            )?;
            dims_keep.push(du);
            for s in 0..t_len {
                let entry = (t_len - 1 - s) as u64 * UNIFORM_STRIDE;
                op_list.push(step.with_offsets(vec![entry as u32], step_groups));
            }
            for d in 0..d_n {
                let ld = l * d_n + d;
                // The step first processed in forward time, whose h_prev was h0.
                let t0 = if d == 0 { 0 } else { t_len - 1 };
                // ∂h0 = δa_{t0}·W_hh
                gemm(
                    GemmSpec {
                        a_off: t0 * b * dh + d * h,
                        a_rs: dh,
                        b_off: d * h * h,
                        c_off: ld * b * h,
                        ..GemmSpec::row_major(b, h, h)
                    },
                    &grad_a,
                    &w.w_hh,
                    &grad_h0,
                    &mut op_list,
                )?;
                // ∂W_hh = Σ_t δa_tᵀ·h_{t-1}: the steps whose h_prev is in y, then the h0 step.
                let (a_first, y_first) = if d == 0 { (1, 0) } else { (0, 1) };
                gemm(
                    GemmSpec {
                        m: h,
                        n: h,
                        k: (t_len - 1) * b,
                        a_off: a_first * b * dh + d * h,
                        a_rs: 1,
                        a_cs: dh,
                        b_off: y_first * b * dh + d * h,
                        b_rs: dh,
                        b_cs: 1,
                        c_off: d * h * h,
                        c_rs: h,
                        alpha: 1.0,
                        accumulate: false,
                    },
                    &grad_a,
                    &ws.ys[l],
                    &g.w_hh,
                    &mut op_list,
                )?;
                gemm(
                    GemmSpec {
                        m: h,
                        n: h,
                        k: b,
                        a_off: t0 * b * dh + d * h,
                        a_rs: 1,
                        a_cs: dh,
                        b_off: ld * b * h,
                        b_rs: h,
                        b_cs: 1,
                        c_off: d * h * h,
                        c_rs: h,
                        alpha: 1.0,
                        accumulate: true,
                    },
                    &grad_a,
                    &ws.h0,
                    &g.w_hh,
                    &mut op_list,
                )?;
            }
            // Both directions at once: ∂W_ih = δAᵀ·X, ∂b = 1ᵀ·δA, ∂X = δA·W_ih.
            gemm(
                GemmSpec {
                    a_rs: 1,
                    a_cs: dh,
                    ..GemmSpec::row_major(dh, i_l, tb)
                },
                &grad_a,
                x,
                &g.w_ih,
                &mut op_list,
            )?;
            if let Some(gb) = &g.bias {
                gemm(
                    GemmSpec::row_major(1, dh, tb),
                    &ones,
                    &grad_a,
                    gb,
                    &mut op_list,
                )?;
            }
            gemm(
                GemmSpec::row_major(tb, i_l, dh),
                &grad_a,
                &w.w_ih,
                &grad_x[l],
                &mut op_list,
            )?;
        }
        keep.extend(dims_keep);
        Ok(BackwardWorkspace {
            grad_out,
            grad_hn,
            grad_h0,
            grad_x,
            grads,
            ops: op_list,
            _keep: keep,
        })
    }

    /// Backpropagation through time for the last [`GpuRnn::forward`]: the gradients of
    /// `L = Σ output·grad_output + Σ h_n·grad_h_n` (`grad_h_n` zeros when `None`) with respect
    /// to the input, `h0` and every parameter (see [`crate::cpu::backward`] for the math).
    ///
    /// One fused dispatch per reverse step for both directions, then the weight gradients as
    /// GEMMs over all steps at once; everything in one submit.
    ///
    /// # Errors
    /// [`Error::Config`] when no forward pass preceded it, [`Error::Shape`] naming
    /// `grad_output` or `grad_h_n`, [`Error::Gpu`] when the device fails.
    pub fn backward(
        &mut self,
        grad_output: &Tensor,
        grad_h_n: Option<&Tensor>,
    ) -> Result<Gradients> {
        let cfg = self.config;
        let Some(ws) = self.workspace.as_ref().filter(|_| self.has_forward) else {
            return Err(Error::config(
                "backward: no forward pass to differentiate; call forward first",
            ));
        };
        let (t_len, b) = (ws.t, ws.b);
        let (d_n, h, l_n) = (cfg.directions(), cfg.hidden_size, cfg.num_layers);
        grad_output.expect_shape("grad_output", &[t_len, b, d_n * h])?;
        grad_output.expect_finite("grad_output")?;
        if let Some(g) = grad_h_n {
            g.expect_shape("grad_h_n", &[l_n * d_n, b, h])?;
            g.expect_finite("grad_h_n")?;
        }
        if self
            .workspace
            .as_ref()
            .is_some_and(|w| w.backward.is_none())
        {
            let bw = self.build_backward(self.workspace.as_ref().expect("checked"))?;
            self.workspace.as_mut().expect("checked").backward = Some(bw);
        }
        let ws = self.workspace.as_ref().expect("checked");
        let bw = ws.backward.as_ref().expect("just built");
        let ctx = &self.ctx;
        ctx.queue
            .write_buffer(&bw.grad_out, 0, bytemuck::cast_slice(grad_output.data()));
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("backward"),
            });
        match grad_h_n {
            Some(g) => ctx
                .queue
                .write_buffer(&bw.grad_hn, 0, bytemuck::cast_slice(g.data())),
            None => encoder.clear_buffer(&bw.grad_hn, 0, None),
        }
        ops::encode(&mut encoder, &bw.ops);
        // Read back: input gradient, h0 gradient, then each layer's weight gradients.
        let mut reads: Vec<(&wgpu::Buffer, usize)> = vec![
            (&bw.grad_x[0], t_len * b * cfg.input_size),
            (&bw.grad_h0, l_n * d_n * b * h),
        ];
        for (l, g) in bw.grads.iter().enumerate() {
            reads.push((&g.w_ih, d_n * h * cfg.layer_input_size(l)));
            reads.push((&g.w_hh, d_n * h * h));
            if let Some(gb) = &g.bias {
                reads.push((gb, d_n * h));
            }
        }
        let stagings: Vec<wgpu::Buffer> = reads
            .iter()
            .map(|(_, n)| ops::staging(ctx, "gradient readback", *n))
            .collect();
        let triples: Vec<_> = reads
            .iter()
            .zip(&stagings)
            .map(|((src, n), st)| (*src, st, (*n * 4) as u64))
            .collect();
        let mut data = ctx.read_buffers(encoder, &triples, "backward")?.into_iter();
        let mut next = || data.next().expect("one result per read");
        let input = Tensor::new(vec![t_len, b, cfg.input_size], next())?;
        let h0 = Tensor::new(vec![l_n * d_n, b, h], next())?;
        let mut layers = Vec::with_capacity(l_n * d_n);
        for l in 0..l_n {
            let i_l = cfg.layer_input_size(l);
            let (w_ih, w_hh) = (next(), next());
            let bias = cfg.bias.then(&mut next);
            for d in 0..d_n {
                let part = |v: &[f32], n: usize, shape: Vec<usize>| {
                    Tensor::new(shape, v[d * n..][..n].to_vec()).expect("sizes match")
                };
                let bt = bias.as_ref().map(|v| part(v, h, vec![h]));
                layers.push(LayerParams {
                    w_ih: part(&w_ih, h * i_l, vec![h, i_l]),
                    w_hh: part(&w_hh, h * h, vec![h, h]),
                    b_ih: bt.clone(),
                    b_hh: bt,
                });
            }
        }
        Ok(Gradients {
            input,
            h0,
            params: RnnParams::from_parts(cfg, layers),
        })
    }
}
