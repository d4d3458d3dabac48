//! `train`, `sample` and `predict`: the character language model and time-series forecasting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use wgpu_rnn::train::checkpoint::Checkpoint;
use wgpu_rnn::train::data::{self, CharCorpus, CharVocab};
use wgpu_rnn::train::series::{self, Series};
use wgpu_rnn::train::{
    Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer, evaluate_mean,
};
use wgpu_rnn::{Cell, Device, Error, Result, RnnConfig};

/// ` P=…` for a model with a projection, else nothing.
fn proj_note(c: &RnnConfig) -> String {
    match c.proj_size {
        0 => String::new(),
        p => format!(" P={p}"),
    }
}

/// `--cell`: a cell by the name [`Cell`]'s `Display` writes.
fn parse_cell(s: &str) -> std::result::Result<Cell, String> {
    Cell::from_name(s).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    Adam,
    Sgd,
    Adagrad,
}

/// Model and optimisation settings shared by `train` and `predict`.
#[derive(Args, Clone, Debug)]
pub struct Hyper {
    /// Hidden size H.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Stacked layers.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// PyTorch's dropout between layers: in training, each output of every layer but the last
    /// is zeroed with this probability (the rest scaled by 1/(1-p)); in [0, 1), no effect with
    /// one layer, never applied in evaluation or sampling. Masks follow from --seed.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Bidirectional layers (only for regression: a language model must not see the future).
    #[arg(long)]
    pub bidirectional: bool,
    /// The recurrent cell: rnn_tanh, rnn_relu (Elman), lstm or gru.
    #[arg(long, default_value = "rnn_tanh", value_parser = parse_cell)]
    pub cell: Cell,
    /// LSTM projection size P (PyTorch's proj_size; 0: none): h = W_hr·(o⊙tanh(c)), P < H.
    #[arg(long, default_value_t = 0)]
    pub proj_size: usize,
    /// Optimizer steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Windows per batch B.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Steps per window T (the BPTT length).
    #[arg(long)]
    pub seq: Option<usize>,
    /// Optimizer.
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerKind,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Clip gradients to this global norm (0: no clipping).
    #[arg(long, default_value_t = 5.0)]
    pub clip: f32,
    /// Seed of the initialisation and of the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device to train on.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: crate::DeviceKind,
    /// Stop after this many seconds (the checkpoint is still written).
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Evaluate on the validation part every this many steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    pub eval_every: u64,
    /// Read the loss back every this many steps for the progress bar and the loss curve.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Directory for the checkpoint and the loss plot.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from this checkpoint (its model and optimizer settings win).
    #[arg(long)]
    pub resume: Option<PathBuf>,
}

impl Hyper {
    fn train_config(&self, default_lr: f32) -> TrainConfig {
        let lr = self.lr.unwrap_or(default_lr);
        TrainConfig {
            optimizer: match self.optimizer {
                OptimizerKind::Adam => Optimizer::adam(lr),
                OptimizerKind::Sgd => Optimizer::sgd(lr, self.momentum),
                OptimizerKind::Adagrad => Optimizer::adagrad(lr),
            },
            clip_norm: (self.clip > 0.0).then_some(self.clip),
        }
    }
}

/// What a training loop reports.
pub struct RunLog {
    pub train: Vec<(u64, f64)>,
    pub valid: Vec<(u64, f64)>,
    pub seconds: f64,
    pub steps: u64,
}

/// The loop shared by both tasks: steps with a progress bar, periodic validation, a time
/// limit, then a checkpoint and a loss plot.
#[allow(clippy::too_many_arguments)]
fn train_loop(
    trainer: &mut Trainer,
    rng: &mut ChaCha8Rng,
    steps: u64,
    hyper: &Hyper,
    mut next_batch: impl FnMut(&mut ChaCha8Rng, u64) -> Result<Batch>,
    carry: bool,
    mut validate: impl FnMut(&SeqModel) -> Result<f64>,
    quiet: bool,
) -> Result<RunLog> {
    let start_step = trainer.steps();
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps.saturating_sub(start_step))
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps, {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let start = Instant::now();
    let mut log = RunLog {
        train: Vec::new(),
        valid: Vec::new(),
        seconds: 0.0,
        steps: 0,
    };
    while trainer.steps() < steps {
        let s = trainer.steps();
        let batch = next_batch(rng, s)?;
        trainer.step(&batch, carry)?;
        let s = trainer.steps();
        if s.is_multiple_of(hyper.log_every.max(1)) || s == steps {
            let loss = trainer.loss()?;
            if !loss.is_finite() {
                return Err(Error::config(format!(
                    "training diverged: loss {loss} at step {s}; lower --lr or set --clip"
                )));
            }
            log.train.push((s, loss));
            let rate = (s - start_step) as f64 / start.elapsed().as_secs_f64();
            pb.set_message(format!("loss {loss:.4}, {rate:.1} steps/s"));
        }
        pb.set_position(s - start_step);
        if hyper.eval_every > 0 && s.is_multiple_of(hyper.eval_every) && s < steps {
            let v = validate(&trainer.model()?)?;
            pb.suspend(|| println!("step {s}: validation loss {v:.4}"));
            log.valid.push((s, v));
        }
        if hyper
            .time_limit
            .is_some_and(|lim| start.elapsed().as_secs_f64() > lim)
        {
            pb.suspend(|| println!("time limit reached at step {s}"));
            break;
        }
    }
    // Wait for the queue so that the time covers the work, not just its submission.
    let _ = trainer.loss()?;
    log.seconds = start.elapsed().as_secs_f64();
    log.steps = trainer.steps() - start_step;
    pb.finish_and_clear();
    let v = validate(&trainer.model()?)?;
    log.valid.push((trainer.steps(), v));
    Ok(log)
}

/// Writes the checkpoint and the loss plot into `--out` (or `default_dir`).
fn finish(
    hyper: &Hyper,
    default_dir: &str,
    ckpt: &Checkpoint,
    log: &RunLog,
    title: &str,
) -> Result<()> {
    let out = hyper
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(default_dir));
    let out = out.as_path();
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let path = out.join("checkpoint.safetensors");
    ckpt.save(&path)?;
    let plot = out.join("loss.svg");
    plot_losses(&plot, title, &log.train, &log.valid)?;
    println!(
        "checkpoint: {}\nloss curve: {}",
        path.display(),
        plot.display()
    );
    Ok(())
}

/// Draws the training loss and the validation points as an SVG line chart.
pub fn plot_losses(
    path: &Path,
    title: &str,
    train: &[(u64, f64)],
    valid: &[(u64, f64)],
) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    let all = train.iter().chain(valid);
    let x_max = all.clone().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let y_max = all.clone().map(|p| p.1).fold(0.0, f64::max).max(1e-6) * 1.05;
    let y_min = all.map(|p| p.1).fold(f64::INFINITY, f64::min).min(y_max) * 0.95;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..x_max, y_min..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            train.iter().map(|&(s, l)| (s as f64, l)),
            &BLUE,
        ))
        .map_err(|e| err(&e))?
        .label("training (batch)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            valid.iter().map(|&(s, l)| (s as f64, l)),
            RED.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    finish_chart(path, chart, &root)
}

/// `wgpu-rnn train`: a character language model.
pub fn charlm(hyper: &Hyper, text: Option<&Path>, tbptt: bool, device: &Device) -> Result<()> {
    let (text, source) = match text {
        Some(p) => (data::read_text(p)?, p.display().to_string()),
        None => (
            data::BUILTIN_TEXT.to_string(),
            "the built-in corpus".to_string(),
        ),
    };
    let (steps, batch, seq) = (
        hyper.steps.unwrap_or(3000),
        hyper.batch.unwrap_or(32),
        hyper.seq.unwrap_or(64),
    );
    let corpus = CharCorpus::new(&text, 0.1, seq + 2)?;
    let (mut state, cfg, mut rng) = match &hyper.resume {
        Some(p) => {
            let c = Checkpoint::load(p)?;
            let vocab = c.meta.get("vocab").map(|s| CharVocab::from_string(s));
            if vocab.as_ref() != Some(&corpus.vocab) {
                return Err(Error::config(format!(
                    "{}: the checkpoint's vocabulary differs from {source}'s",
                    p.display()
                )));
            }
            (c.state, c.train, c.rng)
        }
        None => {
            if hyper.bidirectional {
                return Err(Error::config(
                    "a language model cannot be bidirectional (it would see the next character)",
                ));
            }
            let v = corpus.vocab.len();
            let config = RnnConfig::new(hyper.cell, v, hyper.hidden.unwrap_or(256))
                .proj_size(hyper.proj_size)
                .layers(hyper.layers)
                .dropout(hyper.dropout);
            let model = SeqModel::new(config, Task::Tokens { vocab: v }, hyper.seed)?;
            (
                TrainState::new(model).dropout_seed(hyper.seed),
                hyper.train_config(2e-3),
                ChaCha8Rng::seed_from_u64(hyper.seed),
            )
        }
    };
    state
        .model
        .check_batch(&data::random_batch(&corpus.train, seq, 1, &mut rng.clone()))?;
    let c = state.model.config();
    println!(
        "character model on {source}: {} train / {} validation characters, vocabulary {}\n\
         model: {} H={}{} L={} dropout {} ({} parameters), {} lr {} clip {:?}, B={batch} T={seq}{}, {} steps on {}",
        corpus.train.len(),
        corpus.valid.len(),
        corpus.vocab.len(),
        c.cell,
        c.hidden_size,
        proj_note(c),
        c.num_layers,
        c.dropout,
        state.model.num_params(),
        cfg.optimizer.name(),
        cfg.optimizer.lr(),
        cfg.clip_norm,
        if tbptt {
            " (truncated BPTT over consecutive chunks)"
        } else {
            ""
        },
        steps,
        device.describe()
    );
    let valid = data::eval_batches(&corpus.valid, seq, 64);
    let mut trainer = Trainer::new(state.clone(), cfg, device)?;
    let train = corpus.train.clone();
    let log = train_loop(
        &mut trainer,
        &mut rng,
        steps,
        hyper,
        |rng, s| {
            if tbptt {
                data::stream_batch(&train, seq, batch, s as usize)
            } else {
                Ok(data::random_batch(&train, seq, batch, rng))
            }
        },
        tbptt,
        |m| evaluate_mean(m, &valid),
        false,
    )?;
    state = trainer.state()?;
    let final_valid = log.valid.last().map_or(f64::NAN, |v| v.1);
    println!(
        "{} steps in {:.1} s ({:.1} ms/step); final validation loss {final_valid:.4} nats/char",
        log.steps,
        log.seconds,
        1e3 * log.seconds / log.steps.max(1) as f64
    );
    let mut meta = BTreeMap::new();
    meta.insert("vocab".to_string(), corpus.vocab.as_string());
    meta.insert("validation_loss".to_string(), format!("{final_valid:.6}"));
    let ckpt = Checkpoint {
        state,
        train: cfg,
        rng,
        meta,
    };
    finish(
        hyper,
        "runs/charlm",
        &ckpt,
        &log,
        "character model: cross-entropy (nats/char)",
    )
}

/// `wgpu-rnn sample`: text from a character checkpoint.
pub fn sample(
    checkpoint: &Path,
    len: usize,
    temperature: f32,
    seed: u64,
    prime: &str,
    device: &Device,
) -> Result<String> {
    let c = Checkpoint::load(checkpoint)?;
    let vocab = CharVocab::from_string(c.meta.get("vocab").ok_or_else(|| {
        Error::config(format!(
            "{}: not a character model (no vocabulary)",
            checkpoint.display()
        ))
    })?);
    let prime_ids = vocab.encode(prime)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let model = &c.state.model;
    let ids = wgpu_rnn::train::sample_on(model, device, &prime_ids, len, temperature, &mut rng)?;
    Ok(format!("{prime}{}", vocab.decode(&ids)))
}

/// `wgpu-rnn predict`: one-step-ahead forecasting of a series.
pub fn predict(
    hyper: &Hyper,
    csv: Option<&Path>,
    column: &str,
    delimiter: u8,
    forecast: usize,
    device: &Device,
) -> Result<()> {
    let (values, source) = match csv {
        Some(p) => (
            series::read_csv_column(p, column, delimiter)?,
            format!("{} column {column}", p.display()),
        ),
        None => (
            series::builtin_series(4000, 7),
            "the built-in noisy sum of sines".to_string(),
        ),
    };
    let (steps, batch, seq) = (
        hyper.steps.unwrap_or(1500),
        hyper.batch.unwrap_or(16),
        hyper.seq.unwrap_or(50),
    );
    let s = Series::new(&values, 0.2, seq + 2)?;
    let (state, cfg, mut rng) = match &hyper.resume {
        Some(p) => {
            let c = Checkpoint::load(p)?;
            (c.state, c.train, c.rng)
        }
        None => {
            let config = RnnConfig::new(hyper.cell, 1, hyper.hidden.unwrap_or(32))
                .proj_size(hyper.proj_size)
                .layers(hyper.layers)
                .bidirectional(hyper.bidirectional)
                .dropout(hyper.dropout);
            let model = SeqModel::new(config, Task::Regression { outputs: 1 }, hyper.seed)?;
            (
                TrainState::new(model).dropout_seed(hyper.seed),
                hyper.train_config(5e-3),
                ChaCha8Rng::seed_from_u64(hyper.seed),
            )
        }
    };
    if state.model.config().bidirectional {
        if forecast > 0 {
            // Checked before training: rolling forward streams, and a reverse direction
            // needs the future.
            return Err(Error::config(
                "--forecast: a bidirectional model cannot roll forward past the data (its \
                 reverse direction needs the future); train without --bidirectional",
            ));
        }
        println!(
            "note: a bidirectional model sees the future inside each window; its forecast error is not a fair one"
        );
    }
    println!(
        "forecasting {source}: {} train / {} validation values; {} H={}{} L={} dropout {} on {}",
        s.train.len(),
        s.valid.len(),
        state.model.config().cell,
        state.model.config().hidden_size,
        proj_note(state.model.config()),
        state.model.config().num_layers,
        state.model.config().dropout,
        device.describe()
    );
    let mut trainer = Trainer::new(state, cfg, device)?;
    let train = s.train.clone();
    let valid_xs = s.valid.clone();
    let log = train_loop(
        &mut trainer,
        &mut rng,
        steps,
        hyper,
        |rng, _| Ok(series::random_batch(&train, seq, batch, rng)),
        false,
        |m| Ok(series::forecast_rmse(m, &valid_xs, seq)?.0.powi(2)),
        false,
    )?;
    let state = trainer.state()?;
    let (model_rmse, naive_rmse) = series::forecast_rmse(&state.model, &s.valid, seq)?;
    println!(
        "{} steps in {:.1} s; validation one-step-ahead RMSE: model {:.4}, naive last value {:.4} (ratio {:.2}), in the series' units",
        log.steps,
        log.seconds,
        model_rmse * s.std as f64,
        naive_rmse * s.std as f64,
        model_rmse / naive_rmse
    );
    let history: Vec<f32> = s.train.iter().chain(&s.valid).copied().collect();
    let forecast = match forecast {
        0 => None,
        n => {
            let units = |v: f32| v * s.std + s.mean;
            let preds: Vec<f32> = series::forecast(&state.model, &history, n, device)?
                .into_iter()
                .map(units)
                .collect();
            println!(
                "forecast of the {n} steps past the data (each fed back as the next input), on \
                 {}:",
                device.describe()
            );
            for (k, p) in preds.iter().enumerate() {
                println!("  t+{}: {p:.4}", k + 1);
            }
            let tail: Vec<f32> = history[history.len().saturating_sub(4 * n.max(50))..]
                .iter()
                .map(|&v| units(v))
                .collect();
            Some((tail, preds))
        }
    };
    let mut meta = BTreeMap::new();
    meta.insert("series.mean".to_string(), s.mean.to_string());
    meta.insert("series.std".to_string(), s.std.to_string());
    let ckpt = Checkpoint {
        state,
        train: cfg,
        rng,
        meta,
    };
    finish(
        hyper,
        "runs/series",
        &ckpt,
        &log,
        "one-step forecast: MSE (normalised units)",
    )?;
    if let Some((tail, preds)) = forecast {
        let dir = hyper
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs/series"));
        let path = dir.join("forecast.svg");
        plot_forecast(&path, &tail, &preds)?;
        println!("forecast plot: {}", path.display());
    }
    Ok(())
}

/// Draws a chart's legend and writes the file.
fn finish_chart<'a, 'b: 'a>(
    path: &Path,
    mut chart: plotters::prelude::ChartContext<
        'a,
        plotters::prelude::SVGBackend<'b>,
        plotters::prelude::Cartesian2d<
            plotters::coord::types::RangedCoordf64,
            plotters::coord::types::RangedCoordf64,
        >,
    >,
    root: &plotters::prelude::DrawingArea<
        plotters::prelude::SVGBackend<'b>,
        plotters::coord::Shift,
    >,
) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Draws the end of the data and the forecast after it as an SVG line chart.
fn plot_forecast(path: &Path, data: &[f32], forecast: &[f32]) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    let all = data.iter().chain(forecast).map(|&v| v as f64);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let n = data.len();
    let x_max = (n + forecast.len()) as f64;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("forecast past the data", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step (the last values of the data, then the forecast)")
        .y_desc("value")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            data.iter().enumerate().map(|(i, &v)| (i as f64, v as f64)),
            &BLUE,
        ))
        .map_err(|e| err(&e))?
        .label("data")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    // The forecast starts from the last data point.
    let start = data.last().map(|&v| ((n - 1) as f64, v as f64));
    let points = start.into_iter().chain(
        forecast
            .iter()
            .enumerate()
            .map(|(k, &v)| ((n + k) as f64, v as f64)),
    );
    chart
        .draw_series(LineSeries::new(points, RED.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("forecast")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    finish_chart(path, chart, &root)
}

/// Median milliseconds per training step on `device` (after a warm-up step); each step reads
/// its loss back, which waits for the queue.
pub fn time_steps(
    model: &SeqModel,
    cfg: TrainConfig,
    device: &Device,
    batch: &Batch,
    n: usize,
) -> Result<f64> {
    let mut tr = Trainer::new(TrainState::new(model.clone()), cfg, device)?;
    crate::bench::time(n, || {
        tr.step(batch, false)?;
        tr.loss().map(drop)
    })
}

/// The main job: train the character model on the built-in corpus for a bounded time.
pub fn demo(device: &Device, seconds: f64) -> Result<()> {
    let (h, batch, seq) = (128, 16, 32);
    let corpus = CharCorpus::new(data::BUILTIN_TEXT, 0.1, seq + 2)?;
    let v = corpus.vocab.len();
    let model = SeqModel::new(
        RnnConfig::new(Cell::RnnTanh, v, h),
        Task::Tokens { vocab: v },
        1,
    )?;
    let cfg = TrainConfig {
        optimizer: Optimizer::adam(5e-3),
        clip_norm: Some(5.0),
    };
    println!(
        "wgpu-rnn demonstration: a character-level Elman RNN (H={h}, {} parameters) learns the\n\
         built-in story ({} characters, vocabulary {v}) on {} for about {seconds:.0} s.\n",
        model.num_params(),
        data::BUILTIN_TEXT.len(),
        device.describe()
    );
    let show = |m: &SeqModel, label: &str| -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let ids = wgpu_rnn::train::sample(m, &corpus.vocab.encode("The ")?, 160, 0.6, &mut rng)?;
        println!(
            "{label}:\n  The {}\n",
            corpus.vocab.decode(&ids).replace('\n', "\n  ")
        );
        Ok(())
    };
    show(&model, "sample before training")?;
    let valid = data::eval_batches(&corpus.valid, seq, 64);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut trainer = Trainer::new(TrainState::new(model.clone()), cfg, device)?;
    let hyper = Hyper {
        hidden: Some(h),
        layers: 1,
        dropout: 0.0,
        bidirectional: false,
        cell: Cell::RnnTanh,
        proj_size: 0,
        steps: Some(100_000),
        batch: Some(batch),
        seq: Some(seq),
        optimizer: OptimizerKind::Adam,
        lr: Some(5e-3),
        momentum: 0.9,
        clip: 5.0,
        seed: 1,
        device: crate::DeviceKind::Gpu,
        time_limit: Some(seconds),
        eval_every: 0,
        log_every: 25,
        out: None,
        resume: None,
    };
    let start_valid = evaluate_mean(&model, &valid)?;
    let log = train_loop(
        &mut trainer,
        &mut rng,
        100_000,
        &hyper,
        |rng, _| Ok(data::random_batch(&corpus.train, seq, batch, rng)),
        false,
        |m| evaluate_mean(m, &valid),
        true,
    )?;
    println!("training loss (nats/char) every {} steps:", hyper.log_every);
    for chunk in log.train.chunks(8) {
        let row: Vec<String> = chunk
            .iter()
            .map(|(s, l)| format!("{s:>5}: {l:.3}"))
            .collect();
        println!("  {}", row.join("  "));
    }
    let end_valid = log.valid.last().map_or(f64::NAN, |v| v.1);
    println!(
        "\n{} steps in {:.1} s; validation loss {start_valid:.3} -> {end_valid:.3} nats/char\n",
        log.steps, log.seconds
    );
    let trained = trainer.state()?.model;
    show(&trained, "sample after training")?;
    // Side by side: one training step, GPU and CPU, same model and batch.
    let b = data::random_batch(&corpus.train, seq, batch, &mut ChaCha8Rng::seed_from_u64(9));
    let cpu_ms = time_steps(&model, cfg, &Device::Cpu, &b, 5)?;
    match device {
        Device::Gpu(_) => {
            let gpu_ms = time_steps(&model, cfg, device, &b, 5)?;
            println!(
                "training step (B={batch}, T={seq}, H={h}, forward + BPTT + Adam), median of 5:\n  \
                 gpu {gpu_ms:.2} ms  |  cpu {cpu_ms:.2} ms  |  cpu/gpu {:.2}",
                cpu_ms / gpu_ms
            );
        }
        Device::Cpu => println!("training step on the CPU: {cpu_ms:.2} ms (median of 5)"),
    }
    Ok(())
}
