//! Character-level text data: vocabulary, splits, random training windows and the
//! consecutive validation windows.

use std::path::Path;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::train::Batch;

/// Reads a UTF-8 text file.
///
/// # Errors
/// [`Error::Io`] when it cannot be read; [`Error::NotUtf8`] naming the byte offset (and line)
/// of the first invalid sequence.
pub fn read_text(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => Err(Error::not_utf8(path, e.as_bytes(), e.utf8_error())),
    }
}

/// The built-in corpus (a short story written for this project), for runs without `--text`.
pub const BUILTIN_TEXT: &str = include_str!("corpus.txt");

/// A character vocabulary: the sorted set of a text's characters; id = position.
///
/// # Example
/// ```
/// use wgpu_rnn::train::data::CharVocab;
/// let v = CharVocab::from_text("hello");
/// assert_eq!(v.len(), 4); // e h l o
/// assert_eq!(v.decode(&v.encode("hole").unwrap()), "hole");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
}

impl CharVocab {
    /// The sorted set of `text`'s characters.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        CharVocab { chars }
    }

    /// Rebuilds a vocabulary from [`CharVocab::as_string`].
    pub fn from_string(s: &str) -> Self {
        CharVocab {
            chars: s.chars().collect(),
        }
    }

    /// The characters in id order, as one string (stored in checkpoints).
    pub fn as_string(&self) -> String {
        self.chars.iter().collect()
    }

    /// Number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Ids of `text`'s characters.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first character outside the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .map(|c| {
                self.chars
                    .binary_search(&c)
                    .map(|i| i as u32)
                    .map_err(|_| Error::config(format!("character {c:?} is not in the vocabulary")))
            })
            .collect()
    }

    /// The characters of `ids` (ids outside the vocabulary become `?`).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| self.chars.get(i as usize).copied().unwrap_or('?'))
            .collect()
    }
}

/// A text split into training and validation ids.
#[derive(Debug, Clone)]
pub struct CharCorpus {
    /// The vocabulary of the whole text.
    pub vocab: CharVocab,
    /// The first part.
    pub train: Vec<u32>,
    /// The held-out last part.
    pub valid: Vec<u32>,
}

impl CharCorpus {
    /// Splits `text`: the first `1 − valid_fraction` for training, the rest for validation.
    ///
    /// # Errors
    /// [`Error::Config`] when either part is shorter than `min_len` characters.
    pub fn new(text: &str, valid_fraction: f64, min_len: usize) -> Result<Self> {
        let vocab = CharVocab::from_text(text);
        let ids = vocab.encode(text)?;
        let cut = ((ids.len() as f64) * (1.0 - valid_fraction)).round() as usize;
        let (train, valid) = ids.split_at(cut.min(ids.len()));
        if train.len() < min_len || valid.len() < min_len {
            return Err(Error::config(format!(
                "text: expected at least {min_len} characters in the training and validation parts, found {} and {}",
                train.len(),
                valid.len()
            )));
        }
        Ok(CharCorpus {
            vocab,
            train: train.to_vec(),
            valid: valid.to_vec(),
        })
    }
}

/// `b` windows of `t + 1` ids at uniformly random offsets: inputs are the first `t`, targets
/// the last `t` of each window; time-major `[T, B]`.
///
/// # Panics
/// When `ids` is shorter than `t + 1`.
pub fn random_batch(ids: &[u32], t: usize, b: usize, rng: &mut ChaCha8Rng) -> Batch {
    assert!(ids.len() > t, "text shorter than a window");
    let mut inputs = vec![0; t * b];
    let mut targets = vec![0; t * b];
    for bi in 0..b {
        let off = rng.random_range(0..=ids.len() - t - 1);
        for ti in 0..t {
            inputs[ti * b + bi] = ids[off + ti];
            targets[ti * b + bi] = ids[off + ti + 1];
        }
    }
    Batch::Tokens {
        t,
        b,
        inputs,
        targets,
    }
}

/// Consecutive chunks for truncated BPTT: `b` streams, each reading its own contiguous part
/// of `ids`; chunk `k` of every stream follows chunk `k − 1` (wrapping around at the end of
/// the part), so the hidden state carries.
///
/// # Errors
/// [`Error::Config`] when `t` or `b` is 0 or a stream's part is shorter than `t + 1`.
pub fn stream_batch(ids: &[u32], t: usize, b: usize, k: usize) -> Result<Batch> {
    let part = ids.len().checked_div(b).unwrap_or(0);
    if t == 0 || part < t + 1 {
        return Err(Error::config(format!(
            "truncated BPTT: expected T >= 1, B >= 1 and at least T + 1 = {} characters per \
             stream, found T = {t}, B = {b} and {part} characters per stream",
            t + 1
        )));
    }
    let k = k % ((part - 1) / t);
    let mut inputs = vec![0; t * b];
    let mut targets = vec![0; t * b];
    for bi in 0..b {
        let base = bi * part + k * t;
        for ti in 0..t {
            inputs[ti * b + bi] = ids[base + ti];
            targets[ti * b + bi] = ids[base + ti + 1];
        }
    }
    Ok(Batch::Tokens {
        t,
        b,
        inputs,
        targets,
    })
}

/// The held-out text cut into consecutive non-overlapping windows of `t + 1` ids, grouped
/// into batches of at most `b` windows (each window predicts `t` characters).
pub fn eval_batches(ids: &[u32], t: usize, b: usize) -> Vec<Batch> {
    let windows: Vec<&[u32]> = ids.chunks_exact(t + 1).collect();
    windows
        .chunks(b)
        .map(|group| {
            let bn = group.len();
            let mut inputs = vec![0; t * bn];
            let mut targets = vec![0; t * bn];
            for (bi, w) in group.iter().enumerate() {
                for ti in 0..t {
                    inputs[ti * bn + bi] = w[ti];
                    targets[ti * bn + bi] = w[ti + 1];
                }
            }
            Batch::Tokens {
                t,
                b: bn,
                inputs,
                targets,
            }
        })
        .collect()
}
