//! Training: a recurrent stack with a linear head, losses, optimizers, clipping, truncated
//! BPTT and checkpoints, on the GPU or the CPU with the same API and the same arithmetic.
//!
//! A training step is: forward (token input through an embedding gather, or a float input),
//! the head `z = y·Wᵀ + b`, the loss fused with its gradient (softmax cross-entropy over
//! tokens, or mean squared error), the head's and the stack's backward pass (BPTT), gradient
//! clipping by global norm, and the optimizer update. On the GPU the whole step is one submit
//! and nothing is read back unless [`Trainer::loss`] asks for the loss.
//!
//! [`Task::MeanSquare`] has no head: the loss is `mean(y²)` of the stack's output itself, the
//! training step of the benchmarks (DeepBench, PyTorch's `y, _ = rnn(x); y.pow(2).mean()`).

pub mod checkpoint;
pub mod data;
mod gpu;
mod loss;
mod optim;
pub mod series;

use rand::SeedableRng;

pub use gpu::GpuTrainer;
pub use loss::{mean_square, mse, softmax_xent};
pub use optim::{Optimizer, clip_scale, squared_norm, update};

use crate::config::RnnConfig;
use crate::cpu::{self, Input};
use crate::error::{Error, Result};
use crate::model::Device;
use crate::params::{ParamLayout, RnnParams};
use crate::state::State;
use crate::tensor::{Float, Tensor};

/// What the model reads and predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Token ids in `0..vocab` in, a distribution over the next token out (softmax
    /// cross-entropy); the input size of the stack is `vocab`.
    Tokens {
        /// Vocabulary size.
        vocab: usize,
    },
    /// `I` floats in, `outputs` floats out (mean squared error).
    Regression {
        /// Output features.
        outputs: usize,
    },
    /// No head; loss = mean over all `N = T·B·D·H` elements of the stack's output `y`
    /// `[T, B, D·H]` squared, `L = Σ y² / N`, with gradient `∂L/∂y = 2y / N`: the benchmark
    /// loss of DeepBench and of PyTorch's side-by-side script (`y, _ = rnn(x);
    /// loss = y.pow(2).mean()`).
    ///
    /// The model's head is empty (`head_w` `[0, D·H]`, `head_b` `[0]`; [`Task::outputs`] is 0)
    /// and its batches are [`Batch::Values`] with a target of shape `[T, B, 0]` (see
    /// [`Batch::input_only`]). The input is `I` floats per step, as for
    /// [`Task::Regression`].
    ///
    /// # Example
    /// ```
    /// use wgpu_rnn::{Cell, Device, RnnConfig, Tensor};
    /// use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer};
    /// let model = SeqModel::new(RnnConfig::new(Cell::RnnTanh, 4, 8), Task::MeanSquare, 0)?;
    /// let cfg = TrainConfig { optimizer: Optimizer::sgd(1e-3, 0.0), clip_norm: None };
    /// let mut trainer = Trainer::new(TrainState::new(model), cfg, &Device::Cpu)?;
    /// trainer.step(&Batch::input_only(Tensor::full(&[5, 2, 4], 0.5)), false)?;
    /// assert!(trainer.loss()? > 0.0);
    /// # Ok::<(), wgpu_rnn::Error>(())
    /// ```
    MeanSquare,
}

/// A recurrent stack with a linear head: `z_t = W·h_t + b` on the top layer's output (for
/// [`Task::MeanSquare`], the stack alone: the head is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqModel {
    /// The stack, in PyTorch's layout.
    pub rnn: RnnParams<f32>,
    /// Head weight `[O, D·H]` (`nn.Linear.weight`; `[0, D·H]` without a head).
    pub head_w: Tensor,
    /// Head bias `[O]` (`[0]` without a head).
    pub head_b: Tensor,
    /// What it reads and predicts.
    pub task: Task,
}

impl SeqModel {
    /// A freshly initialised model (PyTorch's defaults: `U(±1/√H)` for the stack, `U(±1/√fan_in)`
    /// for the head), from a seeded ChaCha8 generator.
    ///
    /// # Errors
    /// [`Error::Config`] when the task and the stack's input size disagree.
    ///
    /// # Example
    /// ```
    /// use wgpu_rnn::{Cell, RnnConfig, train::{SeqModel, Task}};
    /// let m = SeqModel::new(RnnConfig::new(Cell::RnnTanh, 65, 32), Task::Tokens { vocab: 65 }, 0)?;
    /// assert_eq!(m.head_w.shape(), &[65, 32]);
    /// // The benchmark's model: the stack alone, no head.
    /// let m = SeqModel::new(RnnConfig::new(Cell::RnnTanh, 8, 32), Task::MeanSquare, 0)?;
    /// assert_eq!(m.head_w.shape(), &[0, 32]);
    /// # Ok::<(), wgpu_rnn::Error>(())
    /// ```
    pub fn new(config: RnnConfig, task: Task, seed: u64) -> Result<Self> {
        config.validate()?;
        if let Task::Tokens { vocab } = task
            && vocab != config.input_size
        {
            return Err(Error::config(format!(
                "token model: input_size must equal the vocabulary ({vocab}), found {}",
                config.input_size
            )));
        }
        if task.has_head() && task.outputs() == 0 {
            return Err(Error::config("task: expected at least 1 output, found 0"));
        }
        let rnn = RnnParams::random(config, seed);
        let o = task.outputs();
        let fan_in = config.output_size();
        let k = 1.0 / (fan_in as f64).sqrt();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_4ead);
        let mut draw = |n: usize| -> Vec<f32> {
            use rand::RngExt;
            (0..n).map(|_| rng.random_range(-k..k) as f32).collect()
        };
        Ok(SeqModel {
            rnn,
            head_w: Tensor::new(vec![o, fan_in], draw(o * fan_in))?,
            head_b: Tensor::new(vec![o], draw(o))?,
            task,
        })
    }

    /// The stack's configuration.
    pub fn config(&self) -> &RnnConfig {
        self.rnn.config()
    }

    /// Checks that the parts fit together: the stack's parameters, a token model's vocabulary
    /// equal to the input size, the head `[O, D·H]` and `[O]` with `O >= 1` (`O = 0` for
    /// [`Task::MeanSquare`]), all finite.
    ///
    /// # Errors
    /// [`Error::Shape`], [`Error::NonFinite`] or [`Error::Config`] naming the part.
    pub fn validate(&self) -> Result<()> {
        self.rnn.validate()?;
        let o = self.task.outputs();
        if self.task.has_head() && o == 0 {
            return Err(Error::config("task: expected at least 1 output, found 0"));
        }
        if let Task::Tokens { vocab } = self.task
            && vocab != self.config().input_size
        {
            return Err(Error::config(format!(
                "token model: vocabulary {vocab} must equal the stack's input_size, found {}",
                self.config().input_size
            )));
        }
        self.head_w
            .expect_shape("head.weight", &[o, self.config().output_size()])?;
        self.head_b.expect_shape("head.bias", &[o])?;
        self.head_w.expect_finite("head.weight")?;
        self.head_b.expect_finite("head.bias")
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        ParamLayout::new(self.config()).total + self.head_w.len() + self.head_b.len()
    }

    /// All parameters as one vector: the stack in [`ParamLayout`] order, then the head.
    pub(crate) fn flatten(&self) -> Vec<f32> {
        let mut v = ParamLayout::new(self.config()).flatten(&self.rnn);
        v.extend_from_slice(self.head_w.data());
        v.extend_from_slice(self.head_b.data());
        v
    }

    pub(crate) fn set_flat(&mut self, flat: &[f32]) {
        let layout = ParamLayout::new(self.config());
        let (r, rest) = flat.split_at(layout.total);
        let (w, b) = rest.split_at(self.head_w.len());
        self.rnn = layout.unflatten(self.config(), r);
        self.head_w.data_mut().copy_from_slice(w);
        self.head_b.data_mut().copy_from_slice(b);
    }

    /// Checks a batch against the model.
    ///
    /// # Errors
    /// [`Error::Shape`] or [`Error::Config`] naming the batch tensor that disagrees.
    pub fn check_batch(&self, batch: &Batch) -> Result<(usize, usize)> {
        match (batch, self.task) {
            (
                Batch::Tokens {
                    t,
                    b,
                    inputs,
                    targets,
                },
                Task::Tokens { vocab },
            ) => {
                for (name, v) in [("inputs", inputs), ("targets", targets)] {
                    if v.len() != t * b {
                        return Err(Error::shape(name, &[*t, *b], &[v.len()]));
                    }
                    if let Some(i) = v.iter().position(|&x| x as usize >= vocab) {
                        return Err(Error::config(format!(
                            "{name}: token {} at index {i} is outside the vocabulary of {vocab}",
                            v[i]
                        )));
                    }
                }
                if *t == 0 || *b == 0 {
                    return Err(Error::config(format!(
                        "batch: expected T >= 1 and B >= 1, found T = {t}, B = {b}"
                    )));
                }
                Ok((*t, *b))
            }
            (Batch::Values { input, target }, Task::Regression { .. } | Task::MeanSquare) => {
                let (t, b) = cpu::check_inputs(self.config(), input, State::default())?;
                target.expect_shape("target", &[t, b, self.task.outputs()])?;
                target.expect_finite("target")?;
                Ok((t, b))
            }
            _ => Err(Error::config(format!(
                "batch kind does not match the model's task {:?}",
                self.task
            ))),
        }
    }

    /// Mean loss of the model on `batch` from the initial `state` (`h0`, and `c0` for
    /// LSTM; zeros when absent), computed on the CPU (forward only). Returns the loss, `h_n`
    /// and `c_n` (for cells with a cell state), which carry into the next chunk of a long
    /// sequence.
    ///
    /// # Errors
    /// As [`SeqModel::check_batch`]; [`Error::Shape`] naming `h0` or `c0`.
    pub fn evaluate<'a>(
        &self,
        batch: &Batch,
        state: impl Into<State<'a>>,
    ) -> Result<(f64, Tensor, Option<Tensor>)> {
        let state = state.into();
        let (t, b) = self.check_batch(batch)?;
        state.check(self.config(), b, ["h0", "c0"], true)?;
        let out = cpu::forward_no_grad(&self.rnn, batch.input(t, b), state, &vec![t; b])?;
        if self.task == Task::MeanSquare {
            return Ok((mean_square(&mut out.output.into_data()), out.h_n, out.c_n));
        }
        let mut z = self.head(&out.output);
        let loss = match batch {
            Batch::Tokens { targets, .. } => softmax_xent(&mut z, self.task.outputs(), targets),
            Batch::Values { target, .. } => mse(&mut z, target.data()),
        };
        Ok((loss, out.h_n, out.c_n))
    }

    /// The head's output `z = y·Wᵀ + b` for the stack's output `y` `[T, B, D·H]` (`D·P` with a
    /// projection), as `[T·B, O]` row-major: the logits of a token model, the predictions of
    /// a regression.
    pub fn head(&self, y: &Tensor) -> Vec<f32> {
        let o = self.task.outputs();
        let dh = self.config().output_size();
        let rows = y.len() / dh;
        let mut z: Vec<f32> = (0..rows)
            .flat_map(|_| self.head_b.data().iter().copied())
            .collect();
        f32::gemm(
            rows,
            dh,
            o,
            1.0,
            y.data(),
            dh,
            1,
            self.head_w.data(),
            1,
            dh,
            1.0,
            &mut z,
            o,
            1,
        );
        z
    }
}

/// The mean loss over `batches`, each weighted by its number of predictions `T·B` (CPU, forward
/// only, zero initial state per batch; for [`Task::MeanSquare`] this is the mean over all
/// output elements, as every row has `D·H` of them).
///
/// # Errors
/// As [`SeqModel::evaluate`].
pub fn evaluate_mean(model: &SeqModel, batches: &[Batch]) -> Result<f64> {
    let (mut total, mut count) = (0.0f64, 0usize);
    for b in batches {
        let (t, bn) = model.check_batch(b)?;
        total += model.evaluate(b, None)?.0 * (t * bn) as f64;
        count += t * bn;
    }
    Ok(total / count.max(1) as f64)
}

impl Task {
    /// Output features `O` of the head (0 for [`Task::MeanSquare`], which has none).
    pub fn outputs(&self) -> usize {
        match *self {
            Task::Tokens { vocab } => vocab,
            Task::Regression { outputs } => outputs,
            Task::MeanSquare => 0,
        }
    }

    /// Whether the model has a linear head (every task but [`Task::MeanSquare`]).
    pub fn has_head(&self) -> bool {
        !matches!(self, Task::MeanSquare)
    }
}

/// One batch of training data, time-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// Token ids `[T, B]` (row-major, time first) and the next tokens as targets.
    Tokens {
        /// Steps `T`.
        t: usize,
        /// Batch `B`.
        b: usize,
        /// Input ids, `T·B`.
        inputs: Vec<u32>,
        /// Target ids, `T·B`.
        targets: Vec<u32>,
    },
    /// Float input `[T, B, I]` and target `[T, B, O]` (`[T, B, 0]` for [`Task::MeanSquare`],
    /// whose loss needs no target: see [`Batch::input_only`]).
    Values {
        /// Input.
        input: Tensor,
        /// Target.
        target: Tensor,
    },
}

impl Batch {
    /// A [`Batch::Values`] of `input` `[T, B, I]` with the empty target `[T, B, 0]`, the batch of
    /// a [`Task::MeanSquare`] model. (An input of another rank gets the target `[0]`, and
    /// [`SeqModel::check_batch`] reports the input's shape.)
    ///
    /// # Example
    /// ```
    /// use wgpu_rnn::{Tensor, train::Batch};
    /// let b = Batch::input_only(Tensor::zeros(&[5, 2, 3]));
    /// assert!(matches!(&b, Batch::Values { target, .. } if target.shape() == &[5, 2, 0]));
    /// ```
    pub fn input_only(input: Tensor) -> Self {
        let target = match input.shape() {
            &[t, b, _] => Tensor::zeros(&[t, b, 0]),
            _ => Tensor::zeros(&[0]),
        };
        Batch::Values { input, target }
    }

    pub(crate) fn input(&self, t: usize, b: usize) -> Input<'_, f32> {
        match self {
            Batch::Tokens { inputs, .. } => Input::Tokens { ids: inputs, t, b },
            Batch::Values { input, .. } => Input::Dense(input),
        }
    }
}

/// Hyperparameters of training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    /// The optimizer.
    pub optimizer: Optimizer,
    /// Clip gradients to this global L2 norm (`None`: no clipping).
    pub clip_norm: Option<f32>,
}

/// Everything a run needs to continue: the model, the optimizer's moments (flat, in
/// [`SeqModel`]'s parameter order), the number of steps taken and the seed of the dropout
/// masks.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// The model.
    pub model: SeqModel,
    /// First moment / momentum buffer, one per parameter.
    pub m1: Vec<f32>,
    /// Second moment / sum of squares, one per parameter.
    pub m2: Vec<f32>,
    /// Optimizer steps taken.
    pub step: u64,
    /// The seed of the dropout masks (the model's `dropout`, [`RnnConfig::dropout`]): step `k`
    /// (counting from 0) draws [`crate::dropout::Dropout`] `{ p, seed: dropout_seed, step: k }`
    /// on either device, so a run's masks follow from this seed and a resumed run continues
    /// them. 0 from [`TrainState::new`].
    pub dropout_seed: u64,
}

impl TrainState {
    /// A fresh state: zero moments, step 0.
    pub fn new(model: SeqModel) -> Self {
        let n = model.num_params();
        TrainState {
            model,
            m1: vec![0.0; n],
            m2: vec![0.0; n],
            step: 0,
            dropout_seed: 0,
        }
    }

    /// This state with the dropout masks drawn from `seed` (see [`TrainState::dropout_seed`]).
    pub fn dropout_seed(mut self, seed: u64) -> Self {
        self.dropout_seed = seed;
        self
    }

    /// The masks of the next training step: `None` when the model has no dropout.
    pub(crate) fn next_dropout(&self) -> Option<crate::dropout::Dropout> {
        let p = self.model.config().dropout;
        crate::dropout::Dropout::in_training(p, self.dropout_seed, self.step)
    }
}

/// The CPU trainer: the same step as the GPU's, with host arithmetic.
struct CpuTrainer {
    state: TrainState,
    /// The last step's final state `(h_n, c_n)`, carried into the next chunk.
    h_n: Option<(Tensor, Option<Tensor>)>,
    last_shape: Option<(usize, usize)>,
    loss: f64,
}

impl CpuTrainer {
    fn step(&mut self, cfg: &TrainConfig, batch: &Batch, carry: bool) -> Result<()> {
        let model = &self.state.model;
        let (t, b) = model.check_batch(batch)?;
        // Carry only between chunks of the same shape, as the GPU does.
        let h0 = if carry { self.h_n.take() } else { None };
        let h0 = h0.filter(|_| self.last_shape == Some((t, b)));
        self.last_shape = Some((t, b));
        let input = batch.input(t, b);
        let state = State {
            h: h0.as_ref().map(|s| &s.0),
            c: h0.as_ref().and_then(|s| s.1.as_ref()),
        };
        // Training mode: dropout between the layers, masks of this step.
        let dropout = self.state.next_dropout();
        let (out, ys) = cpu::forward_trace_train(&model.rnn, input, state, dropout)?;
        let (d_y, g_w, g_b) = if model.task == Task::MeanSquare {
            // No head: ∂L/∂y = 2y/N straight into the stack's backward pass.
            let mut d_y = out.output.clone();
            self.loss = mean_square(d_y.data_mut());
            (d_y, Vec::new(), Vec::new())
        } else {
            let (loss, d_y, g_w, g_b) = head_backward(model, batch, &out.output);
            self.loss = loss;
            (d_y, g_w, g_b)
        };
        let (_, _, _, g_rnn) =
            cpu::backward_input(&model.rnn, input, state, &ys, &d_y, State::default())?;
        let mut grads = ParamLayout::new(model.config()).flatten(&g_rnn);
        let split = grads.len();
        grads.extend_from_slice(&g_w);
        grads.extend_from_slice(&g_b);
        // Same grouping as the GPU: one squared norm per buffer (stack, head weight, head bias;
        // an empty head's norms are 0).
        let sq = squared_norm(&grads[..split])
            + squared_norm(&grads[split..split + g_w.len()])
            + squared_norm(&grads[split + g_w.len()..]);
        let scale = clip_scale(sq, cfg.clip_norm);
        let mut flat = model.flatten();
        let st = &mut self.state;
        st.step += 1;
        update(
            &cfg.optimizer,
            st.step,
            scale,
            &mut flat,
            &grads,
            &mut st.m1,
            &mut st.m2,
        );
        st.model.set_flat(&flat);
        self.h_n = Some((out.h_n, out.c_n));
        Ok(())
    }
}

/// The head's forward, loss and backward on the CPU for `y` `[T, B, D·H]`: returns the mean
/// loss, `∂y = ∂z·W` `[T, B, D·H]`, `∂W = ∂zᵀ·y` `[O, D·H]` and `∂b = Σ_rows ∂z` `[O]`.
fn head_backward(model: &SeqModel, batch: &Batch, y: &Tensor) -> (f64, Tensor, Vec<f32>, Vec<f32>) {
    let o = model.task.outputs();
    let dh = model.config().output_size();
    let rows = y.len() / dh;
    let mut z = model.head(y);
    let loss = match batch {
        Batch::Tokens { targets, .. } => softmax_xent(&mut z, o, targets),
        Batch::Values { target, .. } => mse(&mut z, target.data()),
    };
    // Head backward: ∂W = ∂zᵀ·y, ∂b = Σ ∂z, ∂y = ∂z·W.
    let mut g_w = vec![0.0f32; o * dh];
    f32::gemm(
        o,
        rows,
        dh,
        1.0,
        &z,
        1,
        o,
        y.data(),
        dh,
        1,
        0.0,
        &mut g_w,
        dh,
        1,
    );
    let mut g_b = vec![0.0f32; o];
    for row in z.chunks_exact(o) {
        for (s, &v) in g_b.iter_mut().zip(row) {
            *s += v;
        }
    }
    let mut d_y = Tensor::zeros(y.shape());
    f32::gemm(
        rows,
        o,
        dh,
        1.0,
        &z,
        o,
        1,
        model.head_w.data(),
        dh,
        1,
        0.0,
        d_y.data_mut(),
        dh,
        1,
    );
    (loss, d_y, g_w, g_b)
}

enum Engine {
    Cpu(Box<CpuTrainer>),
    Gpu(Box<GpuTrainer>),
}

/// Trains a [`SeqModel`] on a [`Device`].
///
/// # Example
/// ```
/// use wgpu_rnn::{Cell, Device, RnnConfig};
/// use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer};
/// let model = SeqModel::new(RnnConfig::new(Cell::RnnTanh, 3, 8), Task::Tokens { vocab: 3 }, 0)?;
/// let cfg = TrainConfig { optimizer: Optimizer::adam(1e-2), clip_norm: Some(5.0) };
/// let mut trainer = Trainer::new(TrainState::new(model), cfg, &Device::Cpu)?;
/// let batch = Batch::Tokens { t: 4, b: 1, inputs: vec![0, 1, 2, 0], targets: vec![1, 2, 0, 1] };
/// for _ in 0..50 {
///     trainer.step(&batch, false)?;
/// }
/// assert!(trainer.loss()? < 0.5);
/// # Ok::<(), wgpu_rnn::Error>(())
/// ```
pub struct Trainer {
    cfg: TrainConfig,
    engine: Engine,
}

impl Trainer {
    /// Places the state on `device`.
    ///
    /// # Errors
    /// [`Error::Config`] when the moments do not match the model; GPU limits as
    /// [`crate::gpu::GpuRnn::new`].
    pub fn new(state: TrainState, cfg: TrainConfig, device: &Device) -> Result<Self> {
        state.model.validate()?;
        let n = state.model.num_params();
        if state.m1.len() != n || state.m2.len() != n {
            return Err(Error::config(format!(
                "optimizer state: expected {n} moments per buffer, found {} and {}",
                state.m1.len(),
                state.m2.len()
            )));
        }
        let engine = match device {
            Device::Cpu => Engine::Cpu(Box::new(CpuTrainer {
                state,
                h_n: None,
                last_shape: None,
                loss: f64::NAN,
            })),
            Device::Gpu(ctx) => Engine::Gpu(Box::new(GpuTrainer::new(ctx.clone(), &state, cfg)?)),
        };
        Ok(Trainer { cfg, engine })
    }

    /// One optimizer step on `batch`. With `carry`, the initial state is the previous step's
    /// `h_n` (and `c_n` for LSTM; truncated BPTT over consecutive chunks, the gradient stops
    /// at the chunk boundary); otherwise zeros. On the GPU this submits and returns without waiting.
    ///
    /// # Errors
    /// As [`SeqModel::check_batch`]; GPU errors as [`Error::Gpu`].
    pub fn step(&mut self, batch: &Batch, carry: bool) -> Result<()> {
        match &mut self.engine {
            Engine::Cpu(c) => c.step(&self.cfg, batch, carry),
            Engine::Gpu(g) => g.step(batch, carry),
        }
    }

    /// The mean loss of the last step (reads one scalar back from the GPU).
    ///
    /// # Errors
    /// [`Error::Gpu`] when the device fails.
    pub fn loss(&mut self) -> Result<f64> {
        match &mut self.engine {
            Engine::Cpu(c) => Ok(c.loss),
            Engine::Gpu(g) => g.loss(),
        }
    }

    /// The full training state (reads the parameters and moments back from the GPU).
    ///
    /// # Errors
    /// [`Error::Gpu`] when the device fails.
    pub fn state(&self) -> Result<TrainState> {
        match &self.engine {
            Engine::Cpu(c) => Ok(c.state.clone()),
            Engine::Gpu(g) => g.state(),
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        match &self.engine {
            Engine::Cpu(c) => c.state.step,
            Engine::Gpu(g) => g.steps(),
        }
    }

    /// The model alone (reads the parameters back from the GPU, not the optimizer moments).
    ///
    /// # Errors
    /// [`Error::Gpu`] when the device fails.
    pub fn model(&self) -> Result<SeqModel> {
        match &self.engine {
            Engine::Cpu(c) => Ok(c.state.model.clone()),
            Engine::Gpu(g) => g.model(),
        }
    }

    /// The training configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }
}

/// Generates `len` tokens from a token model on the CPU (see [`sample_on`]).
///
/// # Errors
/// As [`sample_on`].
pub fn sample(
    model: &SeqModel,
    prime: &[u32],
    len: usize,
    temperature: f32,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<Vec<u32>> {
    sample_on(model, &Device::Cpu, prime, len, temperature, rng)
}

/// Generates `len` tokens from a token model, streaming one token at a time through a
/// [`crate::Stream`] on `device` (the state stays on the device between tokens): the model
/// reads `prime` (at least one token) in one chunk, then repeatedly samples the next token
/// from `softmax(z / temperature)` of the head and feeds it back. `temperature → 0`
/// approaches the most likely token. Tokens enter as one-hot vectors, which give the same
/// input projection as the training path's gather of `weight_ih_l0`'s columns.
///
/// # Errors
/// [`Error::Config`] for a regression model, an empty prime, a token outside the vocabulary,
/// a temperature that is not a positive finite number (each with its own message), or a
/// bidirectional model; on the GPU as [`crate::Stream::new`].
pub fn sample_on(
    model: &SeqModel,
    device: &Device,
    prime: &[u32],
    len: usize,
    temperature: f32,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<Vec<u32>> {
    use rand::RngExt;
    let Task::Tokens { vocab } = model.task else {
        return Err(Error::config(
            "sample: the model predicts values, not tokens",
        ));
    };
    if prime.is_empty() {
        return Err(Error::config(
            "sample: the prime is empty; it needs at least one token for the model to read",
        ));
    }
    // Zero, negative, NaN and infinite temperatures are all refused (no greedy mode).
    if !temperature.is_finite() || temperature <= 0.0 {
        return Err(Error::config(format!(
            "sample: temperature must be a finite number > 0, found {temperature}"
        )));
    }
    if let Some(&bad) = prime.iter().find(|&&p| p as usize >= vocab) {
        return Err(Error::config(format!(
            "sample: token {bad} is outside the vocabulary of {vocab}"
        )));
    }
    let one_hot = |ids: &[u32]| {
        let mut x = Tensor::zeros(&[ids.len(), 1, vocab]);
        for (row, &id) in x.data_mut().chunks_exact_mut(vocab).zip(ids) {
            row[id as usize] = 1.0;
        }
        x
    };
    let mut stream = crate::Stream::new(model.rnn.clone(), device, 1)?;
    let out = stream.feed(&one_hot(prime))?;
    let dh = model.config().output_size();
    let mut last = Tensor::new(
        vec![1, 1, dh],
        out.data()[(prime.len() - 1) * dh..].to_vec(),
    )?;
    let mut tokens = Vec::with_capacity(len);
    for _ in 0..len {
        let z = model.head(&last);
        let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let p: Vec<f64> = z
            .iter()
            .map(|&v| (((v - m) / temperature) as f64).exp())
            .collect();
        let total: f64 = p.iter().sum();
        let mut u = rng.random_range(0.0..total);
        let mut next = vocab - 1;
        for (i, &pi) in p.iter().enumerate() {
            if u < pi {
                next = i;
                break;
            }
            u -= pi;
        }
        tokens.push(next as u32);
        last = stream.feed(&one_hot(&[next as u32]))?;
    }
    Ok(tokens)
}
