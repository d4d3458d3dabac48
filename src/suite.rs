//! The benchmark suite: the only list of benchmark shapes, `benches/suite.json` (a copy of the
//! shared suite, names and fields unchanged), read by `wgpu-rnn bench` and the criterion
//! benches alike, with the FLOP counts of the cost model.
//!
//! # Example
//! ```
//! use wgpu_rnn::suite::Suite;
//! let suite = Suite::builtin();
//! let mid = suite.case("mid").unwrap();
//! assert_eq!((mid.t, mid.b, mid.i, mid.h), (100, 32, 128, 256));
//! // 2·T·B·G·H·(I + H) for one layer and direction.
//! assert_eq!(mid.forward_flops(), 2.0 * 100.0 * 32.0 * 256.0 * (128.0 + 256.0));
//! ```

use serde::Deserialize;

use crate::config::{Cell, RnnConfig};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, data};

/// The median of timings, the mean of the two middle values for an even count (as Python's
/// `statistics.median`, which PyTorch's side-by-side script uses).
///
/// # Panics
/// When `v` is empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n % 2 {
        1 => v[n / 2],
        _ => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Built-in data: `B` phase-shifted sine waves of `I` harmonics, `[T, B, I]`.
pub fn sine_batch(t: usize, b: usize, i: usize) -> Tensor {
    let mut x = Vec::with_capacity(t * b * i);
    for step in 0..t {
        for row in 0..b {
            for f in 0..i {
                let phase = row as f32 * 0.37 + f as f32 * 0.11;
                x.push(((step as f32) * 0.05 * (f + 1) as f32 + phase).sin());
            }
        }
    }
    Tensor::new(vec![t, b, i], x).expect("shape matches data")
}

/// `benches/suite.json`, compiled in so that the binary needs no file at run time.
pub const SUITE_JSON: &str = include_str!("../benches/suite.json");

/// One benchmark case, as written in the suite file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Case {
    /// Name, the key that joins our timings with PyTorch's.
    pub name: String,
    /// `rnn_tanh`, `rnn_relu`, `lstm` or `gru`.
    pub cell: String,
    /// Steps `T`.
    #[serde(rename = "T")]
    pub t: usize,
    /// Batch `B`.
    #[serde(rename = "B")]
    pub b: usize,
    /// Input size `I` (the vocabulary for a token case).
    #[serde(rename = "I")]
    pub i: usize,
    /// Hidden size `H`.
    #[serde(rename = "H")]
    pub h: usize,
    /// Layers `L`.
    #[serde(rename = "L")]
    pub l: usize,
    /// Two directions.
    #[serde(default)]
    pub bidirectional: bool,
    /// A character language model over this vocabulary: token input, a linear head, softmax
    /// cross-entropy and Adam (the `charlm` case).
    #[serde(default)]
    pub vocab: Option<usize>,
    /// Sized for a real GPU: run only when asked (`--gpu-suite`) or named (`--only`).
    #[serde(default)]
    pub gpu_only: bool,
    /// The published figure the case is compared with, when there is one.
    #[serde(default)]
    pub anchor: Option<String>,
}

/// The whole suite.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Suite {
    /// What the fields mean, as the file says.
    pub about: String,
    /// Every case, in the file's order.
    pub cases: Vec<Case>,
}

impl Suite {
    /// The suite compiled into the crate ([`SUITE_JSON`]).
    ///
    /// # Panics
    /// Never for the file shipped with the crate (a test parses it).
    pub fn builtin() -> Suite {
        Suite::parse(SUITE_JSON).expect("benches/suite.json parses")
    }

    /// Parses a suite file's text.
    ///
    /// # Errors
    /// [`Error::Config`] with serde's message and position.
    pub fn parse(text: &str) -> Result<Suite> {
        serde_json::from_str(text).map_err(|e| Error::config(format!("benchmark suite: {e}")))
    }

    /// The case called `name`.
    pub fn case(&self, name: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.name == name)
    }

    /// The cases to run: those named in `only` (any case, `gpu_only` included, in the suite's
    /// order), else every case, the `gpu_only` ones only when `gpu_suite`.
    ///
    /// # Errors
    /// [`Error::Config`] naming a case of `only` that the suite lacks, with the known names.
    pub fn select(&self, only: Option<&[String]>, gpu_suite: bool) -> Result<Vec<Case>> {
        if let Some(only) = only {
            if let Some(bad) = only.iter().find(|n| self.case(n).is_none()) {
                let known: Vec<&str> = self.cases.iter().map(|c| c.name.as_str()).collect();
                return Err(Error::config(format!(
                    "benchmark case {bad:?} is not in the suite (cases: {})",
                    known.join(", ")
                )));
            }
            return Ok(self
                .cases
                .iter()
                .filter(|c| only.contains(&c.name))
                .cloned()
                .collect());
        }
        Ok(self
            .cases
            .iter()
            .filter(|c| gpu_suite || !c.gpu_only)
            .cloned()
            .collect())
    }
}

impl Case {
    /// Directions: 2 when bidirectional.
    pub fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Gate count `G` of the suite's cell (1, 4 or 3); 1 for a name the engine does not
    /// know (whose case cannot run, [`Case::engine_cell`]).
    pub fn gates(&self) -> usize {
        self.engine_cell().map_or(1, Cell::gates)
    }

    /// The engine's cell for this case, from the suite's name (`rnn_tanh`, `rnn_relu`,
    /// `lstm`, `gru`).
    ///
    /// # Errors
    /// [`Error::Config`] naming a cell the engine does not have.
    pub fn engine_cell(&self) -> Result<Cell> {
        Cell::from_name(&self.cell)
    }

    /// The stack's configuration.
    ///
    /// # Errors
    /// As [`Case::engine_cell`], or an invalid size.
    pub fn config(&self) -> Result<RnnConfig> {
        let cfg = RnnConfig::new(self.engine_cell()?, self.i, self.h)
            .layers(self.l)
            .bidirectional(self.bidirectional);
        cfg.validate()?;
        Ok(cfg)
    }

    /// FLOPs of the forward pass, the suite's formula (the cost model's, as in PyTorch's
    /// side-by-side script): `Σ_layers 2·T·B·G·H·(I_l + H)·D`, with `I_l = D·H` above layer 0.
    pub fn forward_flops(&self) -> f64 {
        let d = self.directions();
        (0..self.l)
            .map(|l| {
                let i_l = if l == 0 { self.i } else { d * self.h };
                2.0 * (self.t * self.b * self.gates() * self.h) as f64
                    * (i_l + self.h) as f64
                    * d as f64
            })
            .sum()
    }

    /// FLOPs of a training step, the suite's formula: 3 × (forward, plus the head's
    /// `2·T·B·D·H·V` for a token case).
    pub fn train_flops(&self) -> f64 {
        let head = self.vocab.map_or(0.0, |v| {
            2.0 * (self.t * self.b * self.directions() * self.h * v) as f64
        });
        3.0 * (self.forward_flops() + head)
    }

    /// The same case at smoke-test sizes (`T ≤ 8`, `B ≤ 4`, `I ≤ 16`, `H ≤ 32`, same name,
    /// cell, layers and direction), for `bench --quick`.
    pub fn quick(&self) -> Case {
        let i = self.i.min(16);
        Case {
            t: self.t.min(8),
            b: self.b.min(4),
            i,
            h: self.h.min(32),
            vocab: self.vocab.map(|_| i),
            ..self.clone()
        }
    }

    /// Steps times batch: the criterion benches' throughput unit.
    pub fn steps(&self) -> u64 {
        (self.t * self.b) as u64
    }

    /// The forward pass's input `[T, B, I]`: one-hot tokens for a token case (as PyTorch's
    /// side-by-side script feeds `nn.RNN`), [`sine_batch`] otherwise.
    pub fn forward_input(&self) -> Tensor {
        match self.vocab {
            Some(v) => {
                let mut x = Tensor::zeros(&[self.t, self.b, v]);
                for (k, row) in x.data_mut().chunks_exact_mut(v).enumerate() {
                    row[(k * 7 + k / 5) % v] = 1.0;
                }
                x
            }
            None => sine_batch(self.t, self.b, self.i),
        }
    }

    /// The suite's training step for `config` (from [`Case::config`]): a token case is a
    /// character model (linear head, softmax cross-entropy, Adam with lr 1e-3, token input);
    /// every other case is the stack alone with loss `mean(output²)` ([`Task::MeanSquare`]),
    /// SGD with lr 1e-3; no clipping, as in PyTorch's script.
    ///
    /// # Errors
    /// As [`SeqModel::new`].
    pub fn train_setup(&self, config: RnnConfig) -> Result<(SeqModel, TrainConfig, Batch)> {
        let (t, b) = (self.t, self.b);
        match self.vocab {
            Some(v) => {
                let model = SeqModel::new(config, Task::Tokens { vocab: v }, 0)?;
                let ids: Vec<u32> = (0..(t + 1) * b * 4)
                    .map(|i| ((i * 7 + i / 5) % v) as u32)
                    .collect();
                let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
                let batch = data::random_batch(&ids, t, b, &mut rng);
                let tc = TrainConfig {
                    optimizer: Optimizer::adam(1e-3),
                    clip_norm: None,
                };
                Ok((model, tc, batch))
            }
            None => {
                let model = SeqModel::new(config, Task::MeanSquare, 0)?;
                let batch = Batch::input_only(sine_batch(t, b, self.i));
                let tc = TrainConfig {
                    optimizer: Optimizer::sgd(1e-3, 0.0),
                    clip_norm: None,
                };
                Ok((model, tc, batch))
            }
        }
    }
}
