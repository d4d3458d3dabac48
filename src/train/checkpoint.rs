//! Checkpoints: the whole training state in one safetensors file, written atomically.
//!
//! Tensors: the stack under PyTorch's names prefixed `rnn.`, the head as `head.weight` and
//! `head.bias` (so `load_state_dict` works on a module with an `nn.RNN`, `nn.LSTM` or `nn.GRU`
//! named `rnn` and an `nn.Linear` named `head`; a [`Task::MeanSquare`] model has no head and
//! saves none, so its `rnn.` tensors load into a bare stack), and the optimizer's moments
//! `optim.m1`, `optim.m2` (flat, in the engine's parameter order). The cell follows from the
//! weights' shapes. Metadata: the step, an Elman cell's nonlinearity, the optimizer and its
//! hyperparameters, the clipping norm, the task, the data generator's state, the model's
//! `dropout` and the seed of its masks (both 0 when absent, as in checkpoints written before
//! dropout existed) and any caller entries (a vocabulary, a normalisation).

use std::collections::BTreeMap;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::io::TensorFile;
use crate::params::RnnParams;
use crate::tensor::Tensor;
use crate::train::{Optimizer, SeqModel, Task, TrainConfig, TrainState};

const FORMAT: &str = "wgpu-rnn-checkpoint-1";

/// A training run's state, as saved between sessions.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Model, moments and step.
    pub state: TrainState,
    /// Optimizer and clipping.
    pub train: TrainConfig,
    /// The data generator (so a resumed run draws the same batches).
    pub rng: ChaCha8Rng,
    /// Caller entries (strings), for example `vocab`.
    pub meta: BTreeMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Checkpoint {
    /// Writes the checkpoint atomically (temporary file, sync, rename).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let st = &self.state;
        let mut file = TensorFile::default();
        for (name, t) in st.model.rnn.to_tensor_file().tensors {
            file.tensors.insert(format!("rnn.{name}"), t);
        }
        if st.model.task.has_head() {
            file.tensors
                .insert("head.weight".into(), st.model.head_w.clone());
            file.tensors
                .insert("head.bias".into(), st.model.head_b.clone());
        }
        file.tensors.insert(
            "optim.m1".into(),
            Tensor::new(vec![st.m1.len()], st.m1.clone())?,
        );
        file.tensors.insert(
            "optim.m2".into(),
            Tensor::new(vec![st.m2.len()], st.m2.clone())?,
        );
        let m = &mut file.metadata;
        for (k, v) in &self.meta {
            m.insert(k.clone(), v.clone());
        }
        m.insert("format".into(), FORMAT.into());
        m.insert("step".into(), st.step.to_string());
        // The cell itself follows from the weights' shapes; an Elman cell's nonlinearity
        // does not.
        if let Some(n) = st.model.config().cell.nonlinearity() {
            m.insert("nonlinearity".into(), n.into());
        }
        let (task, outputs) = match st.model.task {
            Task::Tokens { vocab } => ("tokens", vocab),
            Task::Regression { outputs } => ("regression", outputs),
            Task::MeanSquare => ("mean_square", 0),
        };
        m.insert("task".into(), task.into());
        m.insert("outputs".into(), outputs.to_string());
        let o = self.train.optimizer;
        m.insert("optimizer".into(), o.name().into());
        let (_, [lr, momentum, beta1, beta2, eps, _, _]) = o.hyper(1);
        for (k, v) in [
            ("lr", lr),
            ("momentum", momentum),
            ("beta1", beta1),
            ("beta2", beta2),
            ("eps", eps),
        ] {
            // Bits, so that a resumed run uses exactly the same hyperparameters.
            m.insert(format!("optim.{k}"), v.to_bits().to_string());
        }
        m.insert(
            "clip".into(),
            self.train
                .clip_norm
                .map_or("none".into(), |c| c.to_bits().to_string()),
        );
        // Bits, like the optimizer's: a resumed run draws exactly the same masks.
        m.insert(
            "dropout".into(),
            st.model.config().dropout.to_bits().to_string(),
        );
        m.insert("dropout.seed".into(), st.dropout_seed.to_string());
        m.insert("rng.seed".into(), hex(&self.rng.get_seed()));
        m.insert("rng.word_pos".into(), self.rng.get_word_pos().to_string());
        file.write(path)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Safetensors`], [`Error::MissingTensor`] naming a missing
    /// tensor, [`Error::Config`] naming a missing or malformed metadata entry.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let src = path.display().to_string();
        let mut file = TensorFile::read(path)?;
        let meta = std::mem::take(&mut file.metadata);
        let get = |k: &str| -> Result<&str> {
            meta.get(k).map(String::as_str).ok_or_else(|| {
                Error::config(format!("{src}: checkpoint metadata {k:?} is missing"))
            })
        };
        if get("format")? != FORMAT {
            return Err(Error::config(format!(
                "{src}: expected checkpoint format {FORMAT}, found {}",
                get("format")?
            )));
        }
        let num = |k: &str| -> Result<u64> {
            get(k)?
                .parse()
                .map_err(|_| Error::config(format!("{src}: metadata {k:?} is not a number")))
        };
        let bits = |k: &str| -> Result<f32> { Ok(f32::from_bits(num(k)? as u32)) };
        let mut rnn_file = TensorFile::default();
        let names: Vec<String> = file
            .tensors
            .keys()
            .filter(|k| k.starts_with("rnn."))
            .cloned()
            .collect();
        for name in names {
            let t = file.tensors.remove(&name).expect("listed");
            rnn_file.tensors.insert(name["rnn.".len()..].to_string(), t);
        }
        let nonlinearity = get("nonlinearity");
        if let Ok(n) = &nonlinearity {
            rnn_file
                .metadata
                .insert("nonlinearity".into(), n.to_string());
        }
        // Checkpoints from before dropout have neither entry: no dropout, seed 0.
        let opt_num = |k: &str| if meta.contains_key(k) { num(k) } else { Ok(0) };
        let dropout = f32::from_bits(opt_num("dropout")? as u32);
        let dropout_seed = opt_num("dropout.seed")?;
        let rnn = RnnParams::from_tensor_file(rnn_file, &src)?.dropout(dropout);
        // The engine writes an Elman cell's nonlinearity; without it, a relu checkpoint would
        // run as tanh.
        if rnn.config().cell.nonlinearity().is_some() {
            nonlinearity?;
        }
        let outputs = num("outputs")? as usize;
        let task = match get("task")? {
            "tokens" => Task::Tokens { vocab: outputs },
            "regression" => Task::Regression { outputs },
            "mean_square" if outputs == 0 => Task::MeanSquare,
            "mean_square" => {
                return Err(Error::config(format!(
                    "{src}: a mean_square model has no head, but metadata \"outputs\" is {outputs}"
                )));
            }
            other => return Err(Error::config(format!("{src}: unknown task {other:?}"))),
        };
        let dh = rnn.config().output_size();
        let (head_w, head_b) = if task.has_head() {
            (
                file.take("head.weight", &[outputs, dh], &src)?,
                file.take("head.bias", &[outputs], &src)?,
            )
        } else {
            (Tensor::zeros(&[0, dh]), Tensor::zeros(&[0]))
        };
        let model = SeqModel {
            rnn,
            head_w,
            head_b,
            task,
        };
        model.validate()?;
        let n = model.num_params();
        let m1 = file.take("optim.m1", &[n], &src)?.into_data();
        let m2 = file.take("optim.m2", &[n], &src)?.into_data();
        let (lr, eps) = (bits("optim.lr")?, bits("optim.eps")?);
        let optimizer = match get("optimizer")? {
            "sgd" => Optimizer::Sgd {
                lr,
                momentum: bits("optim.momentum")?,
            },
            "adam" => Optimizer::Adam {
                lr,
                beta1: bits("optim.beta1")?,
                beta2: bits("optim.beta2")?,
                eps,
            },
            "adagrad" => Optimizer::Adagrad { lr, eps },
            other => return Err(Error::config(format!("{src}: unknown optimizer {other:?}"))),
        };
        let clip_norm = match get("clip")? {
            "none" => None,
            _ => Some(bits("clip")?),
        };
        let seed = unhex(get("rng.seed")?).ok_or_else(|| {
            Error::config(format!("{src}: metadata \"rng.seed\" is not 64 hex digits"))
        })?;
        let word_pos: u128 = get("rng.word_pos")?.parse().map_err(|_| {
            Error::config(format!("{src}: metadata \"rng.word_pos\" is not a number"))
        })?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_word_pos(word_pos);
        let step = num("step")?;
        let reserved = [
            "format",
            "step",
            "nonlinearity",
            "task",
            "outputs",
            "optimizer",
            "clip",
        ];
        let meta: BTreeMap<String, String> = meta
            .iter()
            .filter(|(k, _)| {
                !(reserved.contains(&k.as_str())
                    || k.starts_with("optim.")
                    || k.starts_with("dropout")
                    || k.starts_with("rng."))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Checkpoint {
            state: TrainState {
                model,
                m1,
                m2,
                step,
                dropout_seed,
            },
            train: TrainConfig {
                optimizer,
                clip_norm,
            },
            rng,
            meta,
        })
    }
}
