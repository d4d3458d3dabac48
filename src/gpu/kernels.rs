//! The WGSL kernels: their sources (one constant per file), names, bind group layouts and
//! pipeline creation. Every `include_str!` of a shader is here and nowhere else.

use bytemuck::{Pod, Zeroable};

/// `shaders/gemm.wgsl`: tiled, strided `C ← αAB (+ bias) (+ C)`.
pub const GEMM: &str = include_str!("../../shaders/gemm.wgsl");
/// `shaders/rnn_step.wgsl`: one fused Elman time step for both directions of a layer.
pub const RNN_STEP: &str = include_str!("../../shaders/rnn_step.wgsl");
/// `shaders/rnn_step_bwd.wgsl`: one reverse-time step of BPTT for both directions of a layer.
pub const RNN_STEP_BWD: &str = include_str!("../../shaders/rnn_step_bwd.wgsl");

/// `shaders/prepare.wgsl`: derived weights (transposed `W_hh`, folded bias).
pub const PREPARE: &str = include_str!("../../shaders/prepare.wgsl");
/// `shaders/embed.wgsl`: token input as a gather of columns of `W_ih`.
pub const EMBED: &str = include_str!("../../shaders/embed.wgsl");
/// `shaders/embed_bwd.wgsl`: the gather's gradient, a fixed-order scatter.
pub const EMBED_BWD: &str = include_str!("../../shaders/embed_bwd.wgsl");
/// `shaders/loss.wgsl`: softmax cross-entropy and mean squared error, fused with gradients.
pub const LOSS: &str = include_str!("../../shaders/loss.wgsl");
/// `shaders/reduce.wgsl`: deterministic one-workgroup sums.
pub const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
/// `shaders/colsum.wgsl`: column sums (bias gradients), in a fixed order.
pub const COLSUM: &str = include_str!("../../shaders/colsum.wgsl");
/// `shaders/optim.wgsl`: SGD (momentum), Adam, Adagrad with global-norm clipping.
pub const OPTIM: &str = include_str!("../../shaders/optim.wgsl");

/// Most storage buffers any kernel binds (the step kernel: 5).
pub(crate) const MAX_STORAGE_BINDINGS: u32 = 5;
/// Most invocations of any kernel's workgroup (the one-workgroup reductions: 256).
pub(crate) const MAX_INVOCATIONS: u32 = 256;
/// Output tile of the GEMM kernel (rows and columns per workgroup).
pub(crate) const GEMM_TILE: u32 = 64;
/// Hidden units per workgroup of the step kernels (64 threads × 4 units).
pub(crate) const STEP_UNITS: u32 = 256;
/// Batch rows per workgroup of the step kernels (`ROWS` in `shaders/rnn_step.wgsl` and
/// `shaders/rnn_step_bwd.wgsl`, 8 per thread): a step dispatches `⌈B / STEP_ROWS⌉` workgroups
/// along y, so `B` may be at most `STEP_ROWS · max_compute_workgroups_per_dimension`.
pub const STEP_ROWS: u32 = 8;
/// Alignment of per-step uniforms (WebGPU's maximum `min_uniform_buffer_offset_alignment`).
pub(crate) const UNIFORM_STRIDE: u64 = 256;

/// The kernels, used as the pipeline cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `shaders/gemm.wgsl`.
    Gemm,
    /// `shaders/rnn_step.wgsl`.
    RnnStep,
    /// `shaders/rnn_step_bwd.wgsl`.
    RnnStepBwd,
    /// `shaders/prepare.wgsl`.
    Prepare,
    /// `shaders/embed.wgsl`.
    Embed,
    /// `shaders/embed_bwd.wgsl`.
    EmbedBwd,
    /// `shaders/loss.wgsl`, entry `softmax_xent`.
    SoftmaxXent,
    /// `shaders/loss.wgsl`, entry `mse`.
    Mse,
    /// `shaders/reduce.wgsl`, entry `sum`.
    Sum,
    /// `shaders/reduce.wgsl`, entry `sumsq`.
    SumSq,
    /// `shaders/optim.wgsl`.
    Optim,
    /// `shaders/colsum.wgsl`.
    ColSum,
}

#[derive(Clone, Copy)]
enum Binding {
    Uniform,
    DynamicUniform,
    Read,
    ReadWrite,
}

impl Kernel {
    /// Every kernel, for validation tests.
    pub const ALL: [Kernel; 12] = [
        Kernel::Gemm,
        Kernel::RnnStep,
        Kernel::RnnStepBwd,
        Kernel::Prepare,
        Kernel::Embed,
        Kernel::EmbedBwd,
        Kernel::SoftmaxXent,
        Kernel::Mse,
        Kernel::Sum,
        Kernel::SumSq,
        Kernel::Optim,
        Kernel::ColSum,
    ];

    /// The entry point in [`Kernel::source`].
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::SoftmaxXent => "softmax_xent",
            Kernel::Mse => "mse",
            Kernel::Sum => "sum",
            Kernel::SumSq => "sumsq",
            _ => "main",
        }
    }

    /// The WGSL source.
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Gemm => GEMM,
            Kernel::RnnStep => RNN_STEP,
            Kernel::RnnStepBwd => RNN_STEP_BWD,
            Kernel::Prepare => PREPARE,
            Kernel::Embed => EMBED,
            Kernel::EmbedBwd => EMBED_BWD,
            Kernel::SoftmaxXent | Kernel::Mse => LOSS,
            Kernel::Sum | Kernel::SumSq => REDUCE,
            Kernel::Optim => OPTIM,
            Kernel::ColSum => COLSUM,
        }
    }

    fn bindings(self) -> &'static [Binding] {
        use Binding::*;
        match self {
            Kernel::Gemm => &[Uniform, Read, Read, Read, ReadWrite],
            Kernel::RnnStep => &[
                Uniform,
                DynamicUniform,
                Read,
                Read,
                Read,
                ReadWrite,
                ReadWrite,
            ],
            Kernel::RnnStepBwd => &[Uniform, DynamicUniform, Read, Read, Read, Read, ReadWrite],
            Kernel::Prepare => &[Uniform, Read, ReadWrite, ReadWrite],
            Kernel::Embed => &[Uniform, Read, Read, Read, ReadWrite],
            Kernel::EmbedBwd => &[Uniform, Read, Read, ReadWrite],
            Kernel::SoftmaxXent | Kernel::Mse => &[Uniform, Read, ReadWrite, ReadWrite],
            Kernel::Sum | Kernel::SumSq => &[Uniform, Read, ReadWrite],
            Kernel::Optim => &[Uniform, Read, Read, ReadWrite, ReadWrite, ReadWrite],
            Kernel::ColSum => &[Uniform, Read, ReadWrite],
        }
    }
}

/// Parses and validates `source` with naga, as wgpu would before creating a pipeline.
///
/// # Errors
/// The parser's or validator's message, with the offending source location.
pub fn validate_wgsl(source: &str) -> Result<(), String> {
    use wgpu::naga;
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    Ok(())
}

pub(crate) fn build_pipeline(
    device: &wgpu::Device,
    kernel: Kernel,
) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
        .bindings()
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match b {
                Binding::Uniform | Binding::DynamicUniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: matches!(b, Binding::DynamicUniform),
                    min_binding_size: None,
                },
                Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: matches!(b, Binding::Read),
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
            },
            count: None,
        })
        .collect();
    let label = format!("{kernel:?}");
    let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(&label),
        entries: &entries,
    });
    let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(&label),
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&label),
        source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&label),
        layout: Some(&layout),
        module: &module,
        entry_point: Some(kernel.entry_point()),
        compilation_options: wgpu::PipelineCompilationOptions::default(),
        cache: None,
    });
    (pipeline, bgl)
}

/// Uniform of `shaders/gemm.wgsl` (`Params`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    pub a_off: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub _pad0: u32,
    pub b_off: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    pub _pad1: u32,
    pub c_off: u32,
    pub c_rs: u32,
    pub alpha: f32,
    pub _pad2: u32,
}

impl GemmParams {
    pub const FLAG_BIAS: u32 = 1;
    pub const FLAG_ACCUMULATE: u32 = 2;

    pub fn workgroups(&self) -> [u32; 3] {
        [self.n.div_ceil(GEMM_TILE), self.m.div_ceil(GEMM_TILE), 1]
    }
}

/// Uniform `Dims` of `shaders/rnn_step.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct StepDims {
    pub batch: u32,
    pub hidden: u32,
    pub dirs: u32,
    pub act: u32,
    pub state0: u32,
    /// Offset of the layer's `weight_hh` in the flat parameters (read by the backward step).
    pub w_off: u32,
    pub _pad: [u32; 2],
}

/// Uniform `Step` of `shaders/rnn_step.wgsl`, one per step at [`UNIFORM_STRIDE`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct StepParams {
    pub t_fwd: u32,
    pub t_rev: u32,
    pub first: u32,
    pub last: u32,
}

/// Uniform `Hyper` of `shaders/optim.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct OptimHyper {
    pub n: u32,
    pub kind: u32,
    pub n_norms: u32,
    pub p_off: u32,
    pub lr: f32,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub bc1: f32,
    pub bc2: f32,
    pub max_norm: f32,
}

/// Uniform `Dims` of `shaders/prepare.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct PrepareDims {
    pub dirs: u32,
    pub hidden: u32,
    pub w_hh_off: u32,
    pub b_ih_off: u32,
    pub b_hh_off: u32,
    pub has_bias: u32,
    pub _pad: [u32; 2],
}

/// Uniform `Dims` of `shaders/embed.wgsl` and `shaders/embed_bwd.wgsl` (`w_off` is the
/// offset of `weight_ih_l0`, or of its gradient; `has_bias` is read by the gather only).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct EmbedDims {
    pub rows: u32,
    pub cols: u32,
    pub vocab: u32,
    pub w_off: u32,
    pub has_bias: u32,
    pub _pad: [u32; 3],
}

/// Uniform `Dims` of `shaders/loss.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct LossDims {
    pub rows: u32,
    pub cols: u32,
    pub _pad: [u32; 2],
}

/// Uniform `Dims` of `shaders/reduce.wgsl`: `out[slot] = Σ src[off .. off + n]` (or of squares).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct ReduceDims {
    pub n: u32,
    pub off: u32,
    pub slot: u32,
    pub _pad: u32,
}

/// Uniform `Dims` of `shaders/colsum.wgsl`:
/// `out[out0 + n] = out[out1 + n] = Σ_r a[a_off + r·a_rs + n]` for `n < cols`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct ColSumDims {
    pub rows: u32,
    pub cols: u32,
    pub a_off: u32,
    pub a_rs: u32,
    pub out0: u32,
    pub out1: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}
