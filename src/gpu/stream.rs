//! Streaming on the GPU: a model fed one step or one chunk at a time, its state resident on
//! the device between calls, and GPU-resident I/O from and to an application's buffers.

use std::sync::Arc;

use crate::config::RnnConfig;
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::ops;
use crate::gpu::rnn::{GpuRnn, Workspace};
use crate::params::RnnParams;
use crate::state::State;
use crate::stream::{check_chunk, check_streamable};
use crate::tensor::Tensor;

/// A unidirectional model run chunk by chunk on the GPU, its state `h` (and `c`) resident
/// on the device between calls (see [`crate::Stream`], the device-neutral handle).
///
/// Each [`GpuStream::feed`] is one submit: the chunk's input is uploaded, the state is
/// copied into the chunk's workspace on the device, the layers run, the final state is
/// copied back into the resident state, and the chunk's output is read back. Nothing is
/// allocated after the first chunk of a given length ([`GpuContext::resources_created`]), as
/// long as at most [`GpuStream::MAX_CHUNK_LENGTHS`] lengths are in use: the workspaces of the
/// least recently used lengths beyond that are dropped.
///
/// State changes from the host ([`GpuStream::set_state`], [`GpuStream::reset_rows`],
/// [`GpuStream::reset`]) are recorded into the next chunk's (or state read's) commands, in the
/// order they were made, so they take effect exactly between the chunks they were made
/// between, also when chunks are recorded into an application's encoder.
pub struct GpuStream {
    rnn: GpuRnn,
    batch: usize,
    /// The resident state: `h` `[L·D, B, R]`, then `c` `[L·D, B, H]` for an LSTM.
    state: wgpu::Buffer,
    state_staging: wgpu::Buffer,
    /// A state set by [`GpuStream::set_state`], uploaded here and copied into `state` with
    /// the next use (`pending`).
    next_state: wgpu::Buffer,
    pending: bool,
    /// A workspace per chunk length, the most recently used last (the batch is the stream's).
    chunks: Vec<Workspace>,
    /// Whether every row restarts from zeros before the state is next used.
    clear_all: bool,
    /// Rows to zero before the state is next used (recorded into that submit).
    resets: Vec<usize>,
}

impl GpuStream {
    /// A stream of `batch` rows over `params` on `ctx`, starting from zeros.
    ///
    /// # Errors
    /// [`Error::Config`] for a bidirectional model (its reverse direction needs the future)
    /// or `batch = 0`; as [`GpuRnn::new`].
    pub fn new(ctx: Arc<GpuContext>, params: &RnnParams, batch: usize) -> Result<Self> {
        check_streamable(params.config(), batch)?;
        let rnn = GpuRnn::new(ctx, params)?;
        let n = rnn.states_len(batch);
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let state = ops::storage(&rnn.ctx, "stream state", n, rw)?;
        let next_state = ops::storage(&rnn.ctx, "stream state to set", n, rw)?;
        let state_staging = ops::staging(&rnn.ctx, "stream state readback", n);
        Ok(GpuStream {
            rnn,
            batch,
            state,
            state_staging,
            next_state,
            pending: false,
            chunks: Vec::new(),
            clear_all: false,
            resets: Vec::new(),
        })
    }

    /// Chunk lengths whose workspaces a stream keeps at once (the least recently used one
    /// beyond them is dropped, and rebuilt if that length comes back).
    pub const MAX_CHUNK_LENGTHS: usize = 8;

    /// The model's configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.rnn.config
    }

    /// Batch rows `B`.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Feeds `input` `[t, B, I]` (t ≥ 1 steps) and returns its output `[t, B, R]`, starting
    /// from the resident state and leaving the state after its last step there.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `input`, [`Error::NonFinite`], [`Error::Limit`] and
    /// [`Error::Gpu`].
    pub fn feed(&mut self, input: &Tensor) -> Result<Tensor> {
        let t = check_chunk(&self.rnn.config, input, self.batch)?;
        let k = self.chunk(t)?;
        let ws = &self.chunks[k];
        self.rnn
            .ctx
            .queue
            .write_buffer(&ws.input, 0, bytemuck::cast_slice(input.data()));
        let mut encoder = self.rnn.encoder("stream chunk");
        self.record_chunk(&mut encoder, k);
        let ws = &self.chunks[k];
        let y = ws.ys.last().expect("num_layers >= 1");
        let n = t * self.batch * self.rnn.config.output_size();
        let out = self.rnn.ctx.read_buffers(
            encoder,
            &[(y, &ws.out_staging, (n * 4) as u64)],
            "stream chunk",
        )?;
        let shape = vec![t, self.batch, self.rnn.config.output_size()];
        Tensor::new(shape, out.into_iter().next().expect("one read"))
    }

    /// GPU-resident [`GpuStream::feed`]: the chunk's input `[steps, B, I]` (f32) is read from
    /// the application's `input` buffer (which needs `COPY_SRC`) and its output
    /// `[steps, B, R]` written to `output` (`COPY_DST`), both from byte 0, with no host round
    /// trip. With `encoder`, everything is recorded into it (after whatever the application
    /// recorded before, e.g. the compute pass that writes `input`) and the application
    /// submits it; without one, it is submitted here (not waited for). Chunks recorded into
    /// several encoders must be submitted in the order they were recorded (the state passes
    /// from one to the next). The buffers must be of this stream's device (wgpu panics on a
    /// buffer of another device; it offers no way to check first).
    ///
    /// # Errors
    /// [`Error::Config`] naming `input` or `output` when a buffer is too small or lacks its
    /// usage; [`Error::Limit`].
    pub fn feed_buffers(
        &mut self,
        encoder: Option<&mut wgpu::CommandEncoder>,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
        steps: usize,
    ) -> Result<()> {
        let cfg = self.rnn.config;
        if steps == 0 {
            return Err(Error::config("steps: expected >= 1, found 0"));
        }
        let x_len = steps * self.batch * cfg.input_size;
        let y_len = steps * self.batch * cfg.output_size();
        check_app_buffer("input", input, x_len, wgpu::BufferUsages::COPY_SRC)?;
        check_app_buffer("output", output, y_len, wgpu::BufferUsages::COPY_DST)?;
        let k = self.chunk(steps)?;
        let mut own = None;
        let encoder = match encoder {
            Some(e) => e,
            None => own.insert(self.rnn.encoder("stream chunk (buffers)")),
        };
        let ws = &self.chunks[k];
        encoder.copy_buffer_to_buffer(input, 0, &ws.input, 0, Some((x_len * 4) as u64));
        self.record_chunk(encoder, k);
        let ws = &self.chunks[k];
        let y = ws.ys.last().expect("num_layers >= 1");
        encoder.copy_buffer_to_buffer(y, 0, output, 0, Some((y_len * 4) as u64));
        if let Some(e) = own {
            self.rnn.ctx.queue.submit([e.finish()]);
        }
        Ok(())
    }

    /// The resident state, read back: `h` `[L·D, B, R]` and, for an LSTM, `c` `[L·D, B, H]`.
    ///
    /// # Errors
    /// [`Error::Gpu`] when the device fails.
    pub fn state(&mut self) -> Result<(Tensor, Option<Tensor>)> {
        let mut encoder = self.rnn.encoder("stream state");
        self.apply_resets(&mut encoder);
        let n = self.rnn.states_len(self.batch);
        let mut data = self
            .rnn
            .ctx
            .read_buffers(
                encoder,
                &[(&self.state, &self.state_staging, (n * 4) as u64)],
                "stream state",
            )?
            .pop()
            .expect("one read");
        let cfg = &self.rnn.config;
        let ld = cfg.num_layers * cfg.directions();
        let c = match data.len() > self.rnn.h_part_len(self.batch) {
            true => Some(Tensor::new(
                vec![ld, self.batch, cfg.hidden_size],
                data.split_off(self.rnn.h_part_len(self.batch)),
            )?),
            false => None,
        };
        Ok((
            Tensor::new(vec![ld, self.batch, cfg.real_hidden_size()], data)?,
            c,
        ))
    }

    /// Replaces the resident state (`None` parts are zeros), uploading it.
    ///
    /// # Errors
    /// As the state checks of a forward pass: [`Error::Shape`] naming `h0` or `c0`.
    pub fn set_state(&mut self, state: State<'_>) -> Result<()> {
        state.check(&self.rnn.config, self.batch, ["h0", "c0"], true)?;
        // Uploaded to a buffer of its own and copied into the state with the next use, so
        // that it lands after the chunks recorded before this call.
        self.resets.clear();
        self.clear_all = false;
        self.pending = true;
        let h_bytes = (self.rnn.h_part_len(self.batch) * 4) as u64;
        let all = (self.rnn.states_len(self.batch) * 4) as u64;
        let queue = &self.rnn.ctx.queue;
        for (t, at, len) in [(state.h, 0, h_bytes), (state.c, h_bytes, all - h_bytes)] {
            if len == 0 {
                continue;
            }
            let zeros;
            let data: &[f32] = match t {
                Some(t) => t.data(),
                None => {
                    zeros = vec![0.0f32; (len / 4) as usize];
                    &zeros
                }
            };
            queue.write_buffer(&self.next_state, at, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Restarts batch rows `rows` from zeros (the other rows continue); applied on the
    /// device with the next chunk (or state read).
    ///
    /// # Errors
    /// [`Error::Config`] naming `rows` with the index and value of a row `>= B`.
    pub fn reset_rows(&mut self, rows: &[usize]) -> Result<()> {
        if let Some((i, &r)) = rows.iter().enumerate().find(|(_, r)| **r >= self.batch) {
            return Err(Error::config(format!(
                "rows[{i}]: expected a batch row below B = {}, found {r}",
                self.batch
            )));
        }
        self.resets.extend_from_slice(rows);
        Ok(())
    }

    /// Restarts every row from zeros (one clear of the state with the next use).
    pub fn reset(&mut self) {
        self.resets.clear();
        self.pending = false;
        self.clear_all = true;
    }

    /// The index of the workspace for chunks of `t` steps, built on first use; the most
    /// recently used last.
    fn chunk(&mut self, t: usize) -> Result<usize> {
        match self.chunks.iter().position(|w| w.t == t) {
            Some(k) => {
                let ws = self.chunks.remove(k);
                self.chunks.push(ws);
            }
            None => {
                let ws = self.rnn.build_workspace(t, self.batch)?;
                if self.chunks.len() == Self::MAX_CHUNK_LENGTHS {
                    self.chunks.remove(0);
                }
                self.chunks.push(ws);
            }
        }
        Ok(self.chunks.len() - 1)
    }

    /// Records chunk `k`'s pass: pending resets, the resident state into the workspace, the
    /// layers, the final state back.
    fn record_chunk(&mut self, encoder: &mut wgpu::CommandEncoder, k: usize) {
        self.apply_resets(encoder);
        let ws = &self.chunks[k];
        let bytes = Some(ws.states_bytes);
        encoder.copy_buffer_to_buffer(&self.state, 0, &ws.states0, 0, bytes);
        ops::encode(encoder, &ws.forward_ops);
        encoder.copy_buffer_to_buffer(&ws.states_n, 0, &self.state, 0, bytes);
    }

    /// Records the host's state changes since the state was last used, in their order: a
    /// state set, then a reset of every row or of some rows.
    fn apply_resets(&mut self, encoder: &mut wgpu::CommandEncoder) {
        if std::mem::take(&mut self.pending) {
            encoder.copy_buffer_to_buffer(&self.next_state, 0, &self.state, 0, None);
        }
        if std::mem::take(&mut self.clear_all) {
            encoder.clear_buffer(&self.state, 0, None);
        }
        let cfg = self.rnn.config;
        let (b, ld) = (self.batch, cfg.num_layers * cfg.directions());
        let h_part = self.rnn.h_part_len(b);
        let with_c = self.rnn.states_len(b) > h_part;
        for &row in &self.resets {
            for l in 0..ld {
                let (r, h) = (cfg.real_hidden_size(), cfg.hidden_size);
                let at = ((l * b + row) * r * 4) as u64;
                encoder.clear_buffer(&self.state, at, Some((r * 4) as u64));
                if with_c {
                    let at = ((h_part + (l * b + row) * h) * 4) as u64;
                    encoder.clear_buffer(&self.state, at, Some((h * 4) as u64));
                }
            }
        }
        self.resets.clear();
    }
}

/// Checks an application's buffer: at least `len` f32 and the usage a copy needs.
pub(crate) fn check_app_buffer(
    name: &str,
    buffer: &wgpu::Buffer,
    len: usize,
    usage: wgpu::BufferUsages,
) -> Result<()> {
    if buffer.size() < (len * 4) as u64 {
        return Err(Error::config(format!(
            "{name}: expected a buffer of at least {} bytes ({len} f32), found {}",
            len * 4,
            buffer.size()
        )));
    }
    if !buffer.usage().contains(usage) {
        return Err(Error::config(format!(
            "{name}: the buffer needs usage {usage:?}, found {:?}",
            buffer.usage()
        )));
    }
    Ok(())
}
