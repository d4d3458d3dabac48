//! The GPU path: context (adapter, device, limits), kernels (the WGSL sources and the
//! pipeline cache), ops (dispatches as data) and the Elman stack. Every call into wgpu's API
//! lives in this folder, so an upgrade of wgpu touches nothing else.

mod context;
mod cost;
pub mod kernels;
mod ops;
mod rnn;
mod train;

pub use context::{AdapterOptions, GpuContext, list_adapters};
pub use cost::CostConstants;
pub use ops::{GemmPlan, GemmSpec, KernelTime, gemm};
pub use rnn::GpuRnn;
pub use train::GpuTrainer;
