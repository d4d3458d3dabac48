// One reverse-time step of backpropagation through an Elman layer, both directions at once:
//   da_t[b, j] = act'(y_t[b, j]) applied to (dy_t[b, j] + sum_k da_next[b, k] * W_hh[d][k, j])
// where da_next is the gate gradient of the step processed just before in reverse time
// (t + 1 for the forward direction, t - 1 for the reverse one), or grad_h_n at the first
// backward step (then W_hh is not applied: dh_T = grad_h_n directly). act' is taken from the
// activation's output, as PyTorch does: tanh' = 1 - y^2, relu' = (y > 0).
//
// The blocking is the forward step kernel's (rnn_step.wgsl): 4 units x 8 rows per thread, the
// rows' slice of da_next staged in workgroup memory 64 columns at a time.
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
const UNITS: u32 = 4u;
const ROWS: u32 = 8u;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> step: Step;                     // dynamic offset
@group(0) @binding(2) var<storage, read> params: array<f32>;       // flat; W_hh [D, H, H] at w_off
@group(0) @binding(3) var<storage, read> grad_y: array<f32>;       // [T, B, D*H]
@group(0) @binding(4) var<storage, read> grad_h_n: array<f32>;     // [L*D, B, H]
@group(0) @binding(5) var<storage, read> y: array<f32>;            // [T, B, D*H]
@group(0) @binding(6) var<storage, read_write> grad_a: array<f32>; // [T, B, D*H]

var<workgroup> g_tile: array<vec4<f32>, 128>; // [WG][2]: rows 0-3, rows 4-7 in the lanes

// The gradient g through the activation, from its output y. Non-finite values follow PyTorch
// (rule 2 of the crate docs, src/lib.rs): relu selects (threshold_backward): 0 where y <= 0,
// even for an infinite or NaN g, and g everywhere else, a NaN output included; tanh multiplies,
// g * (1 - y^2). NaN is tested on the bits, since a compiler may assume there is none.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn act_backward(y: f32, g: f32) -> f32 {
    if (dims.act == 1u) {
        return select(g, 0.0, y <= 0.0 && !is_nan(y));
    }
    return g * (1.0 - y * y);
}

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let hid = dims.hidden;
    let batch = dims.batch;
    let dh = dims.dirs * hid;
    let j = (wid.x * WG + lid.x) * UNITS;
    let b0 = wid.y * ROWS;
    let d = wid.z;
    var t = step.t_fwd;
    var tn = step.t_fwd + 1u;
    if (d == 1u) {
        t = step.t_rev;
        tn = step.t_rev - 1u;
    }
    // acc_r: the carried gradient of batch row b0 + r, units j..j+3 in the lanes.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    let first = step.last != 0u;
    if (!first) {
        let w_base = dims.w_off + d * hid * hid + j;
        for (var k0 = 0u; k0 < hid; k0 += WG) {
            let kk = k0 + lid.x;
            var lo = vec4<f32>(0.0);
            var hi = vec4<f32>(0.0);
            if (kk < hid) {
                for (var r = 0u; r < ROWS; r++) {
                    let bb = b0 + r;
                    var v = 0.0;
                    if (bb < batch) {
                        v = grad_a[(tn * batch + bb) * dh + d * hid + kk];
                    }
                    if (r < 4u) {
                        lo[r] = v;
                    } else {
                        hi[r - 4u] = v;
                    }
                }
            }
            g_tile[2u * lid.x] = lo;
            g_tile[2u * lid.x + 1u] = hi;
            workgroupBarrier();
            if (j < hid) {
                let n = min(WG, hid - k0);
                for (var q = 0u; q < n; q++) {
                    let w_at = w_base + (k0 + q) * hid;
                    let w = vec4<f32>(params[w_at], params[w_at + 1u], params[w_at + 2u], params[w_at + 3u]);
                    let g_lo = g_tile[2u * q];
                    let g_hi = g_tile[2u * q + 1u];
                    acc0 = fma(vec4<f32>(g_lo.x), w, acc0);
                    acc1 = fma(vec4<f32>(g_lo.y), w, acc1);
                    acc2 = fma(vec4<f32>(g_lo.z), w, acc2);
                    acc3 = fma(vec4<f32>(g_lo.w), w, acc3);
                    acc4 = fma(vec4<f32>(g_hi.x), w, acc4);
                    acc5 = fma(vec4<f32>(g_hi.y), w, acc5);
                    acc6 = fma(vec4<f32>(g_hi.z), w, acc6);
                    acc7 = fma(vec4<f32>(g_hi.w), w, acc7);
                }
            }
            workgroupBarrier();
        }
    }
    finish(t, d, b0 + 0u, j, acc0, first);
    finish(t, d, b0 + 1u, j, acc1, first);
    finish(t, d, b0 + 2u, j, acc2, first);
    finish(t, d, b0 + 3u, j, acc3, first);
    finish(t, d, b0 + 4u, j, acc4, first);
    finish(t, d, b0 + 5u, j, acc5, first);
    finish(t, d, b0 + 6u, j, acc6, first);
    finish(t, d, b0 + 7u, j, acc7, first);
}

// da_t for row bb, units j .. j + 3 (acc: the carried gradient, or grad_h_n at the first
// backward step). One call per named accumulator: no indexing of a local array, which some
// compilers (lavapipe's) turn into per-lane memory traffic.
fn finish(t: u32, d: u32, bb: u32, j: u32, acc: vec4<f32>, first: bool) {
    let hid = dims.hidden;
    let batch = dims.batch;
    if (bb >= batch) {
        return;
    }
    for (var u = 0u; u < 4u; u++) {
        let jj = j + u;
        if (jj >= hid) {
            return;
        }
        var carry = acc[u];
        if (first) {
            carry = grad_h_n[((dims.state0 + d) * batch + bb) * hid + jj];
        }
        let o = (t * batch + bb) * dims.dirs * hid + d * hid + jj;
        grad_a[o] = act_backward(y[o], grad_y[o] + carry);
    }
}
