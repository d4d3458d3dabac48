// Derived weights of one layer, refreshed after every optimizer update:
//   w_hh_t[d][k][j] = W_hh[d][j][k]      (transposed, for coalesced reads in rnn_step)
//   bias[i]         = b_ih[i] + b_hh[i]   (folded, since Elman cells add them)
// The parameters are read from the flat parameter buffer at the offsets in `dims`.

struct Dims {
    dirs: u32,        // D
    hidden: u32,      // H
    w_hh_off: u32,    // offset of weight_hh (both directions) in params
    b_ih_off: u32,    // offset of bias_ih (both directions)
    b_hh_off: u32,    // offset of bias_hh (both directions)
    has_bias: u32,
    _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> params: array<f32>;          // flat parameters
@group(0) @binding(2) var<storage, read_write> w_hh_t: array<f32>;    // [D, H, H]
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;      // [D*H]

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    let h = dims.hidden;
    let n = dims.dirs * h * h;
    if (i < n) {
        // i indexes w_hh_t as (d, k, j).
        let d = i / (h * h);
        let k = (i / h) % h;
        let j = i % h;
        w_hh_t[i] = params[dims.w_hh_off + (d * h + j) * h + k];
    }
    if (dims.has_bias != 0u && i < dims.dirs * h) {
        bias[i] = params[dims.b_ih_off + i] + params[dims.b_hh_off + i];
    }
}
