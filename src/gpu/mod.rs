//! The GPU path: context (adapter, device, limits), kernels (the WGSL sources and the
//! pipeline cache), buffers, ops (dispatches as data) and the recurrent stack. Every call into
//! wgpu's API lives in this folder, so an upgrade of wgpu touches nothing else: code elsewhere
//! (the trainer) holds the crate's `Buffer`s and records through its `Recorder` and `Encoder`.

mod buffer;
mod context;
mod cost;
pub mod kernels;
mod ops;
mod rnn;
mod stream;

pub(crate) use buffer::{Buffer, read};
pub use context::{AdapterOptions, GpuContext, list_adapters};
pub use cost::CostConstants;
pub(crate) use ops::{Encoder, Op, Recorder, linear_groups, profile};
pub use ops::{GemmPlan, GemmSpec, KernelTime, dropout, gemm};
pub use rnn::GpuRnn;
pub(crate) use rnn::StackStep;
pub use stream::GpuStream;
