//! Shared test helpers: the GPU context, seeded data and normwise comparisons.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use rand::{RngExt, SeedableRng};
use wgpu_rnn::gpu::{AdapterOptions, GpuContext};
use wgpu_rnn::{Float, Tensor};

/// The GPU context for tests: the adapter wgpu's environment variables select.
/// Panics with advice when there is none: a GPU test never passes quietly.
pub fn gpu() -> Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| match GpuContext::new(&AdapterOptions::default()) {
        Ok(ctx) => {
            eprintln!("gpu tests on {}", ctx.describe());
            ctx
        }
        Err(e) => panic!(
            "GPU tests need an adapter: {e}. On Linux without a GPU install the software \
             Vulkan driver (apt-get install mesa-vulkan-drivers) or run with WGPU_BACKEND=gl."
        ),
    })
    .clone()
}

/// A tensor of uniform values in [-scale, scale] from a seeded generator.
pub fn random<T: Float>(shape: &[usize], scale: f64, seed: u64) -> Tensor<T> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| T::from_f64_lossy(rng.random_range(-scale..=scale)))
        .collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// ‖got − want‖₂ / max(‖want‖₂, tiny), and the index of the largest elementwise difference.
pub fn rel_err<T: Float, U: Float>(got: &[T], want: &[U]) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let (mut num, mut den, mut worst, mut worst_i) = (0.0f64, 0.0f64, -1.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f64_lossy(), w.to_f64_lossy());
        let d = if g.is_nan() || w.is_nan() {
            f64::INFINITY
        } else {
            (g - w).abs()
        };
        num += d * d;
        den += w * w;
        if d > worst {
            worst = d;
            worst_i = i;
        }
    }
    (num.sqrt() / den.sqrt().max(1e-30), worst_i)
}

/// Asserts that `got` matches `want` to a relative normwise error of `tol`, naming the
/// tensor, the worst index and both values there.
#[track_caller]
pub fn assert_close<T: Float, U: Float>(what: &str, got: &Tensor<T>, want: &Tensor<U>, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    let (err, i) = rel_err(got.data(), want.data());
    assert!(
        err <= tol,
        "{what}: relative error {err:.3e} > {tol:.0e}; worst at flat index {i} (shape {:?}): \
         got {:?}, want {:?}",
        got.shape(),
        got.data()[i],
        want.data()[i]
    );
}

/// Asserts that `err`'s message contains every one of `parts`, printing the message if not.
#[track_caller]
pub fn assert_msg(err: &wgpu_rnn::Error, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(
            msg.contains(p),
            "message {msg:?} does not contain {p:?} ({err:?})"
        );
    }
}

/// A unique path under the system temp directory, removed (if it exists) when dropped.
pub struct TempPath(pub std::path::PathBuf);

impl TempPath {
    /// `wgpu-rnn-test-<pid>-<counter>-<name>` in `std::env::temp_dir()`.
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TempPath(
            std::env::temp_dir().join(format!("wgpu-rnn-test-{}-{n}-{name}", std::process::id())),
        )
    }

    /// The path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The Elman cases among the golden files (made by PyTorch in float64).
pub const ELMAN: [&str; 5] = [
    "rnn_tanh_1l",
    "rnn_relu_2l",
    "rnn_tanh_2l_bidir",
    "rnn_tanh_nobias",
    "rnn_tanh_wide",
];

/// Single-cell state_dicts (`nn.RNNCell`, `nn.LSTMCell`, `nn.GRUCell`) with the cell applied T
/// times by PyTorch (made by `tests/golden/make_cells.py`); forward answers only.
#[allow(dead_code)]
pub const CELLS: [&str; 4] = [
    "cell_rnn_tanh",
    "cell_rnn_relu_nobias",
    "cell_lstm",
    "cell_gru",
];

/// The golden cases of variable-length batches (their case files hold `lengths`).
#[allow(dead_code)]
pub const VARLEN: [&str; 3] = ["rnn_tanh_varlen", "lstm_varlen_bidir", "gru_varlen_2l"];

/// The golden cases of LSTMs with a projection (`proj_size`).
#[allow(dead_code)]
pub const PROJ: [&str; 2] = ["lstm_proj", "lstm_proj_2l_bidir"];

/// The golden cases of the gated cells (LSTM and GRU) without projections or lengths.
#[allow(dead_code)]
pub const GATED: [&str; 4] = ["lstm_1l", "lstm_2l_bidir", "gru_1l", "gru_2l_bidir"];

/// `tests/golden/{name}.{kind}.safetensors`, `kind` being `model` or `case`.
pub fn golden(name: &str, kind: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.{kind}.safetensors"))
}

/// A batch of `b` windows of `t` random tokens below `vocab`, each target the next token.
#[allow(dead_code)]
pub fn token_batch(t: usize, b: usize, vocab: u32, seed: u64) -> wgpu_rnn::train::Batch {
    let x: wgpu_rnn::Tensor = random(&[t * b + b], 1.0, seed);
    let ids: Vec<u32> = x
        .data()
        .iter()
        .map(|v| ((v + 1.0) * 0.5 * vocab as f32) as u32 % vocab)
        .collect();
    wgpu_rnn::train::Batch::Tokens {
        t,
        b,
        inputs: ids[..t * b].to_vec(),
        targets: ids[b..].to_vec(),
    }
}

/// A batch of random inputs `[t, b, i]` and targets `[t, b, o]`.
#[allow(dead_code)]
pub fn value_batch(t: usize, b: usize, i: usize, o: usize, seed: u64) -> wgpu_rnn::train::Batch {
    wgpu_rnn::train::Batch::Values {
        input: random(&[t, b, i], 1.0, seed),
        target: random(&[t, b, o], 0.5, seed + 1),
    }
}

/// A CPU and a GPU training run of the same steps agree: every loss and every stack
/// parameter within 1e-4 relative.
#[allow(dead_code)]
#[track_caller]
pub fn assert_trajectories_agree(
    what: &str,
    (c, cl): (&wgpu_rnn::train::TrainState, &[f64]),
    (g, gl): (&wgpu_rnn::train::TrainState, &[f64]),
) {
    for (i, (a, b)) in cl.iter().zip(gl).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs().max(1e-3),
            "{what}: loss at step {i}: cpu {a}, gpu {b}"
        );
    }
    for (name, t) in c.model.rnn.to_tensor_file().tensors {
        assert_close(
            &format!("{what}: {name}"),
            &g.model.rnn.to_tensor_file().tensors[&name],
            &t,
            1e-4,
        );
    }
}
