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
    /// The CPU path (`matrixmultiply` GEMMs).
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
        })
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
    /// For an LSTM, `&h0` alone means `c0 = 0` (PyTorch asks for both or neither).
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
        let state = state.into();
        match &mut self.engine {
            Engine::Cpu(trace) => {
                *trace = None;
                let (out, tr) = cpu::forward_trace(&self.params, input, state)?;
                *trace = Some(Box::new((
                    input.clone(),
                    state.h.cloned(),
                    state.c.cloned(),
                    tr,
                )));
                Ok(out)
            }
            Engine::Gpu(g) => g.forward(input, state),
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
        match &mut self.engine {
            Engine::Cpu(None) => Err(crate::Error::config(
                "backward: no forward pass to differentiate; call forward first",
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
