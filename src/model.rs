//! One model type over both devices.

use std::sync::Arc;

use crate::cpu::{self, Trace};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuRnn};
use crate::params::RnnParams;
use crate::state::{ForwardOutput, Gradients, State};
use crate::tensor::Tensor;

/// Where a model runs.
#[derive(Debug, Clone)]
pub enum Device {
    /// The CPU path (the `gemm` crate's GEMMs).
    Cpu,
    /// A wgpu device; share one context between models.
    Gpu(Arc<GpuContext>),
}

impl Device {
    /// `"cpu"`, or the adapter's name and backend.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Gpu(ctx) => ctx.describe(),
        }
    }
}

/// The CPU's record of the last forward pass: input, `h0`, `c0` and the trace.
type CpuTrace = (Tensor, Option<Tensor>, Option<Tensor>, Trace);

enum Engine {
    Cpu(Option<Box<CpuTrace>>),
    Gpu(Box<GpuRnn>),
}

/// A recurrent stack with PyTorch's semantics, running on a chosen [`Device`] with the same
/// API and the same results up to rounding.
///
/// # Example
/// ```
/// use wgpu_rnn::{Cell, Device, Rnn, RnnConfig, RnnParams, Tensor};
/// let params = RnnParams::random(RnnConfig::new(Cell::RnnTanh, 4, 8).layers(2), 42);
/// let mut rnn = Rnn::new(params, &Device::Cpu)?;
/// let out = rnn.forward(&Tensor::zeros(&[10, 3, 4]), None)?;
/// assert_eq!(out.output.shape(), &[10, 3, 8]);
/// assert_eq!(out.h_n.shape(), &[2, 3, 8]);
/// # Ok::<(), wgpu_rnn::Error>(())
/// ```
pub struct Rnn {
    params: RnnParams<f32>,
    device: Device,
    engine: Engine,
    /// The layout of the last forward pass's tensors, which its backward pass takes too.
    layout: Layout,
    /// Whether a forward pass keeps what [`Rnn::backward`] needs ([`Rnn::set_grad_enabled`]).
    grad: bool,
}

/// How a call lays out its sequences: PyTorch's `nn.RNN` takes batched time-major input
/// `[T, B, I]`, batched batch-first input `[B, T, I]` (`batch_first=True`), or unbatched input
/// `[T, I]` with states `[L·D, H]`. The engine runs time-major; the others are converted at the
/// call's edges (a copy on the host), bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    TimeMajor,
    BatchFirst,
    Unbatched,
}

/// `[a, b, rest..]` → `[b, a, rest..]` (a copy).
fn swap01(t: &Tensor) -> Tensor {
    let s = t.shape();
    let (a, b) = (s[0], s[1]);
    let row: usize = s[2..].iter().product();
    let mut data = Vec::with_capacity(t.len());
    for j in 0..b {
        for i in 0..a {
            data.extend_from_slice(&t.data()[(i * b + j) * row..][..row]);
        }
    }
    let mut shape = s.to_vec();
    shape.swap(0, 1);
    Tensor::new(shape, data).expect("same element count")
}

/// `t` with a unit dimension inserted at `at` (or removed from it), same data.
fn reshape(t: &Tensor, shape: Vec<usize>) -> Tensor {
    Tensor::new(shape, t.data().to_vec()).expect("same element count")
}

impl Layout {
    /// The input, in the engine's time-major batched layout.
    fn input_in(self, x: &Tensor) -> Tensor {
        match self {
            Layout::TimeMajor => x.clone(),
            Layout::BatchFirst => swap01(x),
            Layout::Unbatched => reshape(x, vec![x.shape()[0], 1, x.shape()[1]]),
        }
    }

    /// A time-major batched `[T, B, F]` result back in this layout.
    fn sequence_out(self, y: Tensor) -> Tensor {
        match self {
            Layout::TimeMajor => y,
            Layout::BatchFirst => swap01(&y),
            Layout::Unbatched => reshape(&y, vec![y.shape()[0], y.shape()[2]]),
        }
    }

    /// A caller's state `[L·D, H]` (unbatched) as `[L·D, 1, H]`, checked against `shape`.
    fn state_in(self, t: Option<&Tensor>, name: &str, shape: [usize; 2]) -> Result<Option<Tensor>> {
        match (self, t) {
            (Layout::Unbatched, Some(t)) => {
                t.expect_shape(name, &shape)?;
                Ok(Some(reshape(t, vec![shape[0], 1, shape[1]])))
            }
            (_, t) => Ok(t.cloned()),
        }
    }

    /// A `[L·D, B, H]` state back in this layout.
    fn state_out(self, t: Tensor) -> Tensor {
        match self {
            Layout::Unbatched => reshape(&t, vec![t.shape()[0], t.shape()[2]]),
            _ => t,
        }
    }
}

impl Rnn {
    /// Places `params` on `device` (uploading the weights for a GPU).
    ///
    /// # Errors
    /// [`crate::Error::Limit`] when a weight exceeds a device limit.
    pub fn new(params: RnnParams<f32>, device: &Device) -> Result<Self> {
        params.validate()?;
        let engine = match device {
            Device::Cpu => Engine::Cpu(None),
            Device::Gpu(ctx) => Engine::Gpu(Box::new(GpuRnn::new(ctx.clone(), &params)?)),
        };
        Ok(Rnn {
            params,
            device: device.clone(),
            engine,
            layout: Layout::TimeMajor,
            grad: true,
        })
    }

    /// Whether forward passes keep what [`Rnn::backward`] needs (on by default): PyTorch's
    /// `torch.set_grad_enabled`. Off, a forward pass is inference only, as under
    /// `torch.no_grad()`: on the CPU it keeps no record of the pass (the cells' saved
    /// activations, `S·H` values per step and row, are the largest; the input and state are
    /// not copied), which makes it faster and smaller; on the GPU it runs as before. In both
    /// cases [`Rnn::backward`] after such a pass is an error.
    ///
    /// # Example
    /// ```
    /// use wgpu_rnn::{Cell, Device, Rnn, RnnConfig, RnnParams, Tensor};
    /// let mut rnn = Rnn::new(RnnParams::random(RnnConfig::new(Cell::Lstm, 2, 3), 0), &Device::Cpu)?;
    /// rnn.set_grad_enabled(false);
    /// let out = rnn.forward(&Tensor::full(&[4, 1, 2], 0.5), None)?;
    /// assert!(rnn.backward(&Tensor::full(out.output.shape(), 1.0), None).is_err());
    /// # Ok::<(), wgpu_rnn::Error>(())
    /// ```
    pub fn set_grad_enabled(&mut self, enabled: bool) {
        self.grad = enabled;
    }

    /// Whether forward passes keep what [`Rnn::backward`] needs ([`Rnn::set_grad_enabled`]).
    pub fn grad_enabled(&self) -> bool {
        self.grad
    }

    /// The parameters (host copy).
    pub fn params(&self) -> &RnnParams<f32> {
        &self.params
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// PyTorch's `nn.RNN.forward(input, h0)` (`nn.LSTM`'s `(input, (h0, c0))`): `input`
    /// `[T, B, I]`, `state` the initial [`State`] `h0` (and `c0`) `[L·D, B, H]` each, zeros
    /// when absent; returns `output` `[T, B, D·H]`, `h_n` (and `c_n`) `[L·D, B, H]`.
    ///
    /// As PyTorch: with the config's `batch_first`, `input` is `[B, T, I]` and `output`
    /// `[B, T, D·H]` (states unchanged); an unbatched `input` `[T, I]` takes and returns states
    /// `[L·D, H]` and returns `output` `[T, D·H]`. For an LSTM, `&h0` alone means `c0 = 0`
    /// (PyTorch asks for both or neither).
    ///
    /// # Errors
    /// [`crate::Error::Shape`] naming `input`, `h0` or `c0`; [`crate::Error::Config`] when `T`
    /// or `B` is 0 or a `c0` is given to a cell without a cell state;
    /// [`crate::Error::NonFinite`] naming a tensor holding NaN or infinity; on the GPU also
    /// [`crate::Error::Limit`] and [`crate::Error::Gpu`].
    pub fn forward<'a>(
        &mut self,
        input: &Tensor,
        state: impl Into<State<'a>>,
    ) -> Result<ForwardOutput> {
        self.forward_impl(input, state.into(), None)
    }

    /// [`Rnn::forward`] for a variable-length batch (PyTorch's packed sequences): row `b`'s
    /// sequence is its first `lengths[b]` steps, in any order; `output` keeps all `T` steps,
    /// zero past each row's end (as `pad_packed_sequence(..., total_length=T)`); `h_n`
    /// (`c_n`) is each row's state after its own last step; the reverse direction starts at
    /// each row's own end; [`Rnn::backward`] then passes gradients only through valid steps.
    /// A batch whose lengths are all `T` is the plain batch.
    ///
    /// # Errors
    /// As [`Rnn::forward`]; [`crate::Error::Config`] naming `lengths` (its count, or an entry
    /// outside `1..=T` with its index and value).
    ///
    /// # Example
    /// ```
    /// use wgpu_rnn::{Cell, Device, Rnn, RnnConfig, RnnParams, Tensor};
    /// let mut rnn = Rnn::new(RnnParams::random(RnnConfig::new(Cell::Gru, 2, 3), 0), &Device::Cpu)?;
    /// let out = rnn.forward_with_lengths(&Tensor::full(&[4, 2, 2], 0.5), None, &[4, 2])?;
    /// assert!(out.output.data()[(3 * 2 + 1) * 3..][..3].iter().all(|&v| v == 0.0));
    /// # Ok::<(), wgpu_rnn::Error>(())
    /// ```
    pub fn forward_with_lengths<'a>(
        &mut self,
        input: &Tensor,
        state: impl Into<State<'a>>,
        lengths: &[usize],
    ) -> Result<ForwardOutput> {
        self.forward_impl(input, state.into(), Some(lengths))
    }

    fn forward_impl(
        &mut self,
        input: &Tensor,
        state: State<'_>,
        lengths: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        let cfg = *self.params.config();
        let layout = match (input.shape().len(), cfg.batch_first) {
            (2, _) => Layout::Unbatched,
            (3, true) => Layout::BatchFirst,
            _ => Layout::TimeMajor,
        };
        // A forward that fails, here or in the engine, leaves nothing to differentiate.
        self.layout = Layout::TimeMajor;
        match &mut self.engine {
            Engine::Cpu(trace) => *trace = None,
            Engine::Gpu(g) => g.forget_forward(),
        }
        if layout == Layout::TimeMajor {
            return self.forward_time_major(input, state, lengths);
        }
        if layout == Layout::Unbatched && input.shape()[1] != cfg.input_size {
            return Err(crate::Error::shape(
                "input",
                &[input.shape()[0], cfg.input_size],
                input.shape(),
            ));
        }
        let ld = cfg.num_layers * cfg.directions();
        let h0 = layout.state_in(state.h, "h0", [ld, cfg.real_hidden_size()])?;
        let c0 = layout.state_in(state.c, "c0", [ld, cfg.hidden_size])?;
        let x = layout.input_in(input);
        let out = self.forward_time_major(
            &x,
            State {
                h: h0.as_ref(),
                c: c0.as_ref(),
            },
            lengths,
        )?;
        if self.grad {
            // The layout a backward pass takes; without gradients there is none to take.
            self.layout = layout;
        }
        Ok(ForwardOutput {
            output: layout.sequence_out(out.output),
            h_n: layout.state_out(out.h_n),
            c_n: out.c_n.map(|c| layout.state_out(c)),
        })
    }

    fn forward_time_major(
        &mut self,
        input: &Tensor,
        state: State<'_>,
        lengths: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        match &mut self.engine {
            Engine::Cpu(_) if !self.grad => {
                let (t, b) = cpu::check_inputs(self.params.config(), input, state)?;
                let lengths = match lengths {
                    Some(l) => {
                        let l: Vec<i64> = l.iter().map(|&v| v as i64).collect();
                        cpu::check_lengths(&l, t, b)?
                    }
                    None => vec![t; b],
                };
                let input = cpu::Input::Dense(input);
                cpu::forward_no_grad(&self.params, input, state, &lengths)
            }
            Engine::Gpu(g) if !self.grad => {
                let out = g.forward_lengths(input, state, lengths)?;
                g.forget_forward();
                Ok(out)
            }
            Engine::Cpu(trace) => {
                *trace = None;
                let (out, tr) = match lengths {
                    Some(l) => cpu::forward_trace_with_lengths(&self.params, input, state, l)?,
                    None => cpu::forward_trace(&self.params, input, state)?,
                };
                *trace = Some(Box::new((
                    input.clone(),
                    state.h.cloned(),
                    state.c.cloned(),
                    tr,
                )));
                Ok(out)
            }
            Engine::Gpu(g) => g.forward_lengths(input, state, lengths),
        }
    }

    /// Backpropagation through time for the last [`Rnn::forward`]: the gradients of
    /// `L = Σ output·grad_output + Σ h_n·grad_h_n (+ Σ c_n·grad_c_n)` with respect to the
    /// input, `h0` (`c0`) and every parameter (PyTorch's `torch.autograd.grad` of that `L`).
    /// `grad_state` holds `grad_h_n` (and `grad_c_n`), zeros when absent.
    ///
    /// # Errors
    /// [`crate::Error::Config`] when no forward pass preceded it, [`crate::Error::Shape`]
    /// naming `grad_output`, `grad_h_n` or `grad_c_n`; on the GPU also [`crate::Error::Gpu`].
    ///
    /// # Example
    /// ```
    /// use wgpu_rnn::{Cell, Device, Rnn, RnnConfig, RnnParams, Tensor};
    /// let mut rnn = Rnn::new(RnnParams::random(RnnConfig::new(Cell::RnnTanh, 2, 3), 0), &Device::Cpu)?;
    /// let out = rnn.forward(&Tensor::full(&[4, 1, 2], 0.5), None)?;
    /// let g = rnn.backward(&Tensor::full(out.output.shape(), 1.0), None)?;
    /// assert_eq!(g.input.shape(), &[4, 1, 2]);
    /// # Ok::<(), wgpu_rnn::Error>(())
    /// ```
    pub fn backward<'a>(
        &mut self,
        grad_output: &Tensor,
        grad_state: impl Into<State<'a>>,
    ) -> Result<Gradients> {
        let grad_state = grad_state.into();
        let layout = self.layout;
        if layout == Layout::TimeMajor {
            return self.backward_time_major(grad_output, grad_state);
        }
        let cfg = *self.params.config();
        let ld = cfg.num_layers * cfg.directions();
        if layout == Layout::Unbatched && grad_output.shape().len() != 2 {
            let t = grad_output.shape().first().copied().unwrap_or(0);
            return Err(crate::Error::shape(
                "grad_output",
                &[t, cfg.output_size()],
                grad_output.shape(),
            ));
        }
        if layout == Layout::BatchFirst && grad_output.shape().len() != 3 {
            return Err(crate::Error::config(format!(
                "grad_output: expected [B, T, D·H] (batch_first), found shape {:?}",
                grad_output.shape()
            )));
        }
        let gh = layout.state_in(grad_state.h, "grad_h_n", [ld, cfg.real_hidden_size()])?;
        let gc = layout.state_in(grad_state.c, "grad_c_n", [ld, cfg.hidden_size])?;
        let gy = layout.input_in(grad_output);
        let g = self.backward_time_major(
            &gy,
            State {
                h: gh.as_ref(),
                c: gc.as_ref(),
            },
        )?;
        Ok(Gradients {
            input: layout.sequence_out(g.input),
            h0: layout.state_out(g.h0),
            c0: g.c0.map(|c| layout.state_out(c)),
            params: g.params,
        })
    }

    fn backward_time_major(
        &mut self,
        grad_output: &Tensor,
        grad_state: State<'_>,
    ) -> Result<Gradients> {
        match &mut self.engine {
            Engine::Cpu(None) => Err(crate::Error::config(
                "backward: no forward pass to differentiate; call forward first, with \
                 gradients enabled (set_grad_enabled)",
            )),
            Engine::Cpu(Some(t)) => {
                let (x, h0, c0, trace) = &**t;
                let state = State {
                    h: h0.as_ref(),
                    c: c0.as_ref(),
                };
                cpu::backward(&self.params, x, state, trace, grad_output, grad_state)
            }
            Engine::Gpu(g) => g.backward(grad_output, grad_state),
        }
    }
}
