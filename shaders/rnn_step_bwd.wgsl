// One reverse-time step of backpropagation through an Elman layer, both directions at once:
//   da_t[b, j] = (dy_t[b, j] + sum_k da_next[b, k] * W_hh[d][k, j]) * act'(y_t[b, j])
// where da_next is the gate gradient of the step processed just before in reverse time
// (t + 1 for the forward direction, t - 1 for the reverse one), or grad_h_n at the first
// backward step (then W_hh is not applied: dh_T = grad_h_n directly). act' is taken from the
// activation's output, as PyTorch does: tanh' = 1 - y^2, relu' = (y > 0).
//
// It reads the step uniforms of the forward pass: the backward step s uses the forward entry
// T-1-s, whose `last` flag marks the first backward step.

struct Dims {
    batch: u32,       // B
    hidden: u32,      // H
    dirs: u32,        // D
    act: u32,         // 0 tanh, 1 relu
    state0: u32,      // layer * D: index of this layer's first state in grad_h_n
    w_off: u32,       // offset of this layer's weight_hh (both directions) in params
    _pad1: u32, _pad2: u32,
}

struct Step {
    t_fwd: u32,
    t_rev: u32,
    first: u32,
    last: u32,
}

const WG: u32 = 64u;
const ROWS: u32 = 4u; // the lanes of a vec4

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> step: Step;                     // dynamic offset
@group(0) @binding(2) var<storage, read> params: array<f32>;       // flat; W_hh [D, H, H] at w_off
@group(0) @binding(3) var<storage, read> grad_y: array<f32>;       // [T, B, D*H]
@group(0) @binding(4) var<storage, read> grad_h_n: array<f32>;     // [L*D, B, H]
@group(0) @binding(5) var<storage, read> y: array<f32>;            // [T, B, D*H]
@group(0) @binding(6) var<storage, read_write> grad_a: array<f32>; // [T, B, D*H]

var<workgroup> g_tile: array<vec4<f32>, 64>; // [WG] x ROWS batch rows in the lanes

fn act_grad(v: f32) -> f32 {
    if (dims.act == 1u) {
        return select(0.0, 1.0, v > 0.0);
    }
    return 1.0 - v * v;
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
    var tn = step.t_fwd + 1u;
    if (d == 1u) {
        t = step.t_rev;
        tn = step.t_rev - 1u;
    }
    let first = step.last != 0u;
    var carry = vec4<f32>(0.0);
    if (first) {
        if (j < hid) {
            for (var r = 0u; r < ROWS; r++) {
                let bb = b0 + r;
                if (bb < batch) {
                    carry[r] = grad_h_n[((dims.state0 + d) * batch + bb) * hid + j];
                }
            }
        }
    } else {
        for (var k0 = 0u; k0 < hid; k0 += WG) {
            let kk = k0 + lid.x;
            var v = vec4<f32>(0.0);
            for (var r = 0u; r < ROWS; r++) {
                let bb = b0 + r;
                if (bb < batch && kk < hid) {
                    v[r] = grad_a[(tn * batch + bb) * dh + d * hid + kk];
                }
            }
            g_tile[lid.x] = v;
            workgroupBarrier();
            if (j < hid) {
                let n = min(WG, hid - k0);
                for (var q = 0u; q < n; q++) {
                    carry = fma(g_tile[q], vec4<f32>(params[dims.w_off + (d * hid + k0 + q) * hid + j]), carry);
                }
            }
            workgroupBarrier();
        }
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
        grad_a[o] = (grad_y[o] + carry[r]) * act_grad(y[o]);
    }
}
