// One time step of an Elman layer, both directions in one dispatch:
//   h_t[b, j] = act(P[t, b, d*H + j] + sum_k W_hh[d][j, k] * h_prev[b, k])
// where P already holds X W_ih^T + b_ih + b_hh (the hoisted input projection), h_prev is h0
// at the first step and the layer's own output at the previous time otherwise (t - 1 for the
// forward direction, t + 1 for the reverse one). At the last step h_t is also written to h_n.
//
// Workgroup (x: 64 hidden units, y: ROWS batch rows, z: direction). The batch rows' slice of
// h_prev is staged in workgroup memory, and each thread reads its column of W_hh^T once per
// slice for all ROWS rows (W_hh is stored transposed so those reads are coalesced).

struct Dims {
    batch: u32,       // B
    hidden: u32,      // H
    dirs: u32,        // D
    act: u32,         // 0 tanh, 1 relu
    state0: u32,      // layer * D: index of this layer's first state in h0 / h_n
    w_off: u32,       // (read by rnn_step_bwd; this kernel reads the transposed copy)
    _pad1: u32, _pad2: u32,
}

struct Step {
    t_fwd: u32,       // time index of the forward direction at this step
    t_rev: u32,       // time index of the reverse direction (T - 1 - t_fwd)
    first: u32,       // 1 at step 0: read h0
    last: u32,        // 1 at step T - 1: write h_n
}

const WG: u32 = 64u;
const ROWS: u32 = 4u; // the lanes of a vec4

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> step: Step;                     // one per step, dynamic offset
@group(0) @binding(2) var<storage, read> w_hh_t: array<f32>;       // [D, H, H]: W_hh[d][j, k] at (d*H + k)*H + j
@group(0) @binding(3) var<storage, read> proj: array<f32>;         // [T, B, D*H]
@group(0) @binding(4) var<storage, read> h0: array<f32>;           // [L*D, B, H]
@group(0) @binding(5) var<storage, read_write> y: array<f32>;      // [T, B, D*H]
@group(0) @binding(6) var<storage, read_write> h_n: array<f32>;    // [L*D, B, H]

var<workgroup> h_tile: array<vec4<f32>, 64>; // [WG] x ROWS batch rows in the lanes

fn act(v: f32) -> f32 {
    if (dims.act == 1u) {
        return max(v, 0.0);
    }
    // Clamped: some drivers compute tanh as a ratio of exponentials that overflows to NaN;
    // tanh(15) rounds to 1.0 in f32 already.
    return tanh(clamp(v, -15.0, 15.0));
}

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let hid = dims.hidden;
    let batch = dims.batch;
    let dh = dims.dirs * hid;
    let j = wid.x * WG + lid.x;
    let b0 = wid.y * ROWS;
    let d = wid.z;
    var t = step.t_fwd;
    var tp = step.t_fwd - 1u;
    if (d == 1u) {
        t = step.t_rev;
        tp = step.t_rev + 1u;
    }
    var acc = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < hid; k0 += WG) {
        let kk = k0 + lid.x;
        var v = vec4<f32>(0.0);
        for (var r = 0u; r < ROWS; r++) {
            let bb = b0 + r;
            if (bb < batch && kk < hid) {
                if (step.first != 0u) {
                    v[r] = h0[((dims.state0 + d) * batch + bb) * hid + kk];
                } else {
                    v[r] = y[(tp * batch + bb) * dh + d * hid + kk];
                }
            }
        }
        h_tile[lid.x] = v;
        workgroupBarrier();
        if (j < hid) {
            let n = min(WG, hid - k0);
            for (var q = 0u; q < n; q++) {
                acc = fma(h_tile[q], vec4<f32>(w_hh_t[(d * hid + k0 + q) * hid + j]), acc);
            }
        }
        workgroupBarrier();
    }
    if (j >= hid) {
        return;
    }
    for (var r = 0u; r < ROWS; r++) {
        let bb = b0 + r;
        if (bb >= batch) {
            break;
        }
        let o = (t * batch + bb) * dh + d * hid + j;
        let v = act(acc[r] + proj[o]);
        y[o] = v;
        if (step.last != 0u) {
            h_n[((dims.state0 + d) * batch + bb) * hid + j] = v;
        }
    }
}
