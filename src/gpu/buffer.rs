//! Device buffers as code outside this folder (the trainer) holds them: made, written and read
//! back through the functions here and handed to the recorder and the stack, so that the
//! caller never calls wgpu itself.

use std::ops::Deref;

use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::ops;

/// A buffer of `len` 4-byte elements (f32, or u32 token ids) on the device, or a uniform; a
/// handle (a clone shares the buffer).
///
/// It dereferences to wgpu's buffer only so that the recorder in this folder takes it as it
/// is; outside `gpu/`, use the methods here.
#[derive(Debug, Clone)]
pub(crate) struct Buffer {
    raw: wgpu::Buffer,
    len: usize,
    /// A host-readable copy kept for a buffer read back often (see [`Buffer::readable`]).
    staging: Option<wgpu::Buffer>,
}

impl Buffer {
    /// `len` zeros (wgpu zeroes new buffers) that copies may read and write.
    ///
    /// # Errors
    /// [`crate::Error::Limit`] when the buffer exceeds the device's limits.
    pub(crate) fn zeros(ctx: &GpuContext, label: &str, len: usize) -> Result<Self> {
        let rw = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        Ok(Self::from(ops::storage(ctx, label, len, rw)?).with_len(len))
    }

    /// As [`Buffer::zeros`], with its own host-readable copy, so that [`read`] allocates
    /// nothing for it (for a value read after every step, such as the loss).
    ///
    /// # Errors
    /// As [`Buffer::zeros`].
    pub(crate) fn readable(ctx: &GpuContext, label: &str, len: usize) -> Result<Self> {
        let staging = ops::staging(ctx, &format!("{label} readback"), len);
        Ok(Buffer {
            staging: Some(staging),
            ..Self::zeros(ctx, label, len)?
        })
    }

    /// A buffer holding `data` (one placeholder element when `data` is empty, as wgpu needs).
    ///
    /// # Errors
    /// As [`Buffer::zeros`].
    pub(crate) fn upload(ctx: &GpuContext, label: &str, data: &[f32]) -> Result<Self> {
        Ok(Self::from(ops::upload(ctx, label, data)?).with_len(data.len()))
    }

    /// A uniform buffer holding `value`, rewritten with [`Buffer::write`].
    pub(crate) fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, value: &T) -> Self {
        Self::from(ops::uniform(ctx, label, bytemuck::bytes_of(value)))
    }

    fn with_len(self, len: usize) -> Self {
        Buffer { len, ..self }
    }

    /// Elements (0 for an empty buffer, whose placeholder element does not count).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of device memory it holds (the host-readable copy not counted).
    pub(crate) fn bytes(&self) -> u64 {
        self.raw.size()
    }

    /// Queues a write of `data` at the start of the buffer (done before the next submit).
    pub(crate) fn write<T: bytemuck::Pod>(&self, ctx: &GpuContext, data: &[T]) {
        ctx.queue
            .write_buffer(&self.raw, 0, bytemuck::cast_slice(data));
    }
}

/// A whole wgpu buffer, its length taken from its size.
impl From<wgpu::Buffer> for Buffer {
    fn from(raw: wgpu::Buffer) -> Self {
        let len = (raw.size() / 4) as usize;
        Buffer {
            raw,
            len,
            staging: None,
        }
    }
}

impl Deref for Buffer {
    type Target = wgpu::Buffer;

    fn deref(&self) -> &wgpu::Buffer {
        &self.raw
    }
}

/// Submits a copy of each of `bufs` to the host, waits, and returns their contents in order;
/// empty buffers read as empty vectors without a copy (a zero-length mapping is not allowed).
///
/// # Errors
/// [`crate::Error::Gpu`] when the device fails.
pub(crate) fn read(ctx: &GpuContext, bufs: &[&Buffer], what: &str) -> Result<Vec<Vec<f32>>> {
    let live: Vec<&Buffer> = bufs.iter().copied().filter(|b| b.len > 0).collect();
    // A buffer's own host-readable copy where it has one (a clone is a handle), else a new one.
    let stagings: Vec<wgpu::Buffer> = live
        .iter()
        .map(|b| {
            b.staging
                .clone()
                .unwrap_or_else(|| ops::staging(ctx, what, b.len))
        })
        .collect();
    let triples: Vec<_> = live
        .iter()
        .zip(&stagings)
        .map(|(b, staging)| (&b.raw, staging, (b.len * 4) as u64))
        .collect();
    let encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
    let mut got = ctx.read_buffers(encoder, &triples, what)?.into_iter();
    Ok(bufs
        .iter()
        .map(|b| match b.len {
            0 => Vec::new(),
            _ => got.next().expect("one read per non-empty buffer"),
        })
        .collect())
}
