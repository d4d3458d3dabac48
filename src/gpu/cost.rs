//! The cost model's constants, measured on the adapter: what a dispatch, a submit and a
//! readback cost before any arithmetic, so that scheduling rules (per-step dispatch against a
//! one-dispatch sequence kernel, when to read back) rest on measured numbers.

use std::time::Instant;

use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{ColSumDims, Kernel};
use crate::gpu::ops::{self, Recorder};

/// Dispatches of the empty kernel recorded into one compute pass for
/// [`CostConstants::empty_dispatch_ms`].
const DISPATCHES: usize = 1000;

/// Fixed costs of one adapter, in milliseconds (medians of repeated measurements).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostConstants {
    /// One more dispatch of a kernel that does nothing (one workgroup whose threads return at
    /// once), inside one compute pass: `(t(1000 dispatches) - t(1 dispatch)) / 999`.
    pub empty_dispatch_ms: f64,
    /// Submitting an empty command buffer and waiting for the queue to finish it.
    pub submit_wait_ms: f64,
    /// Copying a 256-byte buffer to a mappable one, submitting, waiting and mapping it: the
    /// least a result read back to the host costs.
    pub readback_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl CostConstants {
    /// Measures the constants on `ctx`, each the median of `repeats` runs (at least 3) after
    /// one warm-up run.
    ///
    /// # Errors
    /// [`crate::Error::Gpu`] when the device fails.
    ///
    /// # Example
    /// ```no_run
    /// use wgpu_rnn::gpu::{AdapterOptions, CostConstants, GpuContext};
    /// let ctx = GpuContext::new(&AdapterOptions::default())?;
    /// let c = CostConstants::measure(&ctx, 5)?;
    /// println!("one dispatch: {:.4} ms", c.empty_dispatch_ms);
    /// # Ok::<(), wgpu_rnn::Error>(())
    /// ```
    pub fn measure(ctx: &GpuContext, repeats: usize) -> Result<Self> {
        let repeats = repeats.max(3);
        let none = wgpu::BufferUsages::empty();
        let src = ops::storage(
            ctx,
            "cost constants source",
            64,
            wgpu::BufferUsages::COPY_SRC,
        )?;
        let out = ops::storage(ctx, "cost constants output", 64, none)?;
        let staging = ops::staging(ctx, "cost constants readback", 64);
        let mut rec = Recorder::new(ctx, &src);
        // cols = 0: every invocation returns at once.
        let dims = ColSumDims::default();
        let op = rec.op(
            Kernel::ColSum,
            bytemuck::bytes_of(&dims),
            &[&src, &out],
            [1, 1, 1],
        )?;
        let many: Vec<ops::Op> = (0..DISPATCHES)
            .map(|_| op.with_offsets(Vec::new(), [1, 1, 1]))
            .collect();
        let encoder = || {
            ctx.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("cost constants"),
                })
        };
        let time = |ops: &[ops::Op]| -> Result<f64> {
            let mut times = Vec::with_capacity(repeats);
            for i in 0..=repeats {
                let mut e = encoder();
                if !ops.is_empty() {
                    ops::encode(&mut e, ops);
                }
                let start = Instant::now();
                ctx.submit_wait(e, "cost constants")?;
                if i > 0 {
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
            Ok(median(times))
        };
        let submit_wait_ms = time(&[])?;
        let one = time(std::slice::from_ref(&op))?;
        let all = time(&many)?;
        let mut reads = Vec::with_capacity(repeats);
        for i in 0..=repeats {
            let start = Instant::now();
            ctx.read_buffers(
                encoder(),
                &[(&src, &staging, 256)],
                "cost constants readback",
            )?;
            if i > 0 {
                reads.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        drop(rec.finish());
        Ok(CostConstants {
            empty_dispatch_ms: ((all - one) / (DISPATCHES - 1) as f64).max(0.0),
            submit_wait_ms,
            readback_ms: median(reads),
        })
    }
}
