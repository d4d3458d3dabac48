// Losses fused with their gradients, one thread per row; the row's loss goes to row_loss
// (already divided by the number of averaged terms, so that a sum gives the mean) and the
// gradient overwrites the predictions in place.
//
// softmax_xent: row r of logits [R, C], target class targets[r]:
//   loss_r = logsumexp(z_r) - z_r[y_r];  dz_r = (softmax(z_r) - onehot(y_r)) / R
// mse: row r of predictions [R, C], targets bitcast from u32 to f32:
//   loss_r = sum_c (p - t)^2 / (R*C);   dp = 2 (p - t) / (R*C)

struct Dims {
    rows: u32,
    cols: u32,
    _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> targets: array<u32>;         // [R] classes, or [R, C] f32 bits
@group(0) @binding(2) var<storage, read_write> pred: array<f32>;      // [R, C] in, gradient out
@group(0) @binding(3) var<storage, read_write> row_loss: array<f32>;  // [R]

fn row_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * 64u + gid.x;
}

@compute @workgroup_size(64, 1, 1)
fn softmax_xent(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_index(gid, nwg);
    if (r >= dims.rows) {
        return;
    }
    let base = r * dims.cols;
    var m = pred[base];
    for (var c = 1u; c < dims.cols; c++) {
        m = max(m, pred[base + c]);
    }
    var s = 0.0;
    for (var c = 0u; c < dims.cols; c++) {
        s += exp(pred[base + c] - m);
    }
    let y = targets[r];
    let lse = m + log(s);
    row_loss[r] = (lse - pred[base + y]) / f32(dims.rows);
    let inv = 1.0 / f32(dims.rows);
    for (var c = 0u; c < dims.cols; c++) {
        var g = exp(pred[base + c] - lse);
        if (c == y) {
            g -= 1.0;
        }
        pred[base + c] = g * inv;
    }
}

@compute @workgroup_size(64, 1, 1)
fn mse(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_index(gid, nwg);
    if (r >= dims.rows) {
        return;
    }
    let n = f32(dims.rows * dims.cols);
    var acc = 0.0;
    for (var c = 0u; c < dims.cols; c++) {
        let i = r * dims.cols + c;
        let d = pred[i] - bitcast<f32>(targets[i]);
        acc += d * d;
        pred[i] = 2.0 * d / n;
    }
    row_loss[r] = acc / n;
}
