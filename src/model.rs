//! One model type over both devices.

use std::sync::Arc;

use crate::cpu::{self, ForwardOutput};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuRnn};
use crate::params::RnnParams;
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

enum Engine {
    Cpu,
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
        let engine = match device {
            Device::Cpu => Engine::Cpu,
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

    /// PyTorch's `nn.RNN.forward(input, h0)`: `input` `[T, B, I]`, `h0` `[L·D, B, H]` (zeros
    /// when `None`); returns `output` `[T, B, D·H]` and `h_n` `[L·D, B, H]`.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] naming `input` or `h0`; on the GPU also [`crate::Error::Limit`]
    /// and [`crate::Error::Gpu`].
    pub fn forward(&mut self, input: &Tensor, h0: Option<&Tensor>) -> Result<ForwardOutput> {
        match &mut self.engine {
            Engine::Cpu => cpu::forward(&self.params, input, h0),
            Engine::Gpu(g) => g.forward(input, h0),
        }
    }
}
