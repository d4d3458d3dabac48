//! Losses fused with their gradients, on the host (the GPU runs `shaders/loss.wgsl`).

/// Mean softmax cross-entropy over `rows` rows of `logits` (`[rows, cols]`, natural log), with
/// the gradient `(softmax − onehot) / rows` written over the logits.
///
/// # Panics
/// When a target is `>= cols` (callers check token ids first).
pub fn softmax_xent(logits: &mut [f32], cols: usize, targets: &[u32]) -> f64 {
    let rows = targets.len();
    let inv = 1.0 / rows as f32;
    let mut total = 0.0f64;
    for (row, &y) in logits.chunks_exact_mut(cols).zip(targets) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let s: f32 = row.iter().map(|&z| (z - m).exp()).sum();
        let lse = m + s.ln();
        total += (lse - row[y as usize]) as f64;
        for (c, z) in row.iter_mut().enumerate() {
            let mut g = (*z - lse).exp();
            if c == y as usize {
                g -= 1.0;
            }
            *z = g * inv;
        }
    }
    total / rows as f64
}

/// Mean squared error `Σ (p − t)² / n`, with the gradient `2 (p − t) / n` written over `pred`.
pub fn mse(pred: &mut [f32], target: &[f32]) -> f64 {
    let n = pred.len() as f32;
    let mut total = 0.0f64;
    for (p, &t) in pred.iter_mut().zip(target) {
        let d = *p - t;
        total += (d * d) as f64;
        *p = 2.0 * d / n;
    }
    total / n as f64
}

/// Mean square `L = Σ y² / n` over all `n` elements of `y` (the loss of
/// [`crate::train::Task::MeanSquare`], PyTorch's `y.pow(2).mean()`), with the gradient
/// `∂L/∂y = 2y / n` written over `y`: [`mse`] against a zero target, in the same arithmetic
/// as the GPU's (`shaders/loss.wgsl`, entry `mse`, with zero targets).
///
/// # Example
/// ```
/// let mut y = vec![1.0f32, -3.0];
/// assert_eq!(wgpu_rnn::train::mean_square(&mut y), 5.0);
/// assert_eq!(y, vec![1.0, -3.0]);
/// ```
pub fn mean_square(y: &mut [f32]) -> f64 {
    let n = y.len() as f32;
    let mut total = 0.0f64;
    for v in y.iter_mut() {
        total += (*v * *v) as f64;
        *v = 2.0 * *v / n;
    }
    total / n as f64
}
