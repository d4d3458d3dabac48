//! Host-side parameters in PyTorch's layout, and safetensors load/save with PyTorch's names.

use std::collections::HashMap;
use std::path::Path;

use rand::{RngExt, SeedableRng};

use crate::config::RnnConfig;
use crate::error::{Error, Result};
use crate::io::TensorFile;
use crate::tensor::{Float, Tensor};

/// The parameters of one layer and direction, in PyTorch's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams<T = f32> {
    /// `weight_ih_l{k}`: `[G·H, I_l]`.
    pub w_ih: Tensor<T>,
    /// `weight_hh_l{k}`: `[G·H, H]` (`[4·H, P]` with a projection).
    pub w_hh: Tensor<T>,
    /// `bias_ih_l{k}`: `[G·H]`, absent when the model has no bias.
    pub b_ih: Option<Tensor<T>>,
    /// `bias_hh_l{k}`: `[G·H]`, absent when the model has no bias.
    pub b_hh: Option<Tensor<T>>,
    /// `weight_hr_l{k}`: the LSTM projection `[P, H]`, present exactly when
    /// [`RnnConfig::proj_size`] is not 0.
    pub w_hr: Option<Tensor<T>>,
}

/// All parameters of a recurrent stack, indexed by `layer·D + direction` as PyTorch orders them.
///
/// # Example
/// ```
/// use wgpu_rnn::{Cell, RnnConfig, RnnParams};
/// let cfg = RnnConfig::new(Cell::RnnTanh, 3, 4).layers(2);
/// let p = RnnParams::<f32>::random(cfg, 7);
/// assert_eq!(p.layer(1, 0).w_ih.shape(), &[4, 4]);
/// let file = p.to_tensor_file();
/// assert!(file.tensors.contains_key("weight_hh_l1"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RnnParams<T = f32> {
    config: RnnConfig,
    layers: Vec<LayerParams<T>>,
    /// Named as a single cell (`nn.RNNCell`, `nn.LSTMCell`, `nn.GRUCell`: `weight_ih`, ...
    /// without a layer suffix) rather than as a stack; one layer, one direction.
    single_cell: bool,
    /// The CPU path's transposed weights, built on first use and dropped by
    /// [`RnnParams::layers_mut`].
    packed: crate::cpu::PackedWeights<T>,
}

impl<T: Float> RnnParams<T> {
    /// Parameters drawn as PyTorch initialises them, `U(-1/√H, 1/√H)`, from a seeded
    /// ChaCha8 generator (same seed, same parameters, on every platform).
    pub fn random(config: RnnConfig, seed: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let k = 1.0 / (config.hidden_size as f64).sqrt();
        let mut draw = |shape: &[usize]| {
            let n = shape.iter().product();
            let data = (0..n)
                .map(|_| T::from_f64_lossy(rng.random_range(-k..k)))
                .collect();
            Tensor::new(shape.to_vec(), data).expect("shape matches data")
        };
        let gh = config.cell.gates() * config.hidden_size;
        let mut layers = Vec::new();
        for l in 0..config.num_layers {
            for _ in 0..config.directions() {
                let w_ih = draw(&[gh, config.layer_input_size(l)]);
                let w_hh = draw(&[gh, config.real_hidden_size()]);
                let (b_ih, b_hh) = if config.bias {
                    (Some(draw(&[gh])), Some(draw(&[gh])))
                } else {
                    (None, None)
                };
                let w_hr =
                    (config.proj_size > 0).then(|| draw(&[config.proj_size, config.hidden_size]));
                layers.push(LayerParams {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    w_hr,
                });
            }
        }
        RnnParams {
            config,
            layers,
            single_cell: false,
            packed: Default::default(),
        }
    }

    /// Builds parameters from per-layer tensors, checking every shape against `config`.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad config or wrong count, [`Error::Shape`] naming the
    /// PyTorch tensor whose shape is wrong, [`Error::MissingTensor`] for a bias that the
    /// config requires, [`Error::NonFinite`] for NaN or infinite weights.
    pub fn new(config: RnnConfig, layers: Vec<LayerParams<T>>) -> Result<Self> {
        let p = RnnParams {
            config,
            layers,
            single_cell: false,
            packed: Default::default(),
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks every shape against the config and every value for finiteness (after changes
    /// through [`RnnParams::layers_mut`]).
    ///
    /// # Errors
    /// As [`RnnParams::new`].
    pub fn validate(&self) -> Result<()> {
        let (config, layers) = (self.config, &self.layers);
        config.validate()?;
        let want = config.num_layers * config.directions();
        if layers.len() != want {
            return Err(Error::config(format!(
                "parameters: expected {want} layer-directions (num_layers·D), found {}",
                layers.len()
            )));
        }
        let gh = config.cell.gates() * config.hidden_size;
        for (i, p) in layers.iter().enumerate() {
            let (l, d) = (i / config.directions(), i % config.directions());
            let [n_ih, n_hh, n_bih, n_bhh] = config.param_names(l, d);
            p.w_ih
                .expect_shape(&n_ih, &[gh, config.layer_input_size(l)])?;
            p.w_hh
                .expect_shape(&n_hh, &[gh, config.real_hidden_size()])?;
            p.w_ih.expect_finite(&n_ih)?;
            p.w_hh.expect_finite(&n_hh)?;
            let n_hr = config.proj_name(l, d);
            match (config.proj_size, &p.w_hr) {
                (0, None) => {}
                (0, Some(_)) => {
                    return Err(Error::UnknownTensor {
                        name: n_hr,
                        source_name: "parameters".into(),
                        expected: "no projection, since proj_size = 0".into(),
                    });
                }
                (ps, None) => {
                    return Err(Error::MissingTensor {
                        name: n_hr,
                        expected: vec![ps, config.hidden_size],
                        source_name: "parameters".into(),
                    });
                }
                (ps, Some(w)) => {
                    w.expect_shape(&n_hr, &[ps, config.hidden_size])?;
                    w.expect_finite(&n_hr)?;
                }
            }
            for (name, b) in [(n_bih, &p.b_ih), (n_bhh, &p.b_hh)] {
                match (config.bias, b) {
                    (true, Some(b)) => {
                        b.expect_shape(&name, &[gh])?;
                        b.expect_finite(&name)?;
                    }
                    (true, None) => {
                        return Err(Error::MissingTensor {
                            name,
                            expected: vec![gh],
                            source_name: "parameters".into(),
                        });
                    }
                    (false, Some(_)) => {
                        return Err(Error::UnknownTensor {
                            name,
                            source_name: "parameters".into(),
                            expected: "no biases, since bias = false".into(),
                        });
                    }
                    (false, None) => {}
                }
            }
        }
        Ok(())
    }

    /// Wraps layers without checking them (for gradients, which share the parameters' shapes).
    pub(crate) fn from_parts(config: RnnConfig, layers: Vec<LayerParams<T>>) -> Self {
        RnnParams {
            config,
            layers,
            single_cell: false,
            packed: Default::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// Layer `layer`, direction `dir` (0 forward, 1 reverse).
    ///
    /// # Panics
    /// When `layer >= num_layers` or `dir >= D`.
    pub fn layer(&self, layer: usize, dir: usize) -> &LayerParams<T> {
        assert!(layer < self.config.num_layers && dir < self.config.directions());
        &self.layers[layer * self.config.directions() + dir]
    }

    /// All layer-directions, in order `layer·D + direction`.
    pub fn layers(&self) -> &[LayerParams<T>] {
        &self.layers
    }

    /// Mutable access to all layer-directions (shapes must be kept).
    pub fn layers_mut(&mut self) -> &mut [LayerParams<T>] {
        self.packed.clear();
        &mut self.layers
    }

    /// The CPU path's packed weights ([`crate::cpu::PackedWeights`]).
    pub(crate) fn packed(&self) -> &crate::cpu::PackedWeights<T> {
        &self.packed
    }

    /// Converts to another float type.
    pub fn cast<U: Float>(&self) -> RnnParams<U> {
        RnnParams {
            single_cell: self.single_cell,
            config: self.config,
            packed: Default::default(),
            layers: self
                .layers
                .iter()
                .map(|p| LayerParams {
                    w_ih: p.w_ih.cast(),
                    w_hh: p.w_hh.cast(),
                    b_ih: p.b_ih.as_ref().map(Tensor::cast),
                    b_hh: p.b_hh.as_ref().map(Tensor::cast),
                    w_hr: p.w_hr.as_ref().map(Tensor::cast),
                })
                .collect(),
        }
    }

    /// These parameters with the model's `batch_first` layout set (a file does not record it).
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.config.batch_first = batch_first;
        self
    }

    /// These parameters with the model's `dropout` set (PyTorch's module argument, which a
    /// state_dict does not record; see [`RnnConfig::dropout`]). Checked by
    /// [`RnnParams::validate`] and wherever the parameters are placed on a device.
    pub fn dropout(mut self, p: f32) -> Self {
        self.config.dropout = p;
        self
    }

    /// Whether these parameters are named as a single cell (`nn.RNNCell`, `nn.LSTMCell`,
    /// `nn.GRUCell`), as loaded from such a file; [`RnnParams::to_tensor_file`] then writes
    /// that form back.
    pub fn is_single_cell(&self) -> bool {
        self.single_cell
    }

    /// These parameters named as a single cell (`single_cell = true`: `weight_ih`,
    /// `weight_hh`, `bias_ih`, `bias_hh`, the state_dict of `nn.RNNCell`, `nn.LSTMCell` or
    /// `nn.GRUCell`) or as a stack (`weight_ih_l0`, ...).
    ///
    /// # Errors
    /// [`Error::Config`] for a single cell of more than one layer or direction.
    pub fn named_as_single_cell(mut self, single_cell: bool) -> Result<Self> {
        if single_cell && (self.config.num_layers != 1 || self.config.bidirectional) {
            return Err(Error::config(format!(
                "a single cell has one layer and one direction, found {} layer(s), \
                 bidirectional = {}",
                self.config.num_layers, self.config.bidirectional
            )));
        }
        self.single_cell = single_cell;
        Ok(self)
    }

    /// The parameters under PyTorch's names (f32), as the `state_dict()` of the matching
    /// `torch.nn.RNN`, `nn.LSTM` or `nn.GRU` saved by `safetensors.torch.save_file` holds them;
    /// an Elman cell's nonlinearity in metadata `nonlinearity`.
    pub fn to_tensor_file(&self) -> TensorFile {
        let mut file = TensorFile::default();
        for (i, p) in self.layers.iter().enumerate() {
            let (l, d) = (i / self.config.directions(), i % self.config.directions());
            let mut names = self.config.param_names(l, d);
            if self.single_cell {
                names = names.map(|n| n.trim_end_matches("_l0").to_string());
            }
            let [n_ih, n_hh, n_bih, n_bhh] = names;
            file.tensors.insert(n_ih, p.w_ih.cast());
            file.tensors.insert(n_hh, p.w_hh.cast());
            if let (Some(bi), Some(bh)) = (&p.b_ih, &p.b_hh) {
                file.tensors.insert(n_bih, bi.cast());
                file.tensors.insert(n_bhh, bh.cast());
            }
            if let Some(w) = &p.w_hr {
                file.tensors.insert(self.config.proj_name(l, d), w.cast());
            }
        }
        if let Some(n) = self.config.cell.nonlinearity() {
            file.metadata.insert("nonlinearity".into(), n.into());
        }
        file
    }

    /// Writes a safetensors file that `load_state_dict` of the matching `torch.nn.RNN`,
    /// `nn.LSTM` or `nn.GRU` accepts (after `safetensors.torch.load_file`). Written atomically.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.to_tensor_file().write(path)
    }
}

impl RnnParams<f32> {
    /// Reads a PyTorch `nn.RNN`, `nn.LSTM` or `nn.GRU` state_dict saved with safetensors,
    /// inferring the config (see [`RnnParams::from_tensor_file`]).
    ///
    /// # Errors
    /// As [`TensorFile::read`] and [`RnnParams::from_tensor_file`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_tensor_file(TensorFile::read(path)?, &path.display().to_string())
    }

    /// As [`RnnParams::load`], for a file saved from a larger module: the stack is the
    /// tensors whose names start with `prefix` (e.g. `encoder.rnn.`), the rest of the file is
    /// ignored. Without a prefix, a file whose one recurrent stack lives under some prefix
    /// loads (e.g. the engine's own training checkpoint, stack under `rnn.`); see
    /// [`RnnParams::from_tensor_file_at`].
    ///
    /// # Errors
    /// As [`RnnParams::from_tensor_file_at`].
    pub fn load_at(path: impl AsRef<Path>, prefix: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_tensor_file_at(TensorFile::read(path)?, &path.display().to_string(), prefix)
    }

    /// The prefixes of every recurrent stack (or single cell) in `file`: each name ending in
    /// `weight_hh_l0` (or `weight_hh`) gives the part before it, when that part is empty or
    /// ends with `.`.
    pub fn stack_prefixes(file: &TensorFile) -> Vec<String> {
        let mut found: Vec<String> = file
            .tensors
            .keys()
            .filter_map(|n| {
                n.strip_suffix("weight_hh_l0")
                    .or_else(|| n.strip_suffix("weight_hh"))
            })
            .filter(|p| p.is_empty() || p.ends_with('.'))
            .map(str::to_string)
            .collect();
        found.sort();
        found
    }

    /// [`RnnParams::from_tensor_file`] for the stack under `prefix` in `file`, or, without
    /// one, for the file's only stack wherever it lives. A stack with an empty prefix is read
    /// strictly (every tensor must be one of its parameters); under a non-empty prefix the
    /// tensors outside it (a head, optimizer state) are ignored.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] when no tensor starts with `prefix`; [`Error::Config`]
    /// listing the prefixes when the file holds several stacks and no prefix picks one; as
    /// [`RnnParams::from_tensor_file`] for the stack itself.
    pub fn from_tensor_file_at(
        mut file: TensorFile,
        source: &str,
        prefix: Option<&str>,
    ) -> Result<Self> {
        let found = Self::stack_prefixes(&file);
        let prefix = match prefix {
            // A module path as PyTorch prints it (`encoder.rnn`) names the same prefix.
            Some(p) if !p.is_empty() && !p.ends_with('.') => format!("{p}."),
            Some(p) => p.to_string(),
            None => match found.as_slice() {
                [] => String::new(),
                [one] => one.clone(),
                many => {
                    return Err(Error::Config(format!(
                        "{source} holds {} recurrent stacks, under the prefixes {}; pick one \
                         with --prefix",
                        many.len(),
                        many.iter()
                            .map(|p| format!("{p:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            },
        };
        if prefix.is_empty() {
            return Self::from_tensor_file(file, source);
        }
        if !found.contains(&prefix) && file.tensors.keys().any(|n| n.starts_with(&prefix)) {
            return Err(Error::Config(format!(
                "{source}: no recurrent stack directly under the prefix {prefix:?}; stacks \
                 were found under {found:?}"
            )));
        }
        let names: Vec<String> = file
            .tensors
            .keys()
            .filter(|n| n.starts_with(&prefix))
            .cloned()
            .collect();
        if names.is_empty() {
            return Err(Error::MissingTensor {
                name: format!("{prefix}weight_hh_l0"),
                expected: vec![],
                source_name: format!("{source} (stacks found under the prefixes {:?})", found),
            });
        }
        let mut stack = TensorFile {
            metadata: std::mem::take(&mut file.metadata),
            ..TensorFile::default()
        };
        for name in names {
            let t = file.tensors.remove(&name).expect("listed");
            stack.tensors.insert(name[prefix.len()..].to_string(), t);
        }
        Self::from_tensor_file(stack, &format!("{source} (prefix {prefix:?})"))
    }

    /// Builds parameters from named tensors. The cell, sizes, layers, direction and bias are
    /// inferred from the names and shapes (`weight_ih_l{k}[_reverse]`, ...): with
    /// `weight_hh_l0` `[G·H, H]`, G = 1 is Elman, 4 LSTM, 3 GRU; an LSTM's projection from
    /// `weight_hr_l0` `[P, H]` (then `weight_hh_l0` is `[4·H, P]`); the Elman nonlinearity
    /// comes from metadata `nonlinearity` (`tanh` when absent).
    ///
    /// # Errors
    /// [`Error::UnknownTensor`] for a name that is not a parameter of a recurrent stack,
    /// [`Error::MissingTensor`] for a gap (a missing layer, bias or direction),
    /// [`Error::Shape`] for a shape that disagrees with the others,
    /// [`Error::Config`] for a bad `nonlinearity` or weights that disagree on the gate count.
    pub fn from_tensor_file(mut file: TensorFile, source: &str) -> Result<Self> {
        if let Some((name, t)) = file.int_tensors.iter().next() {
            return Err(Error::Dtype {
                name: name.clone(),
                found: t.dtype.clone(),
            });
        }
        // A single cell's state_dict (nn.RNNCell, nn.LSTMCell, nn.GRUCell): the names of a
        // one-layer stack without the layer suffix.
        const CELL: [&str; 4] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];
        if file.tensors.contains_key("weight_hh") {
            if let Some(other) = file.tensors.keys().find(|n| !CELL.contains(&n.as_str())) {
                return Err(Error::UnknownTensor {
                    name: other.clone(),
                    source_name: source.into(),
                    expected: format!("the tensors of a single cell: {}", CELL.join(", ")),
                });
            }
            let tensors = std::mem::take(&mut file.tensors);
            for (n, t) in tensors {
                file.tensors.insert(format!("{n}_l0"), t);
            }
            return Self::from_tensor_file(file, &format!("{source} (a single cell)"))?
                .named_as_single_cell(true);
        }
        const EXPECTED: &str = "weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k>, \
                                weight_hr_l<k> (an LSTM's projection), \
                                each optionally with _reverse";
        let mut max_layer = None::<(usize, String)>;
        let mut reverse = false;
        let mut bias = false;
        for name in file.tensors.keys() {
            let parsed = parse_param_name(name).ok_or_else(|| Error::UnknownTensor {
                name: name.clone(),
                source_name: source.into(),
                expected: EXPECTED.into(),
            })?;
            if max_layer.as_ref().is_none_or(|(m, _)| parsed.layer > *m) {
                max_layer = Some((parsed.layer, name.clone()));
            }
            reverse |= parsed.reverse;
            bias |= parsed.is_bias;
        }
        let missing = |name: &str| Error::MissingTensor {
            name: name.into(),
            expected: vec![],
            source_name: source.into(),
        };
        let (max_layer, max_name) = max_layer.ok_or_else(|| missing("weight_ih_l0"))?;
        // Every layer needs at least two tensors, so a layer number beyond that cannot be
        // complete; name it rather than counting up to it.
        if max_layer > 0 && max_layer >= file.tensors.len() / 2 {
            return Err(Error::UnknownTensor {
                name: max_name,
                source_name: source.into(),
                expected: format!(
                    "layer numbers below {} for a file of {} tensors",
                    file.tensors.len() / 2,
                    file.tensors.len()
                ),
            });
        }
        let num_layers = max_layer + 1;
        let whh0 = file
            .tensors
            .get("weight_hh_l0")
            .ok_or_else(|| missing("weight_hh_l0"))?;
        let wih0 = file
            .tensors
            .get("weight_ih_l0")
            .ok_or_else(|| missing("weight_ih_l0"))?;
        if whh0.shape().len() != 2 || wih0.shape().len() != 2 {
            let bad = if whh0.shape().len() != 2 {
                ("weight_hh_l0", whh0.shape())
            } else {
                ("weight_ih_l0", wih0.shape())
            };
            return Err(Error::Config(format!(
                "{}: expected a 2-d weight, found shape {:?}",
                bad.0, bad.1
            )));
        }
        // With a projection, weight_hr_l0 [P, H] gives both sizes and weight_hh_l0 is
        // [G·H, P]; without one, weight_hh_l0 is [G·H, H].
        let (hidden_size, proj_size) = match file.tensors.get("weight_hr_l0") {
            Some(w) if w.shape().len() == 2 => (w.shape()[1], w.shape()[0]),
            Some(w) => {
                return Err(Error::Config(format!(
                    "weight_hr_l0: expected a 2-d weight [proj_size, hidden_size], found \
                     shape {:?}",
                    w.shape()
                )));
            }
            None => (whh0.shape()[1], 0),
        };
        let rows = whh0.shape()[0];
        if hidden_size == 0 || rows % hidden_size != 0 {
            return Err(Error::shape(
                "weight_hh_l0",
                &[hidden_size, hidden_size],
                whh0.shape(),
            ));
        }
        let nonlinearity = file.metadata.get("nonlinearity").map(String::as_str);
        let cell = crate::cell::for_gates(rows / hidden_size, nonlinearity).map_err(|e| {
            Error::Config(format!(
                "weight_hh_l0 has shape {:?}, {} blocks of H = {hidden_size} rows: {e}",
                whh0.shape(),
                rows / hidden_size
            ))
        })?;
        let gh = cell.gates() * hidden_size;
        // Every weight must agree on the gate count G; name both tensors when one does not.
        for (name, t) in &file.tensors {
            let rows_t = t.shape().first().copied().unwrap_or(0);
            let weight = ["weight_ih", "weight_hh", "bias"]
                .iter()
                .any(|p| name.starts_with(p));
            if weight && rows_t != gh && rows_t > 0 && rows_t % hidden_size == 0 {
                return Err(Error::Config(format!(
                    "{name} has {rows_t} = {}·{hidden_size} rows but weight_hh_l0 has {gh} = \
                     {}·{hidden_size} ({cell}): the two disagree on the gate count",
                    rows_t / hidden_size,
                    cell.gates(),
                )));
            }
        }
        let config = RnnConfig {
            cell,
            input_size: wih0.shape()[1],
            hidden_size,
            num_layers,
            bidirectional: reverse,
            bias,
            batch_first: false,
            proj_size,
            dropout: 0.0,
        };
        config.validate()?;
        let mut layers = Vec::new();
        for l in 0..num_layers {
            for d in 0..config.directions() {
                let [n_ih, n_hh, n_bih, n_bhh] = config.param_names(l, d);
                let w_ih = file.take(&n_ih, &[gh, config.layer_input_size(l)], source)?;
                let w_hh = file.take(&n_hh, &[gh, config.real_hidden_size()], source)?;
                let w_hr = match proj_size {
                    0 => None,
                    p => Some(file.take(&config.proj_name(l, d), &[p, hidden_size], source)?),
                };
                let (b_ih, b_hh) = if bias {
                    (
                        Some(file.take(&n_bih, &[gh], source)?),
                        Some(file.take(&n_bhh, &[gh], source)?),
                    )
                } else {
                    (None, None)
                };
                layers.push(LayerParams {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    w_hr,
                });
            }
        }
        if let Some(name) = file.tensors.keys().next() {
            return Err(Error::UnknownTensor {
                name: name.clone(),
                source_name: source.into(),
                expected: format!("the tensors of {num_layers} layer(s): {EXPECTED}"),
            });
        }
        RnnParams::new(config, layers)
    }

    /// PyTorch-named tensors as a map, for callers that assemble their own files.
    pub fn named_tensors(&self) -> HashMap<String, Tensor<f32>> {
        self.to_tensor_file().tensors.into_iter().collect()
    }
}

struct ParamName {
    layer: usize,
    reverse: bool,
    is_bias: bool,
}

fn parse_param_name(name: &str) -> Option<ParamName> {
    let (is_bias, rest) = if let Some(r) = name.strip_prefix("weight_") {
        (false, r)
    } else {
        (true, name.strip_prefix("bias_")?)
    };
    let rest = rest
        .strip_prefix("ih_l")
        .or_else(|| rest.strip_prefix("hh_l"))
        .or_else(|| rest.strip_prefix("hr_l").filter(|_| !is_bias))?;
    let (digits, reverse) = match rest.strip_suffix("_reverse") {
        Some(d) => (d, true),
        None => (rest, false),
    };
    // PyTorch writes layer numbers without leading zeros; `l00` is not `l0`.
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    Some(ParamName {
        layer: digits.parse().ok()?,
        reverse,
        is_bias,
    })
}

/// Where each layer's parameters sit in the flat parameter (and gradient) buffer. Per layer,
/// both directions of each tensor are adjacent (`weight_ih_l{k}` then `weight_ih_l{k}_reverse`),
/// so one GEMM projects the input for both directions: `w_ih`, `w_hh`, `b_ih`, `b_hh`.
#[derive(Debug, Clone)]
pub(crate) struct ParamLayout {
    pub layers: Vec<LayerOffsets>,
    pub total: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerOffsets {
    pub w_ih: usize,
    pub w_hh: usize,
    /// `(b_ih, b_hh)` when the model has bias.
    pub bias: Option<(usize, usize)>,
    /// `w_hr` `[D, P, H]` when the model projects.
    pub w_hr: Option<usize>,
}

impl ParamLayout {
    pub fn new(cfg: &RnnConfig) -> Self {
        let (d_n, h) = (cfg.directions(), cfg.hidden_size);
        let gh = cfg.cell.gates() * h;
        let mut at = 0;
        let mut take = |n: usize| {
            at += n;
            at - n
        };
        let layers = (0..cfg.num_layers)
            .map(|l| LayerOffsets {
                w_ih: take(d_n * gh * cfg.layer_input_size(l)),
                w_hh: take(d_n * gh * cfg.real_hidden_size()),
                bias: cfg.bias.then(|| (take(d_n * gh), take(d_n * gh))),
                w_hr: (cfg.proj_size > 0).then(|| take(d_n * cfg.proj_size * h)),
            })
            .collect();
        ParamLayout { layers, total: at }
    }

    pub fn flatten(&self, params: &RnnParams<f32>) -> Vec<f32> {
        let cfg = params.config();
        let mut flat = vec![0.0; self.total];
        for (l, off) in self.layers.iter().enumerate() {
            for d in 0..cfg.directions() {
                let p = params.layer(l, d);
                let put = |flat: &mut [f32], at: usize, t: &Tensor| {
                    flat[at + d * t.len()..][..t.len()].copy_from_slice(t.data());
                };
                put(&mut flat, off.w_ih, &p.w_ih);
                put(&mut flat, off.w_hh, &p.w_hh);
                if let (Some((bi, bh)), Some(tbi), Some(tbh)) = (off.bias, &p.b_ih, &p.b_hh) {
                    put(&mut flat, bi, tbi);
                    put(&mut flat, bh, tbh);
                }
                if let (Some(hr), Some(w)) = (off.w_hr, &p.w_hr) {
                    put(&mut flat, hr, w);
                }
            }
        }
        flat
    }

    pub fn unflatten(&self, cfg: &RnnConfig, flat: &[f32]) -> RnnParams<f32> {
        let (d_n, h) = (cfg.directions(), cfg.hidden_size);
        let gh = cfg.cell.gates() * h;
        let mut layers = Vec::with_capacity(cfg.num_layers * d_n);
        for (l, off) in self.layers.iter().enumerate() {
            let i_l = cfg.layer_input_size(l);
            for d in 0..d_n {
                let get = |at: usize, shape: Vec<usize>| {
                    let n: usize = shape.iter().product();
                    Tensor::new(shape, flat[at + d * n..][..n].to_vec()).expect("sizes match")
                };
                layers.push(LayerParams {
                    w_ih: get(off.w_ih, vec![gh, i_l]),
                    w_hh: get(off.w_hh, vec![gh, cfg.real_hidden_size()]),
                    b_ih: off.bias.map(|(bi, _)| get(bi, vec![gh])),
                    b_hh: off.bias.map(|(_, bh)| get(bh, vec![gh])),
                    w_hr: off.w_hr.map(|hr| get(hr, vec![cfg.proj_size, h])),
                });
            }
        }
        RnnParams::from_parts(*cfg, layers)
    }
}
