// Token input: the input projection of layer 0 as a gather of columns of W_ih (no one-hot
// GEMM): proj[tb, r] = W_ih[r, tok[tb]] + bias[r], for both directions (r < D*H).

struct Dims {
    rows: u32,        // T*B
    cols: u32,        // D*H
    vocab: u32,       // V (= input_size)
    w_off: u32,       // offset of weight_ih_l0 (both directions, [D*H, V]) in params
    has_bias: u32,
    _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;          // [T*B]
@group(0) @binding(2) var<storage, read> params: array<f32>;          // flat parameters
@group(0) @binding(3) var<storage, read> bias: array<f32>;            // [D*H], folded
@group(0) @binding(4) var<storage, read_write> proj: array<f32>;      // [T*B, D*H]

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if (i >= dims.rows * dims.cols) {
        return;
    }
    let tb = i / dims.cols;
    let r = i % dims.cols;
    var v = params[dims.w_off + r * dims.vocab + tokens[tb]];
    if (dims.has_bias != 0u) {
        v += bias[r];
    }
    proj[i] = v;
}
