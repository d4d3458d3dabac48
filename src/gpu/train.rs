//! The training step on the GPU: one submit per step, parameters, gradients and optimizer
//! moments resident; the loss is read back only when asked.
//!
//! With a head, the step is forward, head `z = y·Wᵀ + b`, fused loss and `∂z`, the head's
//! backward (`∂y` into the stack's `grad_output`), the stack's backward, gradient norms and
//! updates. Without one ([`Task::MeanSquare`]), a buffer copy puts `y` into `grad_output`,
//! the `mse` kernel with zero targets turns it into `2y/N` in place (row losses `y²/N`, with
//! `y` seen as `[N, 1]`), and their sum is the loss `mean(y²)`; `y` itself is left for the
//! backward pass. The head's slots are then empty and get no dispatches.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Kernel, LossDims, OptimHyper, budget};
use crate::gpu::ops::{self, GemmSpec, KernelTime, Op, bind, linear_groups};
use crate::gpu::rnn::GpuRnn;
use crate::params::ParamLayout;
use crate::train::{Batch, SeqModel, Task, TrainConfig, TrainState};

/// One trainable buffer with its gradient and optimizer moments.
struct Slot {
    len: usize,
    m1: wgpu::Buffer,
    m2: wgpu::Buffer,
    hyper: wgpu::Buffer,
}

/// Buffers and ops of the head, loss and update for one `(T, B)`.
struct StepWorkspace {
    t: usize,
    b: usize,
    /// Targets (token ids or f32 values); zeros never written for [`Task::MeanSquare`].
    targets: wgpu::Buffer,
    /// Bytes of the stack's output to copy into `grad_output` before `head_ops`
    /// ([`Task::MeanSquare`]; 0 with a head).
    copy_out: u64,
    /// Head, loss, loss sum, head backward (before the stack's backward); for
    /// [`Task::MeanSquare`] the in-place loss on `grad_output` and the loss sum.
    head_ops: Vec<Op>,
    /// Gradient norms and optimizer updates (after the stack's backward).
    update_ops: Vec<Op>,
    /// Everything else the ops bind (uniforms, scratch, logits or element losses).
    keep: Vec<wgpu::Buffer>,
}

/// Trains a [`SeqModel`] on the GPU (used through [`crate::train::Trainer`]).
pub struct GpuTrainer {
    ctx: Arc<GpuContext>,
    cfg: TrainConfig,
    model: SeqModel,
    rnn: GpuRnn,
    head_w: wgpu::Buffer,
    head_b: wgpu::Buffer,
    g_head_w: wgpu::Buffer,
    g_head_b: wgpu::Buffer,
    /// Stack, head weight, head bias.
    slots: [Slot; 3],
    norms: wgpu::Buffer,
    loss: wgpu::Buffer,
    loss_staging: wgpu::Buffer,
    ws: Option<StepWorkspace>,
    step: u64,
    /// `(T, B)` of the last step, whose `h_n` a carrying step starts from.
    carried: Option<(usize, usize)>,
}

impl GpuTrainer {
    /// Uploads the state.
    ///
    /// # Errors
    /// [`crate::Error::Limit`] when a buffer exceeds the device's limits.
    pub fn new(ctx: Arc<GpuContext>, state: &TrainState, cfg: TrainConfig) -> Result<Self> {
        let model = state.model.clone();
        let tokens = matches!(model.task, Task::Tokens { .. });
        // Task::MeanSquare runs `mse` on rows of one element.
        let (what, max) = match tokens {
            true => ("classes of the softmax loss", budget::max_softmax_classes()),
            false => ("outputs of the squared-error loss", budget::max_mse_cols()),
        };
        let limit = "loss kernel row length within its loop budget";
        budget::check(what, limit, model.task.outputs().max(1), max)?;
        let rnn = GpuRnn::with_input(ctx.clone(), &model.rnn, tokens)?;
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let lens = [
            ParamLayout::new(model.config()).total,
            model.head_w.len(),
            model.head_b.len(),
        ];
        let mut at = 0;
        let mut slots = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let m1 = ops::upload(
                &ctx,
                &format!("moment 1 of buffer {i}"),
                &state.m1[at..at + len],
            )?;
            let m2 = ops::upload(
                &ctx,
                &format!("moment 2 of buffer {i}"),
                &state.m2[at..at + len],
            )?;
            let hyper = ops::uniform(
                &ctx,
                "optimizer",
                bytemuck::bytes_of(&OptimHyper::default()),
            );
            slots.push(Slot { len, m1, m2, hyper });
            at += len;
        }
        let slots: [Slot; 3] = slots.try_into().ok().expect("three slots");
        Ok(GpuTrainer {
            head_w: ops::upload(&ctx, "head weight", model.head_w.data())?,
            head_b: ops::upload(&ctx, "head bias", model.head_b.data())?,
            g_head_w: ops::storage(&ctx, "grad head weight", model.head_w.len(), rw)?,
            g_head_b: ops::storage(&ctx, "grad head bias", model.head_b.len(), rw)?,
            norms: ops::storage(&ctx, "gradient norms", 3, rw)?,
            loss: ops::storage(&ctx, "loss", 1, rw)?,
            loss_staging: ops::staging(&ctx, "loss readback", 1),
            slots,
            ctx,
            cfg,
            model,
            rnn,
            ws: None,
            step: state.step,
            carried: None,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Bytes of device memory this trainer holds: the stack's
    /// ([`GpuRnn::memory_bytes`]), the head's parameters and gradients (one placeholder
    /// element each when empty), the optimizer's moments and uniforms, the norms and the loss,
    /// and, once a step has run, the step workspace of its shape (targets, logits or element
    /// losses, reduction scratch and uniforms). The host-readable staging buffer of the loss
    /// is not counted (on a discrete GPU it lives in host memory).
    pub fn memory_bytes(&self) -> u64 {
        let mut buffers = vec![
            &self.head_w,
            &self.head_b,
            &self.g_head_w,
            &self.g_head_b,
            &self.norms,
            &self.loss,
        ];
        for s in &self.slots {
            buffers.extend([&s.m1, &s.m2, &s.hyper]);
        }
        if let Some(ws) = &self.ws {
            buffers.push(&ws.targets);
            buffers.extend(&ws.keep);
        }
        self.rnn.memory_bytes() + buffers.iter().map(|b| b.size()).sum::<u64>()
    }

    fn build(&self, t: usize, b: usize) -> Result<StepWorkspace> {
        let ctx = &*self.ctx;
        let o = self.model.task.outputs();
        let dh = self.model.config().output_size();
        let rows = t * b;
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let tokens = matches!(self.model.task, Task::Tokens { .. });
        let dummy = ops::upload(ctx, "dummy", &[0.0])?;
        let mut rec = ops::Recorder::new(ctx, &dummy);
        let mut head_ops = Vec::new();
        let mut keep = Vec::new();
        let mut copy_out = 0;
        let targets = if self.model.task.has_head() {
            let targets = ops::storage(ctx, "targets", if tokens { rows } else { rows * o }, rw)?;
            self.record_head(&mut rec, &mut head_ops, &mut keep, &targets, (rows, o, dh))?;
            targets
        } else {
            // grad_out holds a copy of y (see `step`); mse against zero targets, with y seen
            // as [N, 1] (one thread per element, coalesced), leaves 2y/N there and y²/N in
            // the row losses, whose sum is mean(y²).
            let n = rows * dh;
            let n32 = u32::try_from(n).map_err(|_| crate::Error::Limit {
                what: "elements of the output (mean-square loss)".into(),
                limit: "u32 index range of the kernels",
                needed: n as u64,
                max: u32::MAX as u64,
            })?;
            let zeros = ops::storage(ctx, "zero targets", n, rw)?;
            let row_loss = ops::storage(ctx, "element losses", n, rw)?;
            let dims = LossDims {
                rows: n32,
                cols: 1,
                _pad: [0; 2],
            };
            head_ops.push(rec.op(
                Kernel::Mse,
                bytemuck::bytes_of(&dims),
                &[&zeros, &self.rnn.backward_workspace().grad_out, &row_loss],
                linear_groups(n),
            )?);
            head_ops.extend(rec.sum(false, (&row_loss, 0, n), &self.loss, 0)?);
            copy_out = (n * 4) as u64;
            keep.push(row_loss);
            zeros
        };

        let mut update_ops = Vec::new();
        let grads = [self.rnn.grads(), &self.g_head_w, &self.g_head_b];
        let params = [&self.rnn.params, &self.head_w, &self.head_b];
        // An empty slot (the absent head of Task::MeanSquare) gets no dispatches: its entry
        // of `norms` stays 0 from creation, which is its squared norm.
        let live = || self.slots.iter().enumerate().filter(|(_, s)| s.len > 0);
        for (i, slot) in live() {
            update_ops.extend(rec.sum(true, (grads[i], 0, slot.len), &self.norms, i)?);
        }
        for (i, slot) in live() {
            update_ops.push(Op::new(
                ctx,
                Kernel::Optim,
                &[
                    bind(&slot.hyper),
                    bind(&self.norms),
                    bind(grads[i]),
                    bind(params[i]),
                    bind(&slot.m1),
                    bind(&slot.m2),
                ],
                linear_groups(slot.len),
            )?);
        }
        keep.extend(rec.finish());
        keep.push(dummy);
        Ok(StepWorkspace {
            t,
            b,
            targets,
            copy_out,
            head_ops,
            update_ops,
            keep,
        })
    }

    /// Records the head's ops for `(rows, o, dh)` into `head_ops`: `z = y·Wᵀ + b`, the fused
    /// loss and `∂z` against `targets`, the loss sum, and the head's backward with
    /// `∂y = ∂z·W` into the stack's `grad_output`.
    fn record_head(
        &self,
        rec: &mut ops::Recorder<'_>,
        head_ops: &mut Vec<Op>,
        keep: &mut Vec<wgpu::Buffer>,
        targets: &wgpu::Buffer,
        (rows, o, dh): (usize, usize, usize),
    ) -> Result<()> {
        let ctx = &*self.ctx;
        let rws = self.rnn.workspace().expect("ensure_workspace first");
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let tokens = matches!(self.model.task, Task::Tokens { .. });
        let logits = ops::storage(ctx, "logits", rows * o, rw)?;
        let row_loss = ops::storage(ctx, "row losses", rows, rw)?;
        let y = rws.ys.last().expect("num_layers >= 1");
        // z = y·Wᵀ + b
        let spec = GemmSpec::a_bt(rows, o, dh);
        head_ops.extend(rec.gemm(spec, y, &self.head_w, Some(&self.head_b), &logits)?);
        let loss_kernel = if tokens {
            Kernel::SoftmaxXent
        } else {
            Kernel::Mse
        };
        let dims = LossDims {
            rows: rows as u32,
            cols: o as u32,
            _pad: [0; 2],
        };
        head_ops.push(rec.op(
            loss_kernel,
            bytemuck::bytes_of(&dims),
            &[targets, &logits, &row_loss],
            linear_groups(rows),
        )?);
        head_ops.extend(rec.sum(false, (&row_loss, 0, rows), &self.loss, 0)?);
        // ∂W = ∂zᵀ·y, ∂b = 1ᵀ·∂z, ∂y = ∂z·W (into the stack's grad_output).
        let spec = GemmSpec {
            a_rs: 1,
            a_cs: o,
            ..GemmSpec::row_major(o, dh, rows)
        };
        head_ops.extend(rec.gemm(spec, &logits, y, None, &self.g_head_w)?);
        head_ops.extend(rec.colsum(rows, o, (&logits, 0, o), &self.g_head_b, 0, 0)?);
        let spec = GemmSpec::row_major(rows, dh, o);
        head_ops.extend(rec.gemm(
            spec,
            &logits,
            &self.head_w,
            None,
            &self.rnn.backward_workspace().grad_out,
        )?);
        keep.extend([logits, row_loss]);
        Ok(())
    }

    /// One training step, submitted without waiting (see [`crate::train::Trainer::step`]).
    ///
    /// # Errors
    /// As [`SeqModel::check_batch`]; [`crate::Error::Limit`] for shapes over device limits.
    pub fn step(&mut self, batch: &Batch, carry: bool) -> Result<()> {
        let (t, b) = self.model.check_batch(batch)?;
        self.rnn.ensure_workspace(t, b)?;
        self.rnn.ensure_backward()?;
        if !matches!(&self.ws, Some(w) if w.t == t && w.b == b) {
            self.ws = None;
            self.ws = Some(self.build(t, b)?);
        }
        let queue = &self.ctx.queue;
        let rws = self.rnn.workspace().expect("ensured");
        let ws = self.ws.as_ref().expect("built");
        match batch {
            Batch::Tokens {
                inputs, targets, ..
            } => {
                queue.write_buffer(&rws.input, 0, bytemuck::cast_slice(inputs));
                queue.write_buffer(&ws.targets, 0, bytemuck::cast_slice(targets));
            }
            Batch::Values { input, target } => {
                queue.write_buffer(&rws.input, 0, bytemuck::cast_slice(input.data()));
                // An empty target (Task::MeanSquare) has nothing to write.
                if !target.data().is_empty() {
                    queue.write_buffer(&ws.targets, 0, bytemuck::cast_slice(target.data()));
                }
            }
        }
        self.step += 1;
        let (kind, [lr, momentum, beta1, beta2, eps, bc1, bc2]) =
            self.cfg.optimizer.hyper(self.step);
        for slot in &self.slots {
            let h = OptimHyper {
                n: slot.len as u32,
                kind,
                n_norms: if self.cfg.clip_norm.is_some() { 3 } else { 0 },
                p_off: 0,
                lr,
                momentum,
                beta1,
                beta2,
                eps,
                bc1,
                bc2,
                max_norm: self.cfg.clip_norm.unwrap_or(0.0),
            };
            queue.write_buffer(&slot.hyper, 0, bytemuck::bytes_of(&h));
        }
        let mut encoder = self.rnn.encoder("train step");
        let carry = carry && self.carried == Some((t, b));
        if carry {
            // Truncated BPTT: this chunk starts where the last one ended.
            self.rnn.record_carry_state(&mut encoder);
        }
        self.rnn.record_clear_grad_state(&mut encoder);
        self.rnn.record_forward(&mut encoder, !carry);
        let ws = self.ws.as_ref().expect("built");
        if ws.copy_out > 0 {
            // Task::MeanSquare: the loss kernel works on a copy of y, which backward needs.
            let rws = self.rnn.workspace().expect("ensured");
            let y = rws.ys.last().expect("num_layers >= 1");
            encoder.copy_buffer_to_buffer(
                y,
                0,
                &self.rnn.backward_workspace().grad_out,
                0,
                Some(ws.copy_out),
            );
        }
        ops::encode(&mut encoder, &ws.head_ops);
        self.rnn.record_backward(&mut encoder);
        ops::encode(&mut encoder, &ws.update_ops);
        self.rnn.record_prepare(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
        self.carried = Some((t, b));
        Ok(())
    }

    /// Times each kernel of a training step on `batch`, each dispatch in isolation and
    /// repeated `repeats` times (see [`KernelTime`]); entries are in the order the step runs
    /// them, and their sum is the step's kernel time without the overlap, copies and submit
    /// of a real step.
    ///
    /// The trainer is consumed: replaying dispatches out of order leaves its parameters and
    /// moments meaningless.
    ///
    /// # Errors
    /// As [`GpuTrainer::step`]; [`crate::Error::Gpu`] when the device fails.
    ///
    /// # Example
    /// ```no_run
    /// use wgpu_rnn::gpu::{AdapterOptions, GpuContext, GpuTrainer};
    /// use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState};
    /// use wgpu_rnn::{Cell, RnnConfig};
    /// let ctx = GpuContext::new(&AdapterOptions::default())?;
    /// let model = SeqModel::new(RnnConfig::new(Cell::RnnTanh, 8, 16), Task::Tokens { vocab: 8 }, 0)?;
    /// let cfg = TrainConfig { optimizer: Optimizer::adam(1e-3), clip_norm: Some(5.0) };
    /// let trainer = GpuTrainer::new(ctx, &TrainState::new(model), cfg)?;
    /// let (t, b) = (4, 2);
    /// let batch = Batch::Tokens { t, b, inputs: vec![1; t * b], targets: vec![2; t * b] };
    /// for k in trainer.profile(&batch, 3)? {
    ///     println!("{:?} {:?} x{}: {:.3} ms", k.kernel, k.groups, k.dispatches, k.ms);
    /// }
    /// # Ok::<(), wgpu_rnn::Error>(())
    /// ```
    pub fn profile(mut self, batch: &Batch, repeats: usize) -> Result<Vec<KernelTime>> {
        self.step(batch, false)?;
        self.loss()?;
        let ws = self.ws.as_ref().expect("built by step");
        let [forward, backward, prepare] = self.rnn.passes();
        ops::profile(
            &self.ctx,
            &[forward, &ws.head_ops, backward, &ws.update_ops, prepare],
            repeats,
        )
    }

    /// The last step's mean loss (waits for the GPU, reads one scalar).
    ///
    /// # Errors
    /// [`crate::Error::Gpu`] when the device fails.
    pub fn loss(&mut self) -> Result<f64> {
        let v = self.ctx.read_buffers(
            self.rnn.encoder("reading the loss"),
            &[(&self.loss, &self.loss_staging, 4)],
            "reading the loss",
        )?;
        Ok(v[0][0] as f64)
    }

    /// Reads back `(buffer, elements)` pairs; empty ones (the absent head of
    /// [`Task::MeanSquare`]) read as empty vectors without a copy (a zero-length mapping is
    /// not allowed).
    fn read(&self, bufs: &[(&wgpu::Buffer, usize)], what: &str) -> Result<Vec<Vec<f32>>> {
        let live: Vec<_> = bufs.iter().copied().filter(|&(_, n)| n > 0).collect();
        let mut got = self.rnn.read(&live, what)?.into_iter();
        Ok(bufs
            .iter()
            .map(|&(_, n)| match n {
                0 => Vec::new(),
                _ => got.next().expect("one read per non-empty buffer"),
            })
            .collect())
    }

    /// Reads back the parameters (not the moments).
    ///
    /// # Errors
    /// [`crate::Error::Gpu`] when the device fails.
    pub fn model(&self) -> Result<SeqModel> {
        let s = &self.slots;
        let reads = [
            (&self.rnn.params, s[0].len),
            (&self.head_w, s[1].len),
            (&self.head_b, s[2].len),
        ];
        let flat: Vec<f32> = self
            .read(&reads, "reading the parameters")?
            .into_iter()
            .flatten()
            .collect();
        let mut model = self.model.clone();
        model.set_flat(&flat);
        Ok(model)
    }

    /// Reads back parameters and moments.
    ///
    /// # Errors
    /// [`crate::Error::Gpu`] when the device fails.
    pub fn state(&self) -> Result<TrainState> {
        let s = &self.slots;
        let reads = [
            (&self.rnn.params, s[0].len),
            (&self.head_w, s[1].len),
            (&self.head_b, s[2].len),
            (&s[0].m1, s[0].len),
            (&s[1].m1, s[1].len),
            (&s[2].m1, s[2].len),
            (&s[0].m2, s[0].len),
            (&s[1].m2, s[1].len),
            (&s[2].m2, s[2].len),
        ];
        let mut v = self.read(&reads, "reading the training state")?.into_iter();
        let mut model = self.model.clone();
        let flat: Vec<f32> = v.by_ref().take(3).flatten().collect();
        model.set_flat(&flat);
        let m1: Vec<f32> = v.by_ref().take(3).flatten().collect();
        let m2: Vec<f32> = v.take(3).flatten().collect();
        Ok(TrainState {
            model,
            m1,
            m2,
            step: self.step,
        })
    }
}
