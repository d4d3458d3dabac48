//! Model configuration: which cell, which sizes.

use crate::error::{Error, Result};

/// The recurrent cell, with PyTorch's equations and gate order (DESIGN.md's table; what each
/// cell is to the engine is in [`crate::cell`]).
///
/// Elman cells compute `h' = act(W_ih x + b_ih + W_hh h + b_hh)` exactly as PyTorch's
/// `nn.RNN(nonlinearity=...)`; [`Cell::Lstm`] is `nn.LSTM`, [`Cell::Gru`] is `nn.GRU`. More
/// cells may be added, so matches on this enum need a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cell {
    /// Elman cell with `tanh`: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
    RnnTanh,
    /// Elman cell with `relu`: `h' = max(0, W_ih x + b_ih + W_hh h + b_hh)`.
    RnnRelu,
    /// PyTorch's `nn.LSTM`: gates i, f, g, o = σ, σ, tanh, σ(W_ih x + b_ih + W_hh h + b_hh);
    /// `c' = f⊙c + i⊙g`, `h' = o⊙tanh(c')`.
    Lstm,
    /// PyTorch's `nn.GRU`: r, z = σ(W_i x + b_i + W_h h + b_h);
    /// `n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn))`, `h' = (1 - z)⊙n + z⊙h`.
    Gru,
}

impl Cell {
    /// Every cell the engine has.
    pub const ALL: [Cell; 4] = [Cell::RnnTanh, Cell::RnnRelu, Cell::Lstm, Cell::Gru];

    /// Number of gate blocks `G`: the weights hold `G·H` rows (1 for Elman cells, 4 for LSTM,
    /// 3 for GRU).
    pub fn gates(self) -> usize {
        self.spec().gates()
    }

    /// What the engine's passes need to know about this cell ([`crate::cell`]).
    pub fn spec(self) -> &'static dyn crate::cell::CellSpec {
        crate::cell::spec(self)
    }

    /// The CPU pointwise math of this cell, in `T`.
    pub fn math<T: crate::tensor::Float>(self) -> &'static dyn crate::cell::CellMath<T> {
        crate::cell::math(self)
    }

    /// PyTorch's `nonlinearity` string for Elman cells; `None` for gated cells.
    pub fn nonlinearity(self) -> Option<&'static str> {
        match self {
            Cell::RnnTanh => Some("tanh"),
            Cell::RnnRelu => Some("relu"),
            Cell::Lstm | Cell::Gru => None,
        }
    }

    /// Parses a cell's name as [`Cell`]'s `Display` writes it: `rnn_tanh`, `rnn_relu`, `lstm`
    /// or `gru`.
    ///
    /// # Errors
    /// [`Error::Config`] for any other string, listing the names.
    pub fn from_name(s: &str) -> Result<Self> {
        Cell::ALL
            .into_iter()
            .find(|c| c.to_string() == s)
            .ok_or_else(|| {
                Error::config(format!(
                    "cell: expected one of rnn_tanh, rnn_relu, lstm, gru; found {s:?}"
                ))
            })
    }

    /// Parses PyTorch's `nonlinearity` argument (`"tanh"` or `"relu"`).
    ///
    /// # Errors
    /// [`Error::Config`] for any other string.
    pub fn from_nonlinearity(s: &str) -> Result<Self> {
        match s {
            "tanh" => Ok(Cell::RnnTanh),
            "relu" => Ok(Cell::RnnRelu),
            other => Err(Error::config(format!(
                "nonlinearity: expected \"tanh\" or \"relu\", found {other:?}"
            ))),
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::RnnTanh => f.write_str("rnn_tanh"),
            Cell::RnnRelu => f.write_str("rnn_relu"),
            Cell::Lstm => f.write_str("lstm"),
            Cell::Gru => f.write_str("gru"),
        }
    }
}

/// The shape of a recurrent stack, with PyTorch's meaning for every field.
///
/// # Example
/// ```
/// use wgpu_rnn::{Cell, RnnConfig};
/// let cfg = RnnConfig::new(Cell::RnnTanh, 10, 20).layers(2).bidirectional(true);
/// assert_eq!(cfg.directions(), 2);
/// assert_eq!(cfg.layer_input_size(1), 40); // D·H feeds the layer above
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RnnConfig {
    /// The recurrent cell.
    pub cell: Cell,
    /// Features per time step of the input, `I`.
    pub input_size: usize,
    /// Features of the hidden state, `H`.
    pub hidden_size: usize,
    /// Number of stacked layers, `L >= 1`.
    pub num_layers: usize,
    /// Whether each layer also runs in reverse time (`D = 2`).
    pub bidirectional: bool,
    /// Whether the layers have `b_ih` and `b_hh`.
    pub bias: bool,
    /// PyTorch's `proj_size` `P` (LSTM only, `0 < P < H`; 0 for none): each layer's
    /// `h = W_hr·(o⊙tanh(c))` with `weight_hr_l{k}` `[P, H]` (Sak et al. 2014, "Long
    /// short-term memory recurrent neural network architectures for large scale acoustic
    /// modeling"), so `h0`/`h_n` are `[L·D, B, P]`, the output `[T, B, D·P]`,
    /// `weight_hh_l{k}` `[4·H, P]` and deeper layers' `weight_ih_l{k}` `[4·H, D·P]`; `c0`/`c_n`
    /// stay `[L·D, B, H]`.
    pub proj_size: usize,
    /// PyTorch's `batch_first`: [`crate::Rnn`] takes `input` `[B, T, I]` and returns `output`
    /// `[B, T, D·H]` (states keep `[L·D, B, H]`). Off by default (time-major); a layout of the
    /// model's inputs and outputs only, not saved with the parameters. The lower-level
    /// `cpu::forward` and `GpuRnn::forward` are always time-major.
    pub batch_first: bool,
    /// PyTorch's `dropout`: in training, the output of every layer but the last (`[T, B, D·H]`,
    /// `[T, B, D·P]` with a projection) is zeroed element-wise with this probability and the rest scaled by `1/(1-p)` before it feeds
    /// the layer above (see [`crate::dropout`]); inference ([`crate::Rnn`], `forward`,
    /// evaluation, sampling) never drops. In `[0, 1)`, default 0 (no dropout; with one layer
    /// it has no effect, as in PyTorch). A training checkpoint records it; a PyTorch
    /// state_dict does not (as in PyTorch, it is an argument of the module), so
    /// [`crate::RnnParams::load`] gives 0.
    pub dropout: f32,
}

impl RnnConfig {
    /// One layer, one direction, with bias.
    pub fn new(cell: Cell, input_size: usize, hidden_size: usize) -> Self {
        RnnConfig {
            cell,
            input_size,
            hidden_size,
            num_layers: 1,
            bidirectional: false,
            bias: true,
            batch_first: false,
            proj_size: 0,
            dropout: 0.0,
        }
    }

    /// Sets `proj_size` (see the field).
    pub fn proj_size(mut self, proj_size: usize) -> Self {
        self.proj_size = proj_size;
        self
    }

    /// PyTorch's `real_hidden_size`: the width of `h`, `proj_size` when the layers project
    /// (`P`), else `hidden_size` (`H`).
    pub fn real_hidden_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    /// Sets `dropout` (checked by [`RnnConfig::validate`]).
    pub fn dropout(mut self, p: f32) -> Self {
        self.dropout = p;
        self
    }

    /// Sets `batch_first`.
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }

    /// Sets `num_layers`.
    pub fn layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }

    /// Sets `bidirectional`.
    pub fn bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }

    /// Sets `bias`.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Number of directions `D` (1 or 2).
    pub fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Input features of layer `layer`: `I` for layer 0, `D·H` above (`D·P` with a
    /// projection).
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.output_size()
        }
    }

    /// Output features per step, `D·H` (`D·P` with a projection).
    pub fn output_size(&self) -> usize {
        self.directions() * self.real_hidden_size()
    }

    /// Checks that every size is at least 1, `proj_size` is as PyTorch allows it
    /// (LSTM only, below `hidden_size`) and `dropout` is a probability in `[0, 1)`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field that is zero, `proj_size`, or `dropout` with its
    /// value.
    pub fn validate(&self) -> Result<()> {
        crate::dropout::check_p(self.dropout)?;
        if self.proj_size > 0 && self.cell != Cell::Lstm {
            return Err(Error::config(format!(
                "proj_size: only an LSTM projects its hidden state; found proj_size = {} \
                 with the {} cell",
                self.proj_size, self.cell
            )));
        }
        if self.proj_size >= self.hidden_size && self.proj_size > 0 {
            return Err(Error::config(format!(
                "proj_size: expected below hidden_size = {} (PyTorch's rule), found {}",
                self.hidden_size, self.proj_size
            )));
        }
        for (name, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if v == 0 {
                return Err(Error::config(format!("{name}: expected >= 1, found 0")));
            }
        }
        Ok(())
    }

    /// PyTorch's parameter names for layer `layer`, direction `dir`:
    /// `(weight_ih, weight_hh, bias_ih, bias_hh)`, e.g. `weight_ih_l1_reverse`.
    pub fn param_names(&self, layer: usize, dir: usize) -> [String; 4] {
        let suffix = if dir == 1 { "_reverse" } else { "" };
        [
            format!("weight_ih_l{layer}{suffix}"),
            format!("weight_hh_l{layer}{suffix}"),
            format!("bias_ih_l{layer}{suffix}"),
            format!("bias_hh_l{layer}{suffix}"),
        ]
    }

    /// PyTorch's name of the projection of layer `layer`, direction `dir`: `weight_hr_l{k}`
    /// (with `_reverse`).
    pub fn proj_name(&self, layer: usize, dir: usize) -> String {
        let suffix = if dir == 1 { "_reverse" } else { "" };
        format!("weight_hr_l{layer}{suffix}")
    }

    /// Forward FLOPs of one pass over `t` steps of batch `b`:
    /// `Σ_layers 2·T·B·D·G·H·(I_l + R)`, plus `2·T·B·D·H·P` per layer with a projection
    /// (`R` is [`RnnConfig::real_hidden_size`]).
    pub fn forward_flops(&self, t: usize, b: usize) -> f64 {
        let g = self.cell.gates();
        let tbd = (t * b * self.directions()) as f64;
        (0..self.num_layers)
            .map(|l| {
                2.0 * tbd
                    * (g * self.hidden_size) as f64
                    * (self.layer_input_size(l) + self.real_hidden_size()) as f64
                    + 2.0 * tbd * (self.hidden_size * self.proj_size) as f64
            })
            .sum()
    }
}
