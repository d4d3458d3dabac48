//! Time series: a built-in noisy signal, a CSV column, normalisation, windows, and the
//! one-step-ahead forecast error against the naive last-value forecast.

use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::train::{Batch, SeqModel};

/// The built-in series: `sin(0.07t) + 0.5·sin(0.23t + 1) + 0.3·sin(0.011t)` plus uniform noise
/// of amplitude 0.1, from a seeded generator.
pub fn builtin_series(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|t| {
            let t = t as f32;
            (0.07 * t).sin()
                + 0.5 * (0.23 * t + 1.0).sin()
                + 0.3 * (0.011 * t).sin()
                + rng.random_range(-0.1f32..0.1)
        })
        .collect()
}

/// One column of a CSV file, by 0-based index or by header name. A first line whose cell is
/// not a number is taken as the header; empty lines are skipped.
///
/// # Errors
/// [`Error::Io`] when unreadable; [`Error::Config`] naming the line of a missing or
/// non-numeric cell, or an unknown column name.
pub fn read_csv_column(path: impl AsRef<Path>, column: &str) -> Result<Vec<f32>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let split = |l: &str| -> Vec<String> {
        l.split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .collect()
    };
    let mut index = column.parse::<usize>().ok();
    if let Some((_, first)) = lines.peek() {
        let cells = split(first);
        let is_header = match index {
            Some(i) => cells.get(i).is_some_and(|c| c.parse::<f32>().is_err()),
            None => true,
        };
        if is_header {
            if index.is_none() {
                index = cells.iter().position(|c| c == column);
            }
            lines.next();
        }
    }
    let index = index.ok_or_else(|| {
        Error::config(format!(
            "{}: no column named {column:?} in the header",
            path.display()
        ))
    })?;
    let mut out = Vec::new();
    for (n, line) in lines {
        let cells = split(line);
        let cell = cells.get(index).ok_or_else(|| {
            Error::config(format!(
                "{}:{}: expected column {index}, found {} cells",
                path.display(),
                n + 1,
                cells.len()
            ))
        })?;
        let v: f32 = cell.parse().map_err(|_| {
            Error::config(format!(
                "{}:{}: column {index}: {cell:?} is not a number",
                path.display(),
                n + 1
            ))
        })?;
        if !v.is_finite() {
            return Err(Error::config(format!(
                "{}:{}: column {index}: non-finite value",
                path.display(),
                n + 1
            )));
        }
        out.push(v);
    }
    Ok(out)
}

/// A series split into training and validation parts, normalised by the training part's
/// mean and standard deviation.
#[derive(Debug, Clone)]
pub struct Series {
    /// Normalised training values.
    pub train: Vec<f32>,
    /// Normalised validation values.
    pub valid: Vec<f32>,
    /// Mean of the training part.
    pub mean: f32,
    /// Standard deviation of the training part.
    pub std: f32,
}

impl Series {
    /// Splits off the last `valid_fraction` for validation and normalises.
    ///
    /// # Errors
    /// [`Error::Config`] when a part has fewer than `min_len` values.
    pub fn new(values: &[f32], valid_fraction: f64, min_len: usize) -> Result<Self> {
        let cut = ((values.len() as f64) * (1.0 - valid_fraction)).round() as usize;
        let (train, valid) = values.split_at(cut.min(values.len()));
        if train.len() < min_len || valid.len() < min_len {
            return Err(Error::config(format!(
                "series: expected at least {min_len} values in the training and validation parts, found {} and {}",
                train.len(),
                valid.len()
            )));
        }
        let n = train.len() as f64;
        let mean = train.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = train
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt().max(1e-12);
        let norm = |v: &[f32]| {
            v.iter()
                .map(|&x| ((x as f64 - mean) / std) as f32)
                .collect()
        };
        Ok(Series {
            train: norm(train),
            valid: norm(valid),
            mean: mean as f32,
            std: std as f32,
        })
    }
}

/// `b` windows at random offsets: input `x[o..o+t]`, target `x[o+1..o+t+1]`, as `[T, B, 1]`.
///
/// # Panics
/// When `xs` is shorter than `t + 1`.
pub fn random_batch(xs: &[f32], t: usize, b: usize, rng: &mut ChaCha8Rng) -> Batch {
    assert!(xs.len() > t, "series shorter than a window");
    let mut input = vec![0.0; t * b];
    let mut target = vec![0.0; t * b];
    for bi in 0..b {
        let off = rng.random_range(0..=xs.len() - t - 1);
        for ti in 0..t {
            input[ti * b + bi] = xs[off + ti];
            target[ti * b + bi] = xs[off + ti + 1];
        }
    }
    Batch::Values {
        input: Tensor::new(vec![t, b, 1], input).expect("sizes match"),
        target: Tensor::new(vec![t, b, 1], target).expect("sizes match"),
    }
}

/// One-step-ahead forecast over the whole of `xs` (one sequence from a zero state): the root
/// mean squared errors of the model and of the naive forecast `x̂_{t+1} = x_t`, over the steps
/// after `warmup`, in the units of `xs`.
///
/// # Errors
/// As [`SeqModel::evaluate`]; [`Error::Config`] when `xs` is not longer than `warmup + 1`.
pub fn forecast_rmse(model: &SeqModel, xs: &[f32], warmup: usize) -> Result<(f64, f64)> {
    if xs.len() <= warmup + 1 {
        return Err(Error::config(format!(
            "series: expected more than {} values to forecast, found {}",
            warmup + 1,
            xs.len()
        )));
    }
    let t = xs.len() - 1;
    let input = Tensor::new(vec![t, 1, 1], xs[..t].to_vec())?;
    let out = crate::cpu::forward(&model.rnn, &input, None)?;
    let pred = model.head(&out.output);
    let (mut m, mut n) = (0.0f64, 0.0f64);
    for i in warmup..t {
        m += ((pred[i] - xs[i + 1]) as f64).powi(2);
        n += ((xs[i] - xs[i + 1]) as f64).powi(2);
    }
    let k = (t - warmup) as f64;
    Ok(((m / k).sqrt(), (n / k).sqrt()))
}
