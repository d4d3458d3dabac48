//! # wgpu-rnn
//!
//! Recurrent neural networks whose hot loops are WGSL compute kernels run through
//! [wgpu](https://wgpu.rs), on any Vulkan, Metal, DX12 or GL adapter, with a CPU path that
//! computes the same functions.
//!
//! ## What it computes
//!
//! PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU`, with the same equations, weight names and
//! layouts. For layer `l`, direction `d` and step `t` ([`Cell`]):
//!
//! ```text
//! Elman  h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)            act = tanh or relu
//! LSTM   i,f,g,o = σ,σ,tanh,σ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
//!        c_t = f⊙c_{t-1} + i⊙g,  h_t = o⊙tanh(c_t)
//! GRU    r,z = σ(W_i{r,z} x_t + b_i{r,z} + W_h{r,z} h_{t-1} + b_h{r,z})
//!        n = tanh(W_in x_t + b_in + r⊙(W_hn h_{t-1} + b_hn)),  h_t = (1-z)⊙n + z⊙h_{t-1}
//! ```
//!
//! where `x_t` is the input for layer 0 and the output of the layer below otherwise, and the
//! reverse direction runs `t = T-1 .. 0`. What distinguishes one cell from another is in
//! [`cell`]: the engine's passes are the same for all.
//!
//! ## Data layout
//!
//! Row-major tensors, time-major sequences by default (PyTorch's `batch_first=False`; [`Rnn`]
//! also takes batch-first and unbatched tensors, and variable-length batches):
//! `input` `[T, B, I]`, `output` `[T, B, D·H]` (forward direction's `H` first),
//! `h0`/`h_n` (and `c0`/`c_n` for LSTM) `[L·D, B, H]` indexed `layer·D + direction`, passed
//! as a [`State`]. Weights as PyTorch names them: `weight_ih_l{k}` `[G·H, I_l]`,
//! `weight_hh_l{k}` `[G·H, H]`, `bias_ih_l{k}`, `bias_hh_l{k}` `[G·H]`, with `_reverse` for
//! the backward direction (`G` = 1 for Elman, 4 for LSTM in the order i, f, g, o, 3 for GRU in
//! the order r, z, n).
//!
//! ## Adapters
//!
//! [`gpu::GpuContext::new`] honours `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF`.
//! Without a GPU, Mesa's software drivers work: lavapipe (Vulkan, Debian package
//! `mesa-vulkan-drivers`) or llvmpipe (`WGPU_BACKEND=gl`).
//!
//! ## Rules every kernel and reader follows
//!
//! Three kinds of silent wrong answer are ruled out by rules, which new code follows:
//!
//! 1. **A loop budget per kernel invocation.** No loop of a WGSL kernel may run a number of
//!    iterations that grows with the data (`T`, `B`, `input_size`): Mesa's software adapters
//!    end an invocation's loops after 65,535 iterations without an error. Each kernel states
//!    its count in [`gpu::kernels::budget`] and stays within a quarter of the cap; long
//!    reductions are split across workgroups or dispatches and summed in a fixed order, and a
//!    model size that only a loop growing with the model reaches (`hidden_size` of the step
//!    kernels, the classes of the softmax) has a stated maximum, refused with [`Error::Limit`].
//! 2. **PyTorch's non-finite semantics.** Inputs that are not finite (weights, `input`, `h0`,
//!    `grad_output`) are an error naming the tensor. Values that become non-finite during the
//!    computation propagate as in PyTorch's float32 CPU path, forward and backward:
//!    `relu(NaN) = NaN`, relu's gradient is blocked only where its output is `<= 0`,
//!    `tanh(±inf) = ±1`, `tanh(NaN) = NaN`, `σ(-inf) = 0`, `σ(inf) = 1`, `σ(NaN) = NaN`, and
//!    a NaN gradient norm makes clipping's scale NaN.
//!    WGSL promises nothing for NaN in `max`, `min` or `clamp` and lets a compiler assume
//!    there is none, so kernels test NaN on the bits and choose with `select`.
//! 3. **No hand-written parsers for standard formats.** CSV, safetensors and command lines are
//!    read by well-kept crates (`csv`, `safetensors`, `clap`), never by splitting strings.
//!
//! ## Example
//!
//! ```
//! use wgpu_rnn::{Cell, Device, Rnn, RnnConfig, RnnParams, Tensor};
//!
//! let config = RnnConfig::new(Cell::RnnTanh, 4, 8).layers(2).bidirectional(true);
//! let params = RnnParams::random(config, 0);
//! // Device::Gpu(GpuContext::new(&AdapterOptions::default())?) runs the same on a GPU.
//! let mut rnn = Rnn::new(params, &Device::Cpu)?;
//! let x = Tensor::new(vec![5, 2, 4], vec![0.1; 40])?;
//! let out = rnn.forward(&x, None)?;
//! assert_eq!(out.output.shape(), &[5, 2, 16]);
//! # Ok::<(), wgpu_rnn::Error>(())
//! ```

#![warn(missing_docs)]

pub mod cell;
pub mod config;
pub mod cpu;
pub mod dropout;
pub mod error;
pub mod gpu;
pub mod io;
pub mod model;
pub mod params;
pub mod state;
pub mod stream;
pub mod suite;
pub mod tensor;
pub mod train;

pub use config::{Cell, RnnConfig};
pub use error::{Error, Result};
pub use io::{IntTensor, TensorFile};
pub use model::{Device, Rnn};
pub use params::{LayerParams, RnnParams};
pub use state::{ForwardOutput, Gradients, State};
pub use stream::Stream;
pub use tensor::{Float, Tensor};

// The README's Rust examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
