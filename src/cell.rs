//! What makes one recurrent cell differ from another, in one place.
//!
//! Every cell of the engine runs the same passes (DESIGN.md, "One design for every cell"): a
//! hoisted input projection `X·W_ihᵀ + b_ih` (plus the `b_hh` blocks that fold into it) for
//! all steps at once, then per step the recurrent product `h_{t-1}·W_hhᵀ` over `G` gate blocks
//! and a pointwise update; in reverse, the pointwise gate gradients per step, then the weight
//! gradients as GEMMs over all steps. Only the pointwise parts differ, and they are all that a
//! cell describes: [`CellSpec`] says what the shared passes must allocate and fold, and
//! [`CellMath`] computes one step of one batch row on the CPU (generic over `f32`/`f64`); the
//! GPU step kernels are the shared cores of `shaders/step_core.wgsl` and
//! `shaders/step_core_bwd.wgsl` composed with the cell's WGSL epilogue
//! ([`CellSpec::wgsl_epilogue`]). The CPU loops, the GPU workspace and scheduler, the trainer
//! and the file contract ask a cell through these traits and never match on [`Cell`].
//!
//! Adding a cell: a [`Cell`] variant (with its name in `Display` and [`Cell::ALL`]), one type
//! here implementing both traits with an arm in [`spec`] and [`math`] (and [`for_gates`] if
//! its gate count is new), one epilogue file in `shaders/cells/` with its `include_str!` in
//! `src/gpu/kernels.rs`, and its tests. The traits are sealed: the engine runs the cells it
//! knows.

use crate::config::Cell;
use crate::tensor::Float;

mod sealed {
    /// Only this crate's cells implement the cell traits.
    pub trait Sealed {}
    impl Sealed for super::Elman {}
    impl Sealed for super::Lstm {}
    impl Sealed for super::Gru {}
}

/// What the shared passes need to know about a cell.
///
/// Sizes are per hidden unit: a quantity "of `n` units" is `n·H` floats per batch row.
pub trait CellSpec: Sync + sealed::Sealed {
    /// The cell this describes.
    fn cell(&self) -> Cell;

    /// Gate blocks `G`: `weight_ih` is `[G·H, I]` and `weight_hh` `[G·H, H]` (PyTorch's
    /// layout: Elman 1; LSTM 4, rows i, f, g, o; GRU 3, rows r, z, n).
    fn gates(&self) -> usize;

    /// Whether gate block `gate`'s `b_hh` folds into the hoisted projection (added to `b_ih`
    /// once), rather than being added to the recurrent product each step. Every block folds
    /// for Elman and LSTM; GRU's `b_hn` cannot, since the reset gate multiplies it.
    fn folds_hh_bias(&self, gate: usize) -> bool;

    /// Whether the cell has a cell state `c` beside `h` (`c0`, `c_n`; LSTM).
    fn has_cell_state(&self) -> bool;

    /// Units a step saves per batch row for the backward pass, beyond its output `h_t`
    /// (for LSTM its gates and `c_t`; for Elman nothing, `h_t` is enough).
    fn saved_units(&self) -> usize;

    /// Whether a step's output feeds the previous step's `h` other than through `W_hh`
    /// (GRU's `z ⊙ h_{t-1}`): then the backward pass carries that term between steps.
    fn carries_h_directly(&self) -> bool;

    /// Whether the gradient of the recurrent pre-activation `W_hh·h + b_hh` differs from that
    /// of the input pre-activation `W_ih·x + b_ih`: it does exactly when a `b_hh` block does
    /// not fold (GRU's reset gate multiplies the recurrent term). Then the backward pass keeps
    /// both, else one buffer serves both.
    fn splits_gate_gradients(&self) -> bool {
        !(0..self.gates()).all(|g| self.folds_hh_bias(g))
    }

    /// The `b_hh` fold as a bit mask, bit `g` set when block `g` folds (for the kernels).
    fn fold_mask(&self) -> u32 {
        (0..self.gates())
            .filter(|&g| self.folds_hh_bias(g))
            .fold(0, |m, g| m | 1 << g)
    }

    /// The WGSL epilogue of the step kernels: the module-scope constant `GATES`,
    /// `fn cell_forward` and `fn cell_backward` (their contract is at the top of
    /// `shaders/step_core.wgsl`).
    fn wgsl_epilogue(&self) -> &'static str;

    /// Values of the epilogue's `override` constants for this cell (Elman: `RELU`), part of
    /// the pipeline's cache key.
    fn wgsl_constants(&self) -> &'static [(&'static str, f64)] {
        &[]
    }
}

/// The pointwise math of one step of one batch row, on the CPU.
///
/// Slices are one batch row's; `H` is the hidden size, `G` [`CellSpec::gates`], `S`
/// [`CellSpec::saved_units`]. `c_*` slices are empty for cells without a cell state, `saved`
/// is empty when `S = 0`.
///
/// # Panics
/// When a slice is shorter than its stated length (the engine's loops size them).
pub trait CellMath<T: Float>: CellSpec {
    /// One step forward.
    ///
    /// - `x` `[G·H]`: the hoisted input pre-activations, `W_ih·x_t + b_ih` plus the folded
    ///   `b_hh` blocks;
    /// - `r` `[G·H]`: the recurrent pre-activations, `W_hh·h_{t-1}` plus the `b_hh` blocks
    ///   that do not fold;
    /// - `h_prev`, `c_prev` `[H]`: the state before the step;
    /// - writes `h` `[H]`, `c` `[H]` and `saved` `[S·H]`.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &[T],
        r: &[T],
        h_prev: &[T],
        c_prev: &[T],
        h: &mut [T],
        c: &mut [T],
        saved: &mut [T],
    );

    /// One step backward, from what [`CellMath::forward`] wrote (`h`, `c`, `saved`) and the
    /// state before it.
    ///
    /// - `dh` `[H]`: `∂L/∂h_t`, everything that reaches `h_t` (the output's gradient, the
    ///   carried recurrent one and any direct term);
    /// - `dc` `[H]`: on entry `∂L/∂c_t` carried from the later step, on return `∂L/∂c_{t-1}`;
    /// - writes `dx` `[G·H]`, the gradient of the input pre-activations `x`, and, when the
    ///   cell [splits](CellSpec::splits_gate_gradients) them, `dr` `[G·H]`, that of `r`
    ///   (else `dr` is empty and equals `dx`);
    /// - writes `dh_direct` `[H]`: the part of `∂L/∂h_{t-1}` that does not pass through
    ///   `W_hh` (zero unless [`CellSpec::carries_h_directly`]).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        dh: &[T],
        dc: &mut [T],
        h: &[T],
        saved: &[T],
        h_prev: &[T],
        c_prev: &[T],
        dx: &mut [T],
        dr: &mut [T],
        dh_direct: &mut [T],
    );
}

/// The description of `cell`: with [`math`], the one place that maps a [`Cell`] to its type.
pub fn spec(cell: Cell) -> &'static dyn CellSpec {
    match cell {
        Cell::RnnTanh => &ELMAN_TANH,
        Cell::RnnRelu => &ELMAN_RELU,
        Cell::Lstm => &Lstm,
        Cell::Gru => &Gru,
    }
}

/// The CPU math of `cell`, in `T`.
pub fn math<T: Float>(cell: Cell) -> &'static dyn CellMath<T> {
    match cell {
        Cell::RnnTanh => &ELMAN_TANH,
        Cell::RnnRelu => &ELMAN_RELU,
        Cell::Lstm => &Lstm,
        Cell::Gru => &Gru,
    }
}

/// The cell whose weights hold `gates` blocks of H rows: 1 is Elman (its nonlinearity from
/// PyTorch's `nonlinearity` argument, `tanh` when `None`), 4 LSTM, 3 GRU. The other place,
/// beside [`spec`] and [`math`], where a cell is chosen.
///
/// # Errors
/// [`crate::Error::Config`] for another count or an unknown nonlinearity.
pub fn for_gates(gates: usize, nonlinearity: Option<&str>) -> crate::Result<Cell> {
    match gates {
        1 => Cell::from_nonlinearity(nonlinearity.unwrap_or("tanh")),
        _ => Cell::ALL
            .into_iter()
            .find(|c| c.gates() == gates && c.nonlinearity().is_none())
            .ok_or_else(|| {
                crate::Error::config(format!(
                    "no cell has {gates} gate blocks (Elman 1, GRU 3, LSTM 4)"
                ))
            }),
    }
}

/// The logistic sigmoid `1 / (1 + e^-v)`: NaN for NaN, exactly 0 where `e^-v` overflows.
fn sigmoid<T: Float>(v: T) -> T {
    T::one() / (T::one() + (-v).exp())
}

static ELMAN_TANH: Elman = Elman { relu: false };
static ELMAN_RELU: Elman = Elman { relu: true };

/// The Elman cell, PyTorch's `nn.RNN`: `h' = act(W_ih x + b_ih + W_hh h + b_hh)` with
/// `act` tanh or relu. One gate; both biases fold; a step saves nothing beyond `h'`.
#[derive(Debug, Clone, Copy)]
pub struct Elman {
    relu: bool,
}

impl Elman {
    /// The nonlinearity with PyTorch's float semantics for values that became non-finite
    /// during the computation: `relu(NaN) = NaN` (`max(NaN, 0)` would give 0),
    /// `tanh(±inf) = ±1`, `tanh(NaN) = NaN`.
    pub fn activate<T: Float>(&self, v: T) -> T {
        if !self.relu {
            v.tanh()
        } else if v > T::zero() || v.is_nan() {
            v
        } else {
            T::zero()
        }
    }

    /// The gradient `g` through the activation, from its output `y = act(a)`, as PyTorch
    /// computes it: tanh multiplies, `g·(1 - y²)` (NaN for a NaN output, or for an infinite
    /// `g` at `y = ±1`); relu selects (`threshold_backward`): 0 where `y <= 0`, whatever `g`
    /// is (inf or NaN included), and `g` everywhere else, a NaN output included.
    pub fn activate_backward<T: Float>(&self, y: T, g: T) -> T {
        if !self.relu {
            g * (T::one() - y * y)
        } else if y <= T::zero() {
            T::zero()
        } else {
            g
        }
    }
}

impl CellSpec for Elman {
    fn cell(&self) -> Cell {
        if self.relu {
            Cell::RnnRelu
        } else {
            Cell::RnnTanh
        }
    }
    fn gates(&self) -> usize {
        1
    }
    fn folds_hh_bias(&self, _gate: usize) -> bool {
        true
    }
    fn has_cell_state(&self) -> bool {
        false
    }
    fn saved_units(&self) -> usize {
        0
    }
    fn carries_h_directly(&self) -> bool {
        false
    }
    fn wgsl_epilogue(&self) -> &'static str {
        crate::gpu::kernels::ELMAN
    }
    fn wgsl_constants(&self) -> &'static [(&'static str, f64)] {
        if self.relu {
            &[("RELU", 1.0)]
        } else {
            &[("RELU", 0.0)]
        }
    }
}

impl<T: Float> CellMath<T> for Elman {
    fn forward(
        &self,
        x: &[T],
        r: &[T],
        _h_prev: &[T],
        _c_prev: &[T],
        h: &mut [T],
        _c: &mut [T],
        _saved: &mut [T],
    ) {
        for ((h, &x), &r) in h.iter_mut().zip(x).zip(r) {
            *h = self.activate(x + r);
        }
    }

    fn backward(
        &self,
        dh: &[T],
        _dc: &mut [T],
        h: &[T],
        _saved: &[T],
        _h_prev: &[T],
        _c_prev: &[T],
        dx: &mut [T],
        _dr: &mut [T],
        dh_direct: &mut [T],
    ) {
        for ((dx, &g), &y) in dx.iter_mut().zip(dh).zip(h) {
            *dx = self.activate_backward(y, g);
        }
        dh_direct.fill(T::zero());
    }
}

/// PyTorch's `nn.LSTM` cell: gate blocks i, f, g, o (rows of `weight_ih`/`weight_hh` in that
/// order), `i, f, o = σ(·)`, `g = tanh(·)` of `W_ih x + b_ih + W_hh h + b_hh`;
/// `c' = f⊙c + i⊙g`, `h' = o⊙tanh(c')` (Hochreiter & Schmidhuber 1997, with the forget gate
/// of Gers et al. 2000, as `torch.nn.LSTM` documents). Both biases fold; a step saves
/// i, f, g, o and `c'` (5 units).
#[derive(Debug, Clone, Copy)]
pub struct Lstm;

impl CellSpec for Lstm {
    fn cell(&self) -> Cell {
        Cell::Lstm
    }
    fn gates(&self) -> usize {
        4
    }
    fn folds_hh_bias(&self, _gate: usize) -> bool {
        true
    }
    fn has_cell_state(&self) -> bool {
        true
    }
    fn saved_units(&self) -> usize {
        5
    }
    fn carries_h_directly(&self) -> bool {
        false
    }
    fn wgsl_epilogue(&self) -> &'static str {
        crate::gpu::kernels::LSTM
    }
}

impl<T: Float> CellMath<T> for Lstm {
    fn forward(
        &self,
        x: &[T],
        r: &[T],
        _h_prev: &[T],
        c_prev: &[T],
        h: &mut [T],
        c: &mut [T],
        saved: &mut [T],
    ) {
        let n = h.len();
        let (sv, c_saved) = saved.split_at_mut(4 * n);
        for j in 0..n {
            let a = |k: usize| x[k * n + j] + r[k * n + j];
            let (i, f, g, o) = (sigmoid(a(0)), sigmoid(a(1)), a(2).tanh(), sigmoid(a(3)));
            let cj = f * c_prev[j] + i * g;
            c[j] = cj;
            c_saved[j] = cj;
            h[j] = o * cj.tanh();
            for (k, v) in [i, f, g, o].into_iter().enumerate() {
                sv[k * n + j] = v;
            }
        }
    }

    fn backward(
        &self,
        dh: &[T],
        dc: &mut [T],
        _h: &[T],
        saved: &[T],
        _h_prev: &[T],
        c_prev: &[T],
        dx: &mut [T],
        _dr: &mut [T],
        dh_direct: &mut [T],
    ) {
        let n = dh.len();
        let one = T::one();
        for j in 0..n {
            let [i, f, g, o, c] = [0, 1, 2, 3, 4].map(|k| saved[k * n + j]);
            let tc = c.tanh();
            // ∂L/∂c_t: the carried part and the part through h_t = o·tanh(c_t).
            let dct = dc[j] + dh[j] * o * (one - tc * tc);
            dx[j] = dct * g * i * (one - i);
            dx[n + j] = dct * c_prev[j] * f * (one - f);
            dx[2 * n + j] = dct * i * (one - g * g);
            dx[3 * n + j] = dh[j] * tc * o * (one - o);
            dc[j] = dct * f;
        }
        dh_direct.fill(T::zero());
    }
}

/// PyTorch's `nn.GRU` cell: gate blocks r, z, n; `r, z = σ(W_i x + b_i + W_h h + b_h)`,
/// `n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn))`, `h' = (1 - z)⊙n + z⊙h` (Cho et al. 2014,
/// as `torch.nn.GRU` documents), computed as PyTorch does, `h' = n + z⊙(h - n)`. The reset
/// gate multiplies the recurrent term with its bias, so `b_hn` does not fold, the gate
/// gradients split, and `z⊙h` carries a direct gradient to the previous step. A step saves
/// r, z, n and `W_hn h + b_hn` (4 units).
#[derive(Debug, Clone, Copy)]
pub struct Gru;

impl CellSpec for Gru {
    fn cell(&self) -> Cell {
        Cell::Gru
    }
    fn gates(&self) -> usize {
        3
    }
    fn folds_hh_bias(&self, gate: usize) -> bool {
        gate != 2
    }
    fn has_cell_state(&self) -> bool {
        false
    }
    fn saved_units(&self) -> usize {
        4
    }
    fn carries_h_directly(&self) -> bool {
        true
    }
    fn wgsl_epilogue(&self) -> &'static str {
        crate::gpu::kernels::GRU
    }
}

impl<T: Float> CellMath<T> for Gru {
    fn forward(
        &self,
        x: &[T],
        r: &[T],
        h_prev: &[T],
        _c_prev: &[T],
        h: &mut [T],
        _c: &mut [T],
        saved: &mut [T],
    ) {
        let n = h.len();
        for j in 0..n {
            let rg = sigmoid(x[j] + r[j]);
            let z = sigmoid(x[n + j] + r[n + j]);
            let hn = r[2 * n + j];
            let ng = (x[2 * n + j] + rg * hn).tanh();
            h[j] = ng + z * (h_prev[j] - ng);
            for (k, v) in [rg, z, ng, hn].into_iter().enumerate() {
                saved[k * n + j] = v;
            }
        }
    }

    fn backward(
        &self,
        dh: &[T],
        _dc: &mut [T],
        _h: &[T],
        saved: &[T],
        h_prev: &[T],
        _c_prev: &[T],
        dx: &mut [T],
        dr: &mut [T],
        dh_direct: &mut [T],
    ) {
        let n = dh.len();
        let one = T::one();
        for j in 0..n {
            let [rg, z, ng, hn] = [0, 1, 2, 3].map(|k| saved[k * n + j]);
            let da_n = dh[j] * (one - z) * (one - ng * ng);
            let da_r = da_n * hn * rg * (one - rg);
            let da_z = dh[j] * (h_prev[j] - ng) * z * (one - z);
            dx[j] = da_r;
            dx[n + j] = da_z;
            dx[2 * n + j] = da_n;
            dr[j] = da_r;
            dr[n + j] = da_z;
            dr[2 * n + j] = da_n * rg;
            dh_direct[j] = dh[j] * z;
        }
    }
}
