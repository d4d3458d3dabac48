//! The WGSL kernels: their sources (one constant per file), names, bind group layouts and
//! pipeline creation. Every `include_str!` of a shader is here and nowhere else.

use std::borrow::Cow;

use bytemuck::{Pod, Zeroable};

use crate::config::Cell;

/// `shaders/gemm.wgsl`: tiled, strided `C ← αAB (+ bias) (+ C)`.
pub const GEMM: &str = include_str!("../../shaders/gemm.wgsl");
/// `shaders/step_core.wgsl`: the shared core of the forward step kernels (the recurrent
/// product over `G` gate blocks, both directions), composed with a cell's epilogue.
pub const STEP_CORE: &str = include_str!("../../shaders/step_core.wgsl");
/// `shaders/step_common.wgsl`: what both step cores share (uniform layouts, index helpers,
/// nonlinearities).
pub const STEP_COMMON: &str = include_str!("../../shaders/step_common.wgsl");
/// `shaders/step_core_bwd.wgsl`: the shared core of the backward step kernels.
pub const STEP_CORE_BWD: &str = include_str!("../../shaders/step_core_bwd.wgsl");
/// `shaders/cells/elman.wgsl`: the Elman cell's epilogue (tanh or relu by an override).
pub const ELMAN: &str = include_str!("../../shaders/cells/elman.wgsl");
/// `shaders/cells/lstm.wgsl`: the LSTM cell's epilogue.
pub const LSTM: &str = include_str!("../../shaders/cells/lstm.wgsl");
/// `shaders/cells/gru.wgsl`: the GRU cell's epilogue.
pub const GRU: &str = include_str!("../../shaders/cells/gru.wgsl");

/// `shaders/project.wgsl`: an LSTM projection's `h = W_hr m` per step (forward).
pub const PROJECT: &str = include_str!("../../shaders/project.wgsl");
/// `shaders/project_bwd.wgsl`: the gradient of a projected LSTM's `h_t` per reverse step.
pub const PROJECT_BWD: &str = include_str!("../../shaders/project_bwd.wgsl");

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
/// `shaders/dropout.wgsl`: dropout's mask and scale between layers (Philox4x32-10), forward
/// and backward.
pub const DROPOUT: &str = include_str!("../../shaders/dropout.wgsl");

/// Most storage buffers any kernel binds (the backward step kernel: 8, WebGPU's guaranteed
/// minimum).
pub(crate) const MAX_STORAGE_BINDINGS: u32 = 8;
/// Most invocations of any kernel's workgroup (the reductions: 256).
pub(crate) const MAX_INVOCATIONS: u32 = 256;
/// Output tile of the GEMM kernel (rows and columns per workgroup).
pub(crate) const GEMM_TILE: u32 = 64;
/// Batch rows per workgroup of the step kernels (8 per thread, the named accumulators of
/// `shaders/step_core.wgsl` and `shaders/step_core_bwd.wgsl`): a step dispatches
/// `⌈B / STEP_ROWS⌉` workgroups along y, so `B` may be at most
/// `STEP_ROWS · max_compute_workgroups_per_dimension`.
pub const STEP_ROWS: u32 = 8;
/// Hidden units per thread of the step kernels (the lanes of a `vec4`).
pub const STEP_THREAD_UNITS: u32 = 4;

/// The largest `WG` of the step kernels: the staging tile is sized for it (naga 30 cannot yet
/// specialise a workgroup array sized by an override; it panics in `process_overrides`).
pub const STEP_MAX_WG: u32 = 64;

/// The tunables of the step kernels, passed to WGSL as `override` constants (the WGSL
/// declares them without a value: this is the one place they are set) and part of the
/// pipeline cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepTunables {
    workgroup: u32,
}

impl StepTunables {
    /// The tunables of the software-adapter core (the only core so far): `WG` = 64, measured
    /// on lavapipe (Mesa 22.3, 2 cores) with the suite's `mid` and `charlm` cases when the
    /// kernel was written; a real GPU's core is a later kernel.
    pub const SOFTWARE: StepTunables = StepTunables { workgroup: 64 };

    /// Tunables with `workgroup` threads per workgroup (`WG`, also the columns of the
    /// recurrent product staged in workgroup memory at a time).
    ///
    /// # Errors
    /// [`crate::Error::Config`] unless `1 <= workgroup <= STEP_MAX_WG`.
    pub fn new(workgroup: u32) -> crate::Result<Self> {
        if !(1..=STEP_MAX_WG).contains(&workgroup) {
            return Err(crate::Error::config(format!(
                "step workgroup size: expected 1..={STEP_MAX_WG}, found {workgroup}"
            )));
        }
        Ok(StepTunables { workgroup })
    }

    /// `WG`: threads per workgroup.
    pub const fn workgroup(self) -> u32 {
        self.workgroup
    }

    /// Hidden units one workgroup covers.
    pub const fn units(self) -> u32 {
        self.workgroup * STEP_THREAD_UNITS
    }
}
/// Alignment of per-step uniforms (WebGPU's maximum `min_uniform_buffer_offset_alignment`).
pub(crate) const UNIFORM_STRIDE: u64 = 256;

/// The loop budget of one kernel invocation, and what each kernel's loops cost.
///
/// **Rule: every loop of every kernel invocation is bounded independently of the data's
/// size.** Mesa's software drivers (lavapipe, llvmpipe: gallivm's
/// `LP_MAX_TGSI_LOOP_ITERATIONS`) silently end every loop of an invocation after 65,535
/// iterations counted together over all its loops, so a kernel whose per-invocation loop count
/// grows with `T·B` or `input_size` returns wrong numbers with no error on the adapters CI
/// runs on. Each kernel states its count here, as iterations of the WGSL source's loops with
/// no unrolling (a driver that unrolls counts fewer), and the host keeps every dispatch within
/// [`LOOP_BUDGET`](budget::LOOP_BUDGET), a quarter of the cap: long reductions are split across
/// workgroups or dispatches and summed in a fixed order; a size that only a loop growing with
/// the model can reach (`hidden_size` in the step kernels, the classes of a softmax) has a
/// stated maximum and is refused before dispatch with [`crate::Error::Limit`].
pub mod budget {
    /// Iterations, summed over all loops, that one invocation of any kernel may run.
    pub const LOOP_BUDGET: u64 = 65_535 / 4;

    /// `shaders/gemm.wgsl` `main`, per invocation, for a split of `k` rows of the reduction:
    /// per slice of 16 (`TK`): the slice loop, two tile loads of 4 slots × 4 elements, 16
    /// products; then 8 rows × 4 columns of stores.
    pub const fn gemm(k: u64) -> u64 {
        k.div_ceil(16) * (1 + 2 * (4 + 16) + 16) + 8 * 4
    }

    /// `shaders/gemm.wgsl` `sum_splits`: one iteration per split.
    pub const fn gemm_sum_splits(splits: u64) -> u64 {
        splits
    }

    /// `shaders/step_core.wgsl` and `shaders/step_core_bwd.wgsl` for hidden size `h` and `g`
    /// gate blocks: per gate block (the forward core; the backward core walks the same `g·h`
    /// columns in one loop) and per block of 64 columns, the block loop, 8 rows staged and up
    /// to 64 products; then per row and unit the epilogue's loop over the gates. The
    /// projection kernels of an LSTM (`shaders/project.wgsl`, `project_bwd.wgsl`) walk `H`
    /// and `4·H` columns (`P < H` units each), so an LSTM's [`step`] bounds them too.
    pub const fn step(h: u64, g: u64) -> u64 {
        g * h.div_ceil(64) * (1 + 8 + 64) + g + 8 * (1 + 4 * (1 + g))
    }

    /// [`step`] of one gate block (Elman).
    pub const fn step_g1(h: u64) -> u64 {
        step(h, 1)
    }

    /// `shaders/colsum.wgsl` for a chunk of `rows` rows (4 per iteration, then the rest).
    pub const fn colsum(rows: u64) -> u64 {
        rows / 4 + 3
    }

    /// `shaders/reduce.wgsl` for a chunk of `n` elements (256 threads, then an 8-level tree).
    pub const fn reduce(n: u64) -> u64 {
        n.div_ceil(256) + 8
    }

    /// `shaders/embed_bwd.wgsl` `main` for a dispatch over `rows` token positions.
    pub const fn embed_bwd(rows: u64) -> u64 {
        rows
    }

    /// `shaders/loss.wgsl`: `softmax_xent` walks a row of `classes` three times.
    pub const fn softmax_xent(classes: u64) -> u64 {
        3 * classes
    }

    /// `shaders/loss.wgsl`: `mse` walks a row of `cols` once.
    pub const fn mse(cols: u64) -> u64 {
        cols
    }

    /// `shaders/optim.wgsl`: one iteration per squared norm summed for clipping.
    pub const fn optim(norms: u64) -> u64 {
        norms
    }

    /// `shaders/dropout.wgsl`: Philox's 10 rounds, then the block's 4 elements, whatever the
    /// layer's size.
    pub const DROPOUT: u64 = 10 + 4;

    /// The largest `x` with `cost(x) <= LOOP_BUDGET` (`cost` non-decreasing).
    pub fn max_within(cost: fn(u64) -> u64) -> u64 {
        max_within_by(cost)
    }

    fn max_within_by(cost: impl Fn(u64) -> u64) -> u64 {
        let (mut lo, mut hi) = (0u64, LOOP_BUDGET * 64);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if cost(mid) <= LOOP_BUDGET {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// Rows of the reduction one GEMM split covers at most (a multiple of the 16-row slice).
    pub const GEMM_K_SPLIT: u64 = 4096;
    /// Splits one `sum_splits` pass adds at most; more rows go in further rounds.
    pub const GEMM_MAX_SPLITS: u64 = 256;
    /// Rows one column-sum workgroup adds at most; more go to a second, fixed-order pass.
    pub const COLSUM_CHUNK: u64 = 32_768;
    /// Elements one reduction workgroup adds at most (256 threads × 4096).
    pub const REDUCE_CHUNK: u64 = 1 << 20;
    /// Token positions one embedding-gradient dispatch walks; more go to further dispatches.
    pub const EMBED_BWD_CHUNK: u64 = 8192;
    /// The largest `hidden_size` of the step kernels of a cell with `gates` gate blocks:
    /// their recurrent product loops over `G·H`.
    pub fn max_step_hidden(gates: usize) -> u64 {
        max_within_by(|h| step(h, gates as u64))
    }
    /// The largest number of classes (the head's outputs) of the fused softmax cross-entropy.
    pub fn max_softmax_classes() -> u64 {
        max_within(softmax_xent)
    }
    /// The largest number of outputs per row of the fused mean squared error.
    pub fn max_mse_cols() -> u64 {
        max_within(mse)
    }

    /// [`crate::Error::Limit`] naming `what` when `needed` exceeds `max`, the largest size a
    /// kernel's loops handle within [`LOOP_BUDGET`].
    pub(crate) fn check(
        what: &str,
        limit: &'static str,
        needed: usize,
        max: u64,
    ) -> crate::Result<()> {
        if needed as u64 > max {
            return Err(crate::Error::Limit {
                what: what.to_string(),
                limit,
                needed: needed as u64,
                max,
            });
        }
        Ok(())
    }
}

/// The kernels with everything that selects their code and `override` values: the pipeline
/// cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `shaders/gemm.wgsl`, entry `main`.
    Gemm,
    /// `shaders/gemm.wgsl`, entry `sum_splits`: the fixed-order second pass of a split GEMM.
    GemmSumSplits,
    /// One forward time step of a layer: `shaders/step_core.wgsl` composed with the cell's
    /// epilogue ([`crate::cell::CellSpec::wgsl_epilogue`]).
    Step(Cell, StepTunables),
    /// One reverse-time step of BPTT: `shaders/step_core_bwd.wgsl` and the cell's epilogue.
    StepBwd(Cell, StepTunables),
    /// [`Kernel::Step`] of an LSTM with a projection (`PROJ`; projections are LSTM-only, as
    /// in PyTorch and cuDNN): it writes `m = o⊙tanh(c)` for [`Kernel::Project`].
    StepProj(StepTunables),
    /// [`Kernel::StepBwd`] of an LSTM with a projection: its product is `∂L/∂m = ∂L/∂h·W_hr`.
    StepProjBwd(StepTunables),
    /// `shaders/project.wgsl`: `h_t = W_hr m_t` after each [`Kernel::StepProj`].
    Project(StepTunables),
    /// `shaders/project_bwd.wgsl`: `∂L/∂h_t` before each [`Kernel::StepProjBwd`].
    ProjectBwd(StepTunables),
    /// `shaders/prepare.wgsl`.
    Prepare,
    /// `shaders/embed.wgsl`.
    Embed,
    /// `shaders/embed_bwd.wgsl`, entry `main`.
    EmbedBwd,
    /// `shaders/embed_bwd.wgsl`, entry `zero`.
    EmbedZero,
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
    /// `shaders/dropout.wgsl`: `dst = src·mask` with dropout's mask, forward and backward.
    Dropout,
}

#[derive(Clone, Copy)]
enum Binding {
    Uniform,
    DynamicUniform,
    Read,
    ReadWrite,
}

impl Kernel {
    /// Every kernel that can ship: the fixed ones and the step kernels of every cell with
    /// every set of tunables, for validation tests.
    pub fn all() -> Vec<Kernel> {
        let mut all = vec![
            Kernel::Gemm,
            Kernel::GemmSumSplits,
            Kernel::Prepare,
            Kernel::Embed,
            Kernel::EmbedBwd,
            Kernel::EmbedZero,
            Kernel::SoftmaxXent,
            Kernel::Mse,
            Kernel::Sum,
            Kernel::SumSq,
            Kernel::Optim,
            Kernel::ColSum,
            Kernel::Dropout,
        ];
        for cell in Cell::ALL {
            all.push(Kernel::Step(cell, StepTunables::SOFTWARE));
            all.push(Kernel::StepBwd(cell, StepTunables::SOFTWARE));
        }
        let tune = StepTunables::SOFTWARE;
        all.extend([
            Kernel::StepProj(tune),
            Kernel::StepProjBwd(tune),
            Kernel::Project(tune),
            Kernel::ProjectBwd(tune),
        ]);
        all
    }

    /// A short name for profiles and labels (`Step`, `StepBwd` for the step kernels).
    pub fn name(self) -> String {
        match self {
            Kernel::Step(cell, _) => format!("Step({cell})"),
            Kernel::StepBwd(cell, _) => format!("StepBwd({cell})"),
            Kernel::StepProj(_) => "StepProj(lstm)".into(),
            Kernel::StepProjBwd(_) => "StepProjBwd(lstm)".into(),
            Kernel::Project(_) => "Project".into(),
            Kernel::ProjectBwd(_) => "ProjectBwd".into(),
            other => format!("{other:?}"),
        }
    }

    /// The entry point in [`Kernel::source`].
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::GemmSumSplits => "sum_splits",
            Kernel::EmbedZero => "zero",
            Kernel::SoftmaxXent => "softmax_xent",
            Kernel::Mse => "mse",
            Kernel::Sum => "sum",
            Kernel::SumSq => "sumsq",
            _ => "main",
        }
    }

    /// The WGSL source; a step kernel's is composed: the cell's constants (`GATES`,
    /// `SAVED_UNITS`, `SPLIT`, from [`crate::cell::CellSpec`], and `PROJ`), the core, the
    /// cell's epilogue (the projection kernels: the LSTM's constants and their own code).
    pub fn source(self) -> Cow<'static, str> {
        use Epilogue::{Backward, Forward, No};
        let composed = |cell, proj, core, part| Cow::Owned(compose_step(cell, proj, core, part));
        let fixed = match self {
            Kernel::Step(cell, _) => return composed(cell, false, STEP_CORE, Forward),
            Kernel::StepBwd(cell, _) => return composed(cell, false, STEP_CORE_BWD, Backward),
            Kernel::StepProj(_) => return composed(Cell::Lstm, true, STEP_CORE, Forward),
            Kernel::StepProjBwd(_) => return composed(Cell::Lstm, true, STEP_CORE_BWD, Backward),
            Kernel::Project(_) => return composed(Cell::Lstm, true, PROJECT, No),
            Kernel::ProjectBwd(_) => return composed(Cell::Lstm, true, PROJECT_BWD, No),
            Kernel::Gemm | Kernel::GemmSumSplits => GEMM,
            Kernel::Prepare => PREPARE,
            Kernel::Embed => EMBED,
            Kernel::EmbedBwd | Kernel::EmbedZero => EMBED_BWD,
            Kernel::SoftmaxXent | Kernel::Mse => LOSS,
            Kernel::Sum | Kernel::SumSq => REDUCE,
            Kernel::Optim => OPTIM,
            Kernel::ColSum => COLSUM,
            Kernel::Dropout => DROPOUT,
        };
        Cow::Borrowed(fixed)
    }

    /// Values of the source's `override` constants: the step kernels' tunables and their
    /// cell's own (e.g. Elman's `RELU`); none for the other kernels.
    pub fn constants(self) -> Vec<(&'static str, f64)> {
        match self {
            Kernel::Step(cell, tune) | Kernel::StepBwd(cell, tune) => {
                let mut c = vec![("WG", f64::from(tune.workgroup))];
                c.extend_from_slice(cell.spec().wgsl_constants());
                c
            }
            Kernel::StepProj(tune) | Kernel::StepProjBwd(tune) => {
                let mut c = vec![("WG", f64::from(tune.workgroup))];
                c.extend_from_slice(Cell::Lstm.spec().wgsl_constants());
                c
            }
            Kernel::Project(tune) | Kernel::ProjectBwd(tune) => {
                vec![("WG", f64::from(tune.workgroup))]
            }
            _ => Vec::new(),
        }
    }

    fn bindings(self) -> &'static [Binding] {
        use Binding::*;
        match self {
            Kernel::Gemm | Kernel::GemmSumSplits => &[Uniform, Read, Read, Read, ReadWrite],
            Kernel::Project(_) => &[
                Uniform,
                DynamicUniform,
                Read,
                Read,
                Read,
                ReadWrite,
                ReadWrite,
            ],
            Kernel::ProjectBwd(_) => &[
                Uniform,
                DynamicUniform,
                Read,
                Read,
                Read,
                Read,
                Read,
                ReadWrite,
            ],
            Kernel::Step(..) | Kernel::StepProj(_) => &[
                Uniform,
                DynamicUniform,
                Read,
                Read,
                Read,
                ReadWrite,
                ReadWrite,
                ReadWrite,
            ],
            Kernel::StepBwd(..) | Kernel::StepProjBwd(_) => &[
                Uniform,
                DynamicUniform,
                Read,
                Read,
                Read,
                Read,
                Read,
                Read,
                ReadWrite,
                ReadWrite,
            ],
            Kernel::Prepare => &[Uniform, Read, ReadWrite, ReadWrite],
            Kernel::Embed => &[Uniform, Read, Read, Read, ReadWrite],
            Kernel::EmbedBwd | Kernel::EmbedZero => &[Uniform, Read, Read, ReadWrite],
            Kernel::SoftmaxXent | Kernel::Mse => &[Uniform, Read, ReadWrite, ReadWrite],
            Kernel::Sum | Kernel::SumSq => &[Uniform, Read, ReadWrite],
            Kernel::Optim => &[Uniform, Read, Read, ReadWrite, ReadWrite, ReadWrite],
            Kernel::ColSum => &[Uniform, Read, ReadWrite],
            Kernel::Dropout => &[Uniform, Read, Read, ReadWrite],
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

/// Which part of a cell's epilogue a composed kernel takes.
#[derive(Clone, Copy)]
enum Epilogue {
    Forward,
    Backward,
    /// None: the projection kernels have their own code after the core.
    No,
}

/// Units a step saves per batch row on the GPU: the cell's
/// ([`crate::cell::CellSpec::saved_units`]), plus `m = o⊙tanh(c)` with a projection (its
/// slot `M_SLOT` is the last).
pub(crate) fn saved_units(cell: Cell, proj: bool) -> usize {
    cell.spec().saved_units() + proj as usize
}

/// A step kernel's source: the cell's constants, `shaders/step_common.wgsl`, then `core`,
/// then the cell's epilogue (its common part and its forward or backward part).
fn compose_step(cell: Cell, proj: bool, core: &str, part: Epilogue) -> String {
    let spec = cell.spec();
    let [common, forward, backward] = epilogue_parts(spec.wgsl_epilogue());
    let (common, part) = match part {
        Epilogue::Forward => (common, forward),
        Epilogue::Backward => (common, backward),
        Epilogue::No => ("", ""),
    };
    format!(
        "// {cell}: constants from src/cell.rs and src/gpu/kernels.rs, then the core, then the \
         cell's epilogue.\nconst GATES: u32 = {}u;\nconst SAVED_UNITS: u32 = {}u;\n\
         const SPLIT: bool = {};\nconst PROJ: bool = {proj};\nconst M_SLOT: u32 = {}u;\n\
         const ROWS: u32 = {STEP_ROWS}u;\n\
         const UNITS: u32 = {STEP_THREAD_UNITS}u;\nconst MAX_WG: u32 = {STEP_MAX_WG}u;\n\n\
         {STEP_COMMON}\n{core}\n{common}{part}",
        spec.gates(),
        saved_units(cell, proj),
        spec.splits_gate_gradients(),
        spec.saved_units(),
    )
}

/// A cell's epilogue split at its `// @forward` and `// @backward` lines into the part both
/// kernels take, the forward part and the backward part (each marker line starts its part).
///
/// # Panics
/// When a marker is missing or out of order: the epilogues are compiled in, and every one is
/// composed by the shader tests.
pub fn epilogue_parts(text: &str) -> [&str; 3] {
    let f = text
        .find("\n// @forward")
        .expect("epilogue without `// @forward`")
        + 1;
    let b = text
        .find("\n// @backward")
        .expect("epilogue without `// @backward`")
        + 1;
    assert!(f < b, "`// @forward` must come before `// @backward`");
    [&text[..f], &text[f..b], &text[b..]]
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
    let label = kernel.name();
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
        source: wgpu::ShaderSource::Wgsl(kernel.source()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&label),
        layout: Some(&layout),
        module: &module,
        entry_point: Some(kernel.entry_point()),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &kernel.constants(),
            ..Default::default()
        },
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
    /// Rows of the reduction per workgroup z (`main`).
    pub k_split: u32,
    pub b_off: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    /// Offset between the outputs of consecutive splits (`main`).
    pub c_split: u32,
    pub c_off: u32,
    pub c_rs: u32,
    pub alpha: f32,
    pub _pad2: u32,
}

impl GemmParams {
    pub const FLAG_BIAS: u32 = 1;
    pub const FLAG_ACCUMULATE: u32 = 2;

    /// Workgroups of `main` for `splits` splits of the reduction.
    pub fn workgroups(&self, splits: u32) -> [u32; 3] {
        [
            self.n.div_ceil(GEMM_TILE),
            self.m.div_ceil(GEMM_TILE),
            splits,
        ]
    }
}

/// Uniform `Dims` of `shaders/step_core.wgsl` and `shaders/step_core_bwd.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct StepDims {
    pub batch: u32,
    pub hidden: u32,
    pub dirs: u32,
    /// `layer·D`: the layer's first state.
    pub state0: u32,
    /// `L·D·B·R`: offset of the `c` part of the state buffers.
    pub states_len: u32,
    /// Offset of the layer's `weight_hh` in the flat parameters (read by the backward step).
    pub w_off: u32,
    /// Offset of `δR` in the gate-gradient buffer, for cells that split it from `δX`.
    pub split_off: u32,
    /// Offset of the batch rows' sequence lengths (u32 bits) in the initial-state buffer.
    pub lengths_off: u32,
    /// `T`, the steps of the pass.
    pub steps: u32,
    /// Offset of `δR` of each row's first step, `[B, D·G·H]`, in the gate-gradient buffer.
    pub first_off: u32,
    /// `R`: the width of `h` (`P` with a projection, else `H`).
    pub width: u32,
    /// Offset of the layer's `weight_hr` in the flat parameters (read by the projected LSTM's
    /// backward step; 0 without a projection).
    pub hr_off: u32,
}

/// Uniform `Step` of the step kernels, one per step at [`UNIFORM_STRIDE`].
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
    /// Gate blocks `G`.
    pub gates: u32,
    /// Bit `g` set when `b_hh` block `g` folds into the projection's bias.
    pub fold_mask: u32,
    /// `R`: the width of `h` (`P` with a projection, else `H`).
    pub width: u32,
    /// Offset of `weight_hr` in the flat parameters (0 without a projection).
    pub w_hr_off: u32,
    /// `P`, 0 without a projection.
    pub proj: u32,
    pub _pad: u32,
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
    /// First token position of an `embed_bwd` dispatch (`rows` is the end).
    pub row_begin: u32,
    pub _pad: [u32; 2],
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
    /// Elements per workgroup; workgroup `w` writes `out[slot + w]`.
    pub chunk: u32,
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
    /// Rows per workgroup y.
    pub chunk: u32,
    /// Offset between the outputs of consecutive chunks.
    pub out_rs: u32,
}

/// Uniform `Dims` of `shaders/dropout.wgsl` (the step's counter and the seed are in a small
/// storage buffer, [`DropoutCounter`], written before each step).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct DropoutDims {
    /// Elements of the layer's output, `T·B·D·H`.
    pub n: u32,
    /// The layer whose output is masked.
    pub layer: u32,
    /// `round(p·2³²)`.
    pub threshold: u32,
    /// `1/(1-p)`.
    pub scale: f32,
}

/// Storage `Counter` of `shaders/dropout.wgsl`: Philox's key (the seed) and the step's counter.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub(crate) struct DropoutCounter {
    pub key: [u32; 2],
    pub step: [u32; 2],
}

impl DropoutDims {
    /// The dims of `p`'s mask over layer `layer`'s output of `n` elements.
    pub fn new(p: f32, layer: usize, n: usize) -> Self {
        let d = crate::dropout::Dropout {
            p,
            seed: 0,
            step: 0,
        };
        DropoutDims {
            n: n as u32,
            layer: layer as u32,
            threshold: d.threshold(),
            scale: d.scale(),
        }
    }
}

impl DropoutCounter {
    /// The counter of `d`'s step.
    pub fn of(d: &crate::dropout::Dropout) -> Self {
        DropoutCounter {
            key: d.key(),
            step: [d.step as u32, (d.step >> 32) as u32],
        }
    }
}
