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

/// Defines `fn $name<T: Float>(args)` that runs its body compiled for the widest vector
/// instructions the CPU has, picked at run time: AVX-512 (F, VL, DQ, BW) or AVX2 + FMA on
/// x86-64, else the baseline. The body is the same code each time and does elementwise IEEE
/// arithmetic only, so every level gives the same bits; only the vector width differs. Rust
/// never contracts `a·b + c`; the fused multiply-adds that f32's `exp` and `tanh` write out
/// (`mul_add`) are exactly rounded on every level: one instruction with FMA, the C library's
/// `fmaf` on a CPU without it (a call per value: that level no longer vectorises them).
macro_rules! simd_fn {
    ($(#[$m:meta])* fn $name:ident<T: Float>($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        fn $name<T: Float>($($a: $t),*) {
            #[inline(always)]
            fn body<T: Float>($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                fn v4<T: Float>($($a: $t),*) {
                    body::<T>($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn v3<T: Float>($($a: $t),*) {
                    body::<T>($($a),*)
                }
                match crate::tensor::simd_level() {
                    // SAFETY: the CPU has the features (checked at run time).
                    2 => return unsafe { v4::<T>($($a),*) },
                    1 => return unsafe { v3::<T>($($a),*) },
                    _ => {}
                }
            }
            body::<T>($($a),*)
        }
    };
}

pub(crate) use simd_fn;

/// The first `K` blocks of `n` values of `s` (a row's gate blocks), each exactly `n` long.
///
/// # Panics
/// When `s` holds fewer than `K·n` values.
fn blocks<const K: usize, T>(s: &[T], n: usize) -> [&[T]; K] {
    std::array::from_fn(|k| &s[k * n..(k + 1) * n])
}

/// [`blocks`], mutable.
fn blocks_mut<const K: usize, T>(s: &mut [T], n: usize) -> [&mut [T]; K] {
    let mut rest = &mut s[..K * n];
    std::array::from_fn(|_| {
        let (block, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        block
    })
}

/// The logistic sigmoid `1 / (1 + e^-v)`: NaN for NaN, exactly 0 where `e^-v` overflows
/// ([`Float::sigmoid_act`]).
fn sigmoid<T: Float>(v: T) -> T {
    v.sigmoid_act()
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
            v.tanh_act()
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
        match self.relu {
            false => elman_tanh_forward(x, r, h),
            true => {
                for ((h, &x), &r) in h.iter_mut().zip(x).zip(r) {
                    *h = self.activate(x + r);
                }
            }
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

simd_fn! {
    /// Elman tanh: `h = tanh(x + r)`.
    fn elman_tanh_forward<T: Float>(x: &[T], r: &[T], h: &mut [T]) {
        for ((h, &x), &r) in h.iter_mut().zip(x).zip(r) {
            *h = (x + r).tanh_act();
        }
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
        lstm_forward(x, r, c_prev, h, c, saved);
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
        lstm_backward(dh, dc, saved, c_prev, dx);
        dh_direct.fill(T::zero());
    }
}

simd_fn! {
    /// One LSTM step of one row (see [`CellMath::forward`]).
    fn lstm_forward<T: Float>(
        x: &[T],
        r: &[T],
        c_prev: &[T],
        h: &mut [T],
        c: &mut [T],
        saved: &mut [T],
    ) {
        // Every slice cut to n, so that the loop has no bounds checks and vectorises.
        let n = h.len();
        let [xi, xf, xg, xo] = blocks(x, n);
        let [ri, rf, rg, ro] = blocks(r, n);
        let [si, sf, sg, so, sc] = blocks_mut(saved, n);
        let (c_prev, c) = (&c_prev[..n], &mut c[..n]);
        // One loop per activation: each iteration is one short chain of dependent operations,
        // so the CPU overlaps many iterations. One loop of all five activations chained
        // through c took 2.4 ns an element against 1.8 (hot in cache, AVX-512, this
        // project's AMD EPYC); the same arithmetic, so the same bits.
        for j in 0..n {
            si[j] = sigmoid(xi[j] + ri[j]);
        }
        for j in 0..n {
            sf[j] = sigmoid(xf[j] + rf[j]);
        }
        for j in 0..n {
            sg[j] = (xg[j] + rg[j]).tanh_act();
        }
        for j in 0..n {
            so[j] = sigmoid(xo[j] + ro[j]);
        }
        for j in 0..n {
            let cj = sf[j] * c_prev[j] + si[j] * sg[j];
            c[j] = cj;
            sc[j] = cj;
        }
        for j in 0..n {
            h[j] = so[j] * c[j].tanh_act();
        }
    }
}

simd_fn! {
    /// One LSTM step backward of one row (see [`CellMath::backward`]).
    fn lstm_backward<T: Float>(dh: &[T], dc: &mut [T], saved: &[T], c_prev: &[T], dx: &mut [T]) {
        let n = dh.len();
        let one = T::one();
        let [si, sf, sg, so, sc] = blocks(saved, n);
        let [di, df, dg, dd] = blocks_mut(dx, n);
        let (dc, c_prev) = (&mut dc[..n], &c_prev[..n]);
        for j in 0..n {
            let (i, f, g, o, c) = (si[j], sf[j], sg[j], so[j], sc[j]);
            let tc = c.tanh_act();
            // ∂L/∂c_t: the carried part and the part through h_t = o·tanh(c_t).
            let dct = dc[j] + dh[j] * o * (one - tc * tc);
            di[j] = dct * g * i * (one - i);
            df[j] = dct * c_prev[j] * f * (one - f);
            dg[j] = dct * i * (one - g * g);
            dd[j] = dh[j] * tc * o * (one - o);
            dc[j] = dct * f;
        }
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
        gru_forward(x, r, h_prev, h, saved);
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
        gru_backward(dh, saved, h_prev, dx, dr, dh_direct);
    }
}

simd_fn! {
    /// One GRU step of one row (see [`CellMath::forward`]).
    fn gru_forward<T: Float>(x: &[T], r: &[T], h_prev: &[T], h: &mut [T], saved: &mut [T]) {
        let n = h.len();
        let [xr, xz, xn] = blocks(x, n);
        let [rr, rz, rn] = blocks(r, n);
        let [sr, sz, sn, shn] = blocks_mut(saved, n);
        let h_prev = &h_prev[..n];
        for j in 0..n {
            let rg = sigmoid(xr[j] + rr[j]);
            let z = sigmoid(xz[j] + rz[j]);
            let hn = rn[j];
            let ng = (xn[j] + rg * hn).tanh_act();
            h[j] = ng + z * (h_prev[j] - ng);
            (sr[j], sz[j], sn[j], shn[j]) = (rg, z, ng, hn);
        }
    }
}

simd_fn! {
    /// One GRU step backward of one row (see [`CellMath::backward`]).
    fn gru_backward<T: Float>(
        dh: &[T],
        saved: &[T],
        h_prev: &[T],
        dx: &mut [T],
        dr: &mut [T],
        dh_direct: &mut [T],
    ) {
        let n = dh.len();
        let one = T::one();
        let [sr, sz, sn, shn] = blocks(saved, n);
        let [xr, xz, xn] = blocks_mut(dx, n);
        let [rr, rz, rn] = blocks_mut(dr, n);
        let (h_prev, dh_direct) = (&h_prev[..n], &mut dh_direct[..n]);
        for j in 0..n {
            let (rg, z, ng, hn) = (sr[j], sz[j], sn[j], shn[j]);
            let da_n = dh[j] * (one - z) * (one - ng * ng);
            let da_r = da_n * hn * rg * (one - rg);
            let da_z = dh[j] * (h_prev[j] - ng) * z * (one - z);
            (xr[j], xz[j], xn[j]) = (da_r, da_z, da_n);
            (rr[j], rz[j], rn[j]) = (da_r, da_z, da_n * rg);
            dh_direct[j] = dh[j] * z;
        }
    }
}
