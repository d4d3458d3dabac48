//! The training step on the GPU: one submit per step, parameters, gradients and optimizer
//! moments resident; the loss is read back only when asked.
//!
//! With a head, the step is forward, head `z = y·Wᵀ + b`, fused loss and `∂z`, the head's
//! backward (`∂y` into the stack's `grad_output`), the stack's backward, gradient norms and
//! updates. Without one ([`Task::MeanSquare`]), a buffer copy puts `y` into `grad_output`,
//! the `mse` kernel with zero targets turns it into `2y/N` in place (row losses `y²/N`, with
//! `y` seen as `[N, 1]`), and their sum is the loss `mean(y²)`; `y` itself is left for the
//! backward pass. The head's slots are then empty and get no dispatches.
//!
//! The stack's part of a step comes from [`GpuRnn::ensure_training`] (its buffers and passes
//! for one shape); the head, the loss and the update are recorded here with the buffers and
//! the recorder of [`crate::gpu`], which makes every call into wgpu.

use std::sync::Arc;

use crate::dropout::Dropout;
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, LossDims, OptimHyper, budget};
use crate::gpu::{
    self, Buffer, Encoder, GemmSpec, GpuContext, GpuRnn, KernelTime, Op, Recorder, StackStep,
    linear_groups,
};
use crate::params::ParamLayout;
use crate::train::{Batch, SeqModel, Task, TrainConfig, TrainState};

/// The optimizer's state of one trainable buffer: its moments and its uniform.
struct Slot {
    m1: Buffer,
    m2: Buffer,
    hyper: Buffer,
}

impl Slot {
    /// Elements of the trainable buffer (0 for the absent head of [`Task::MeanSquare`]).
    fn len(&self) -> usize {
        self.m1.len()
    }
}

/// Buffers and ops of the head, loss and update for one `(T, B)`.
struct StepWorkspace {
    t: usize,
    b: usize,
    /// Targets (token ids or f32 values); zeros never written for [`Task::MeanSquare`].
    targets: Buffer,
    /// Whether `head_ops` work on a copy of the stack's output in its `grad_output`
    /// ([`Task::MeanSquare`]), made before them.
    copy_out: bool,
    /// Head, loss, loss sum, head backward (before the stack's backward); for
    /// [`Task::MeanSquare`] the in-place loss on `grad_output` and the loss sum.
    head_ops: Vec<Op>,
    /// Gradient norms and optimizer updates (after the stack's backward).
    update_ops: Vec<Op>,
    /// Everything else the ops bind (uniforms, scratch, logits or element losses).
    keep: Vec<Buffer>,
}

/// What the trainer keeps on the device besides the stack: the head's parameters and
/// gradients (one placeholder element each when empty), the optimizer's state, the gradient
/// norms and the loss.
struct Resident {
    ctx: Arc<GpuContext>,
    task: Task,
    /// `D·H`, the width of the stack's output.
    dh: usize,
    head_w: Buffer,
    head_b: Buffer,
    g_head_w: Buffer,
    g_head_b: Buffer,
    /// Stack, head weight, head bias.
    slots: [Slot; 3],
    norms: Buffer,
    loss: Buffer,
}

/// Trains a [`SeqModel`] on the GPU (used through [`crate::train::Trainer`]).
pub struct GpuTrainer {
    cfg: TrainConfig,
    model: SeqModel,
    rnn: GpuRnn,
    dev: Resident,
    ws: Option<StepWorkspace>,
    step: u64,
    /// The seed of the dropout masks ([`TrainState::dropout_seed`]).
    dropout_seed: u64,
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
        let rnn = GpuRnn::with_input(ctx.clone(), &model.rnn, tokens, true)?;
        let lens = [
            ParamLayout::new(model.config()).total,
            model.head_w.len(),
            model.head_b.len(),
        ];
        let mut at = 0;
        let mut slots = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let moment = |k: usize, m: &[f32]| {
                Buffer::upload(&ctx, &format!("moment {k} of buffer {i}"), &m[at..at + len])
            };
            slots.push(Slot {
                m1: moment(1, &state.m1)?,
                m2: moment(2, &state.m2)?,
                hyper: Buffer::uniform(&ctx, "optimizer", &OptimHyper::default()),
            });
            at += len;
        }
        let slots: [Slot; 3] = slots.try_into().ok().expect("three slots");
        let dev = Resident {
            task: model.task,
            dh: model.config().output_size(),
            head_w: Buffer::upload(&ctx, "head weight", model.head_w.data())?,
            head_b: Buffer::upload(&ctx, "head bias", model.head_b.data())?,
            g_head_w: Buffer::zeros(&ctx, "grad head weight", model.head_w.len())?,
            g_head_b: Buffer::zeros(&ctx, "grad head bias", model.head_b.len())?,
            slots,
            norms: Buffer::zeros(&ctx, "gradient norms", 3)?,
            loss: Buffer::readable(&ctx, "loss", 1)?,
            ctx,
        };
        Ok(GpuTrainer {
            cfg,
            model,
            rnn,
            dev,
            ws: None,
            step: state.step,
            dropout_seed: state.dropout_seed,
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
        let d = &self.dev;
        let mut buffers = vec![
            &d.head_w,
            &d.head_b,
            &d.g_head_w,
            &d.g_head_b,
            &d.norms,
            &d.loss,
        ];
        for s in &d.slots {
            buffers.extend([&s.m1, &s.m2, &s.hyper]);
        }
        if let Some(ws) = &self.ws {
            buffers.push(&ws.targets);
            buffers.extend(&ws.keep);
        }
        self.rnn.memory_bytes() + buffers.iter().map(|b| b.bytes()).sum::<u64>()
    }

    /// One training step, submitted without waiting (see [`crate::train::Trainer::step`]).
    ///
    /// # Errors
    /// As [`SeqModel::check_batch`]; [`crate::Error::Limit`] for shapes over device limits.
    pub fn step(&mut self, batch: &Batch, carry: bool) -> Result<()> {
        let (t, b) = self.model.check_batch(batch)?;
        let stack = self.rnn.ensure_training(t, b)?;
        let ws = self.dev.workspace(&mut self.ws, &stack, t, b)?;
        let ctx = &*self.dev.ctx;
        match batch {
            Batch::Tokens {
                inputs, targets, ..
            } => {
                stack.input().write(ctx, inputs);
                ws.targets.write(ctx, targets);
            }
            Batch::Values { input, target } => {
                stack.input().write(ctx, input.data());
                // An empty target (Task::MeanSquare) has nothing to write.
                if !target.data().is_empty() {
                    ws.targets.write(ctx, target.data());
                }
            }
        }
        // Dropout's masks of this step: counter = the steps taken before it, as on the CPU.
        let p = self.model.config().dropout;
        stack.set_dropout(Dropout::in_training(p, self.dropout_seed, self.step));
        self.step += 1;
        self.dev.write_hyper(&self.cfg, self.step);
        // Truncated BPTT: a chunk starts where the last one ended, when asked and the shape
        // is the same.
        let carry = carry && self.carried == Some((t, b));
        let mut encoder = Encoder::new(ctx, "train step");
        stack.record_forward(&mut encoder, carry);
        if ws.copy_out {
            // Task::MeanSquare: the loss kernel works on a copy of y, which backward needs.
            encoder.copy(&stack.output(), &stack.grad_output());
        }
        encoder.ops(&ws.head_ops);
        stack.record_backward(&mut encoder);
        encoder.ops(&ws.update_ops);
        stack.record_prepare(&mut encoder);
        encoder.submit();
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
    /// use wgpu_rnn::gpu::{AdapterOptions, GpuContext};
    /// use wgpu_rnn::train::{Batch, GpuTrainer, Optimizer, SeqModel, Task, TrainConfig, TrainState};
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
        // The workspaces the step built, ensured again at no cost.
        let (t, b) = self.model.check_batch(batch)?;
        let stack = self.rnn.ensure_training(t, b)?;
        let ws = self.dev.workspace(&mut self.ws, &stack, t, b)?;
        let [forward, backward, prepare] = stack.passes();
        gpu::profile(
            &self.dev.ctx,
            &[forward, &ws.head_ops, backward, &ws.update_ops, prepare],
            repeats,
        )
    }

    /// The last step's mean loss (waits for the GPU, reads one scalar).
    ///
    /// # Errors
    /// [`crate::Error::Gpu`] when the device fails.
    pub fn loss(&mut self) -> Result<f64> {
        let v = gpu::read(&self.dev.ctx, &[&self.dev.loss], "reading the loss")?;
        Ok(v[0][0] as f64)
    }

    /// Reads back the parameters (not the moments).
    ///
    /// # Errors
    /// [`crate::Error::Gpu`] when the device fails.
    pub fn model(&self) -> Result<SeqModel> {
        let d = &self.dev;
        let params = self.rnn.param_buffer();
        let reads = [&params, &d.head_w, &d.head_b];
        let flat: Vec<f32> = gpu::read(&d.ctx, &reads, "reading the parameters")?
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
        let d = &self.dev;
        let s = &d.slots;
        let params = self.rnn.param_buffer();
        let reads = [
            &params, &d.head_w, &d.head_b, &s[0].m1, &s[1].m1, &s[2].m1, &s[0].m2, &s[1].m2,
            &s[2].m2,
        ];
        let mut v = gpu::read(&d.ctx, &reads, "reading the training state")?.into_iter();
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
            dropout_seed: self.dropout_seed,
        })
    }
}

impl Resident {
    /// The step workspace for `(t, b)` in `cache`, recorded against `stack` when the shape
    /// changed (the stale one freed first).
    fn workspace<'w>(
        &self,
        cache: &'w mut Option<StepWorkspace>,
        stack: &StackStep<'_>,
        t: usize,
        b: usize,
    ) -> Result<&'w StepWorkspace> {
        let ws = match cache.take() {
            Some(ws) if ws.t == t && ws.b == b => ws,
            stale => {
                drop(stale);
                self.record(stack, t, b)?
            }
        };
        Ok(cache.insert(ws))
    }

    /// Records the head, loss and update of a step on `(t, b)` around `stack`.
    fn record(&self, stack: &StackStep<'_>, t: usize, b: usize) -> Result<StepWorkspace> {
        let ctx = &*self.ctx;
        let o = self.task.outputs();
        let rows = t * b;
        let tokens = matches!(self.task, Task::Tokens { .. });
        let dummy = Buffer::upload(ctx, "dummy", &[0.0])?;
        let mut rec = Recorder::new(ctx, &dummy);
        let mut head_ops = Vec::new();
        let mut keep = Vec::new();
        let targets = if self.task.has_head() {
            let targets = Buffer::zeros(ctx, "targets", if tokens { rows } else { rows * o })?;
            self.record_head(&mut rec, &mut head_ops, &mut keep, stack, &targets, rows)?;
            targets
        } else {
            // grad_out holds a copy of y (see `step`); mse against zero targets, with y seen
            // as [N, 1] (one thread per element, coalesced), leaves 2y/N there and y²/N in
            // the row losses, whose sum is mean(y²).
            let n = rows * self.dh;
            let n32 = u32::try_from(n).map_err(|_| Error::Limit {
                what: "elements of the output (mean-square loss)".into(),
                limit: "u32 index range of the kernels",
                needed: n as u64,
                max: u32::MAX as u64,
            })?;
            let zeros = Buffer::zeros(ctx, "zero targets", n)?;
            let row_loss = Buffer::zeros(ctx, "element losses", n)?;
            let dims = LossDims {
                rows: n32,
                cols: 1,
                _pad: [0; 2],
            };
            head_ops.push(rec.op(
                Kernel::Mse,
                bytemuck::bytes_of(&dims),
                &[&zeros, &stack.grad_output(), &row_loss],
                linear_groups(n),
            )?);
            head_ops.extend(rec.sum(false, (&row_loss, 0, n), &self.loss, 0)?);
            keep.push(row_loss);
            zeros
        };

        let mut update_ops = Vec::new();
        let grads = [stack.grads(), self.g_head_w.clone(), self.g_head_b.clone()];
        let params = [stack.params(), self.head_w.clone(), self.head_b.clone()];
        // An empty slot (the absent head of Task::MeanSquare) gets no dispatches: its entry
        // of `norms` stays 0 from creation, which is its squared norm.
        let live = || self.slots.iter().enumerate().filter(|(_, s)| s.len() > 0);
        for (i, slot) in live() {
            update_ops.extend(rec.sum(true, (&grads[i], 0, slot.len()), &self.norms, i)?);
        }
        for (i, slot) in live() {
            update_ops.push(Op::with_buffers(
                ctx,
                Kernel::Optim,
                &[
                    &slot.hyper,
                    &self.norms,
                    &grads[i],
                    &params[i],
                    &slot.m1,
                    &slot.m2,
                ],
                linear_groups(slot.len()),
            )?);
        }
        keep.extend(rec.finish().into_iter().map(Buffer::from));
        keep.push(dummy);
        Ok(StepWorkspace {
            t,
            b,
            targets,
            copy_out: !self.task.has_head(),
            head_ops,
            update_ops,
            keep,
        })
    }

    /// Records the head's ops for `rows` rows into `head_ops`: `z = y·Wᵀ + b`, the fused
    /// loss and `∂z` against `targets`, the loss sum, and the head's backward with
    /// `∂y = ∂z·W` into the stack's `grad_output`.
    fn record_head(
        &self,
        rec: &mut Recorder<'_>,
        head_ops: &mut Vec<Op>,
        keep: &mut Vec<Buffer>,
        stack: &StackStep<'_>,
        targets: &Buffer,
        rows: usize,
    ) -> Result<()> {
        let ctx = &*self.ctx;
        let (o, dh) = (self.task.outputs(), self.dh);
        let logits = Buffer::zeros(ctx, "logits", rows * o)?;
        let row_loss = Buffer::zeros(ctx, "row losses", rows)?;
        let y = stack.output();
        // z = y·Wᵀ + b
        let spec = GemmSpec::a_bt(rows, o, dh);
        head_ops.extend(rec.gemm(spec, &y, &self.head_w, Some(&self.head_b), &logits)?);
        let loss_kernel = match self.task {
            Task::Tokens { .. } => Kernel::SoftmaxXent,
            _ => Kernel::Mse,
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
        head_ops.extend(rec.gemm(spec, &logits, &y, None, &self.g_head_w)?);
        head_ops.extend(rec.colsum(rows, o, (&logits, 0, o), &self.g_head_b, 0, 0)?);
        let spec = GemmSpec::row_major(rows, dh, o);
        head_ops.extend(rec.gemm(spec, &logits, &self.head_w, None, &stack.grad_output())?);
        keep.extend([logits, row_loss]);
        Ok(())
    }

    /// Writes the optimizer's uniforms for step `step` (≥ 1) of `cfg`.
    fn write_hyper(&self, cfg: &TrainConfig, step: u64) {
        let (kind, [lr, momentum, beta1, beta2, eps, bc1, bc2]) = cfg.optimizer.hyper(step);
        for slot in &self.slots {
            let h = OptimHyper {
                n: slot.len() as u32,
                kind,
                n_norms: if cfg.clip_norm.is_some() { 3 } else { 0 },
                p_off: 0,
                lr,
                momentum,
                beta1,
                beta2,
                eps,
                bc1,
                bc2,
                max_norm: cfg.clip_norm.unwrap_or(0.0),
            };
            slot.hyper.write(&self.ctx, &[h]);
        }
    }
}
