//! The cost model's constants, measured on the adapter: what a dispatch, a submit and a
//! readback cost before any arithmetic, so that scheduling rules (per-step dispatch against a
//! one-dispatch sequence kernel, when to read back) rest on measured numbers.

use std::time::Instant;

use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{ColSumDims, Kernel};
use crate::gpu::ops::{self, Recorder};
use crate::suite::median;

/// Dispatches of the empty kernel recorded into one compute pass for
/// [`CostConstants::empty_dispatch_ms`].
const DISPATCHES: usize = 1000;
/// Untimed rounds before the timed ones.
const WARM_UP: usize = 5;

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

impl CostConstants {
    /// Measures the constants on `ctx`, each the median of `repeats` runs (at least 3), in
    /// interleaved rounds after 5 untimed ones.
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
        let submit = |ops: &[ops::Op]| -> Result<f64> {
            let mut e = encoder();
            if !ops.is_empty() {
                ops::encode(&mut e, ops);
            }
            let start = Instant::now();
            ctx.submit_wait(e, "cost constants")?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        let read = || -> Result<f64> {
            let start = Instant::now();
            ctx.read_buffers(
                encoder(),
                &[(&src, &staging, 256)],
                "cost constants readback",
            )?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        // Interleaved rounds after warm-up rounds, so that no constant is measured while the
        // device or driver is still warming up and the others after.
        let (mut empty, mut one, mut all, mut reads) = (vec![], vec![], vec![], vec![]);
        for round in 0..WARM_UP + repeats {
            let t = [
                submit(&[])?,
                submit(std::slice::from_ref(&op))?,
                submit(&many)?,
                read()?,
            ];
            if round >= WARM_UP {
                empty.push(t[0]);
                one.push(t[1]);
                all.push(t[2]);
                reads.push(t[3]);
            }
        }
        let submit_wait_ms = median(empty);
        let (one, all) = (median(one), median(all));
        drop(rec.finish());
        Ok(CostConstants {
            empty_dispatch_ms: ((all - one) / (DISPATCHES - 1) as f64).max(0.0),
            submit_wait_ms,
            readback_ms: median(reads),
        })
    }
}
