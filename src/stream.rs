//! Streaming inference: a model fed one step or one chunk at a time, the way applications run
//! recurrent models (a voice-activity detector, a denoiser, a next-character model), with the
//! state kept between calls instead of carried by hand.

use crate::error::{Error, Result};
use crate::gpu::GpuStream;
use crate::model::Device;
use crate::params::RnnParams;
use crate::state::State;
use crate::tensor::Tensor;
use crate::{RnnConfig, cpu};

/// A unidirectional model (any cell, with or without a projection) run chunk by chunk, its
/// state `h` (and `c`) kept between calls, on the GPU (resident in device memory: one submit
/// per chunk, no state upload, no buffer or bind group created after the first chunk of a
/// given length) or on the CPU (host tensors; each chunk allocates its output and the new
/// state, as [`crate::cpu::forward`] does). Feeding a sequence in chunks of any lengths gives
/// the outputs and final state of one forward pass over the whole sequence (to rounding on
/// the CPU, whose GEMMs may take other kernels for other row counts).
///
/// Inputs are time-major chunks `[t, B, I]` (or one step `[B, I]`), outputs `[t, B, R]`
/// (`[B, R]`), `R` being [`RnnConfig::real_hidden_size`]. The state starts at zeros;
/// [`Stream::state`] reads it, [`Stream::set_state`] replaces it, [`Stream::reset_rows`]
/// restarts some rows (a new utterance in one slot of a batch) while the others continue.
/// Inference only: dropout never applies. Chunks are time-major whatever the parameters'
/// `batch_first` (a chunk is usually one step). On the GPU a stream holds its own copy of the
/// parameters on the device.
///
/// # Example
/// ```
/// use wgpu_rnn::{Cell, Device, RnnConfig, RnnParams, Stream, Tensor};
/// let params = RnnParams::random(RnnConfig::new(Cell::Gru, 3, 8), 0);
/// let mut stream = Stream::new(params, &Device::Cpu, 2)?;
/// for _ in 0..5 {
///     let frame = Tensor::full(&[2, 3], 0.1); // one step of B = 2 rows
///     let y = stream.feed(&frame)?;
///     assert_eq!(y.shape(), &[2, 8]);
/// }
/// stream.reset_rows(&[1])?; // row 1 starts a new sequence
/// # Ok::<(), wgpu_rnn::Error>(())
/// ```
pub struct Stream {
    engine: Engine,
    config: RnnConfig,
    batch: usize,
}

enum Engine {
    Cpu {
        params: RnnParams,
        h: Tensor,
        c: Option<Tensor>,
    },
    Gpu(Box<GpuStream>),
}

impl Stream {
    /// A stream of `batch` rows over `params` on `device`, from zero states.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for a bidirectional model (its reverse direction needs the
    /// future of the sequence) or `batch = 0`; [`crate::Error::Limit`] for a state too large
    /// to allocate; on the GPU as [`crate::gpu::GpuRnn::new`].
    pub fn new(params: RnnParams, device: &Device, batch: usize) -> Result<Self> {
        let config = *params.config();
        check_streamable(&config, batch)?;
        params.validate()?;
        let engine = match device {
            Device::Gpu(ctx) => Engine::Gpu(Box::new(GpuStream::new(ctx.clone(), &params, batch)?)),
            Device::Cpu => {
                // The state's floats, checked before anything is allocated.
                let ld = config.num_layers * config.directions();
                let width = config.real_hidden_size() + config.hidden_size;
                let floats = ld
                    .checked_mul(batch)
                    .and_then(|n| n.checked_mul(width))
                    .filter(|&n| n <= MAX_HOST_STATE);
                if floats.is_none() {
                    return Err(Error::Limit {
                        what: format!("the state of a stream of {batch} rows"),
                        limit: "floats of a host stream's state",
                        needed: (ld as u64)
                            .saturating_mul(batch as u64)
                            .saturating_mul(width as u64),
                        max: MAX_HOST_STATE as u64,
                    });
                }
                let (h, c) = zero_state(&config, batch);
                Engine::Cpu { params, h, c }
            }
        };
        Ok(Stream {
            engine,
            config,
            batch,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// Batch rows `B`.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Feeds a chunk `[t, B, I]` (or one step `[B, I]`) and returns its output `[t, B, R]`
    /// (`[B, R]`), continuing from the state the previous chunk left.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] naming `input` (against `[B, I]` for a 2-d input, `[t, B, I]`
    /// for a 3-d one), [`crate::Error::Config`] for another rank, [`crate::Error::NonFinite`];
    /// on the GPU also [`crate::Error::Limit`] and [`crate::Error::Gpu`].
    pub fn feed(&mut self, input: &Tensor) -> Result<Tensor> {
        let (b, i) = (self.batch, self.config.input_size);
        let one_step = match input.shape() {
            [_, _] if input.shape() != [b, i] => {
                return Err(Error::shape("input", &[b, i], input.shape()));
            }
            [_, _] => true,
            [_, _, _] => false,
            other => {
                return Err(Error::config(format!(
                    "input: expected a chunk [t, B, I] = [t, {b}, {i}] or one step [B, I] = \
                     [{b}, {i}], found shape {other:?}"
                )));
            }
        };
        let step;
        let chunk = match one_step {
            true => {
                step = Tensor::new(vec![1, b, i], input.data().to_vec())?;
                &step
            }
            false => input,
        };
        check_chunk(&self.config, chunk, self.batch)?;
        let out = match &mut self.engine {
            Engine::Gpu(g) => g.feed(chunk)?,
            Engine::Cpu { params, h, c } => {
                let out = cpu::forward(
                    params,
                    chunk,
                    State {
                        h: Some(h),
                        c: c.as_ref(),
                    },
                )?;
                *h = out.h_n;
                *c = out.c_n;
                out.output
            }
        };
        match one_step {
            true => Tensor::new(out.shape()[1..].to_vec(), out.data().to_vec()),
            false => Ok(out),
        }
    }

    /// The current state: `h` `[L, B, R]` and, for an LSTM, `c` `[L, B, H]` (read back from
    /// the device on the GPU).
    ///
    /// # Errors
    /// [`crate::Error::Gpu`] when the device fails.
    pub fn state(&mut self) -> Result<(Tensor, Option<Tensor>)> {
        match &mut self.engine {
            Engine::Gpu(g) => g.state(),
            Engine::Cpu { h, c, .. } => Ok((h.clone(), c.clone())),
        }
    }

    /// Replaces the state (`None` parts are zeros): `h` `[L, B, R]`, `c` `[L, B, H]`.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] naming `h0` or `c0`, [`crate::Error::Config`] for a `c` given to
    /// a cell without one, [`crate::Error::NonFinite`].
    pub fn set_state<'a>(&mut self, state: impl Into<State<'a>>) -> Result<()> {
        let state = state.into();
        match &mut self.engine {
            Engine::Gpu(g) => g.set_state(state),
            Engine::Cpu { h, c, .. } => {
                state.check(&self.config, self.batch, ["h0", "c0"], true)?;
                let (h0, c0) = zero_state(&self.config, self.batch);
                *h = state.h.cloned().unwrap_or(h0);
                *c = state.c.cloned().or(c0);
                Ok(())
            }
        }
    }

    /// Restarts batch rows `rows` from zero states; the other rows continue unchanged.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming `rows` with the index and value of a row `>= B`.
    pub fn reset_rows(&mut self, rows: &[usize]) -> Result<()> {
        match &mut self.engine {
            Engine::Gpu(g) => g.reset_rows(rows),
            Engine::Cpu { h, c, .. } => {
                let b = self.batch;
                if let Some((i, &r)) = rows.iter().enumerate().find(|(_, r)| **r >= b) {
                    return Err(crate::Error::config(format!(
                        "rows[{i}]: expected a batch row below B = {b}, found {r}"
                    )));
                }
                for t in std::iter::once(h).chain(c.as_mut()) {
                    let w = t.shape()[2];
                    for l in 0..t.shape()[0] {
                        for &r in rows {
                            t.data_mut()[(l * b + r) * w..][..w].fill(0.0);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Restarts every row from zero states.
    pub fn reset(&mut self) {
        let rows: Vec<usize> = (0..self.batch).collect();
        self.reset_rows(&rows).expect("every row is below B");
    }

    /// The GPU stream, for GPU-resident I/O ([`GpuStream::feed_buffers`] into an application's
    /// buffers and encoder); `None` on the CPU.
    pub fn gpu(&mut self) -> Option<&mut GpuStream> {
        match &mut self.engine {
            Engine::Gpu(g) => Some(g),
            Engine::Cpu { .. } => None,
        }
    }
}

/// The most floats a CPU stream's state may hold (16 GiB of f32): a larger batch is an error
/// rather than an allocation failure.
const MAX_HOST_STATE: usize = 1 << 32;

/// Zero states `h` `[L·D, B, R]` and, for a cell with one, `c` `[L·D, B, H]`.
fn zero_state(cfg: &RnnConfig, batch: usize) -> (Tensor, Option<Tensor>) {
    let ld = cfg.num_layers * cfg.directions();
    let h = Tensor::zeros(&[ld, batch, cfg.real_hidden_size()]);
    let c = cfg
        .cell
        .spec()
        .has_cell_state()
        .then(|| Tensor::zeros(&[ld, batch, cfg.hidden_size]));
    (h, c)
}

impl crate::Rnn {
    /// A [`Stream`] of `batch` rows over this model's parameters on its device.
    ///
    /// # Errors
    /// As [`Stream::new`].
    pub fn stream(&self, batch: usize) -> Result<Stream> {
        Stream::new(self.params().clone(), self.device(), batch)
    }
}

/// A streamable model: one direction, `batch >= 1`.
pub(crate) fn check_streamable(cfg: &RnnConfig, batch: usize) -> Result<()> {
    if cfg.bidirectional {
        return Err(Error::config(
            "stream: a bidirectional model cannot stream, its reverse direction needs the \
             future of the sequence; run it over whole sequences with forward",
        ));
    }
    if batch == 0 {
        return Err(Error::config("batch: expected >= 1, found 0"));
    }
    Ok(())
}

/// Checks a chunk `[t, B, I]` of a stream of `batch` rows; returns `t`.
pub(crate) fn check_chunk(cfg: &RnnConfig, input: &Tensor, batch: usize) -> Result<usize> {
    let s = input.shape();
    if s.len() != 3 || s[0] == 0 || s[1] != batch || s[2] != cfg.input_size {
        let t = s.first().copied().unwrap_or(0).max(1);
        return Err(Error::shape("input", &[t, batch, cfg.input_size], s));
    }
    input.expect_finite("input")?;
    Ok(s[0])
}
