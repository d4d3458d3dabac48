// Gradient of the token gather: grad W_ih[r, v] = sum over tb with tok[tb] == v of
// grad_a[tb, r]. `zero` clears grad W_ih (one thread per element); then each dispatch of
// `main` walks the token positions [row_begin, rows) in order, one thread per row r of
// grad W_ih, adding grad_a[tb, r] into column tok[tb]. No two threads touch the same element,
// so no atomics are needed, and the fixed order makes the result bit-identical run after run.
// Work is O(D*H * (V + T*B)), not O(D*H * V * T*B).
//
// Loop budget (src/gpu/kernels.rs, `budget::embed_bwd`): one dispatch of `main` walks at most
// `budget::EMBED_BWD_CHUNK` positions; the host records consecutive dispatches for the rest,
// which keeps the order of the additions.

struct Dims {
    rows: u32,        // end of this dispatch's token positions (at most T*B)
    cols: u32,        // D*H
    vocab: u32,       // V
    g_off: u32,       // offset of grad weight_ih_l0 ([D*H, V]) in the flat gradient buffer
    _has_bias: u32,   // (read by the gather only)
    row_begin: u32,   // first token position of this dispatch
    _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;          // [T*B]
@group(0) @binding(2) var<storage, read> grad_a: array<f32>;          // [T*B, D*H]
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;     // flat gradients

@compute @workgroup_size(64, 1, 1)
fn zero(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if (i < dims.cols * dims.vocab) {
        grads[dims.g_off + i] = 0.0;
    }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.y * nwg.x * 64u + gid.x;
    if (r >= dims.cols) {
        return;
    }
    let row = dims.g_off + r * dims.vocab;
    for (var tb = dims.row_begin; tb < dims.rows; tb++) {
        let i = row + tokens[tb];
        grads[i] += grad_a[tb * dims.cols + r];
    }
}
