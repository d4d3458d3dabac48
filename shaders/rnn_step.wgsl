// One time step of an Elman layer, both directions in one dispatch:
//   h_t[b, j] = act(P[t, b, d*H + j] + sum_k W_hh[d][j, k] * h_prev[b, k])
// where P already holds X W_ih^T + b_ih + b_hh (the hoisted input projection), h_prev is h0
// at the first step and the layer's own output at the previous time otherwise (t - 1 for the
// forward direction, t + 1 for the reverse one). At the last step h_t is also written to h_n.
//
// Each thread computes a 4 x 8 block: 4 consecutive hidden units (j in the lanes of a vec4)
// for 8 batch rows; a workgroup of 64 threads covers 256 units x 8 rows of one direction. The
// rows' slice of h_prev is staged in workgroup memory 64 columns at a time. Every value a
// thread reads is used 4 or 8 times from registers: loads, not arithmetic, are what a
// software adapter (lavapipe runs each lane's load as a scalar) and a real GPU pay for.
// W_hh is read transposed so that the 4 units of a thread, and neighbouring threads, read
// neighbouring addresses; the reads past H in the last block only feed discarded lanes.

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

const WG: u32 = 64u;     // threads per workgroup, and columns of h_prev staged at a time
const UNITS: u32 = 4u;   // hidden units per thread (the lanes of a vec4)
const ROWS: u32 = 8u;    // batch rows per thread (and per workgroup)

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> step: Step;                     // one per step, dynamic offset
@group(0) @binding(2) var<storage, read> w_hh_t: array<f32>;       // [D, H, H]: W_hh[d][j, k] at (d*H + k)*H + j
@group(0) @binding(3) var<storage, read> proj: array<f32>;         // [T, B, D*H]
@group(0) @binding(4) var<storage, read> h0: array<f32>;           // [L*D, B, H]
@group(0) @binding(5) var<storage, read_write> y: array<f32>;      // [T, B, D*H]
@group(0) @binding(6) var<storage, read_write> h_n: array<f32>;    // [L*D, B, H]

var<workgroup> h_tile: array<vec4<f32>, 128>; // [WG][2]: rows 0-3, rows 4-7 in the lanes

// Non-finite values follow PyTorch (rule 2 of the crate docs, src/lib.rs):
// relu(NaN) = NaN, tanh(+-inf) = +-1, tanh(NaN) = NaN. WGSL's max and clamp may return either
// operand for NaN and a compiler may assume there is none, so NaN is tested on the bits.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn act(v: f32) -> f32 {
    if (dims.act == 1u) {
        return select(0.0, v, v > 0.0 || is_nan(v));
    }
    // Clamped: some drivers compute tanh as a ratio of exponentials that overflows to NaN;
    // tanh(15) rounds to 1.0 in f32 already.
    return select(tanh(clamp(v, -15.0, 15.0)), v, is_nan(v));
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
    var tp = step.t_fwd - 1u;
    if (d == 1u) {
        t = step.t_rev;
        tp = step.t_rev + 1u;
    }
    // acc_r: batch row b0 + r, units j..j+3 in the lanes.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    let w_base = d * hid * hid + j;
    for (var k0 = 0u; k0 < hid; k0 += WG) {
        let kk = k0 + lid.x;
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        if (kk < hid) {
            for (var r = 0u; r < ROWS; r++) {
                let bb = b0 + r;
                var v = 0.0;
                if (bb < batch) {
                    if (step.first != 0u) {
                        v = h0[((dims.state0 + d) * batch + bb) * hid + kk];
                    } else {
                        v = y[(tp * batch + bb) * dh + d * hid + kk];
                    }
                }
                if (r < 4u) {
                    lo[r] = v;
                } else {
                    hi[r - 4u] = v;
                }
            }
        }
        h_tile[2u * lid.x] = lo;
        h_tile[2u * lid.x + 1u] = hi;
        workgroupBarrier();
        if (j < hid) {
            let n = min(WG, hid - k0);
            for (var q = 0u; q < n; q++) {
                let w_at = w_base + (k0 + q) * hid;
                let w = vec4<f32>(w_hh_t[w_at], w_hh_t[w_at + 1u], w_hh_t[w_at + 2u], w_hh_t[w_at + 3u]);
                let h_lo = h_tile[2u * q];
                let h_hi = h_tile[2u * q + 1u];
                acc0 = fma(vec4<f32>(h_lo.x), w, acc0);
                acc1 = fma(vec4<f32>(h_lo.y), w, acc1);
                acc2 = fma(vec4<f32>(h_lo.z), w, acc2);
                acc3 = fma(vec4<f32>(h_lo.w), w, acc3);
                acc4 = fma(vec4<f32>(h_hi.x), w, acc4);
                acc5 = fma(vec4<f32>(h_hi.y), w, acc5);
                acc6 = fma(vec4<f32>(h_hi.z), w, acc6);
                acc7 = fma(vec4<f32>(h_hi.w), w, acc7);
            }
        }
        workgroupBarrier();
    }
    finish(t, d, b0 + 0u, j, acc0);
    finish(t, d, b0 + 1u, j, acc1);
    finish(t, d, b0 + 2u, j, acc2);
    finish(t, d, b0 + 3u, j, acc3);
    finish(t, d, b0 + 4u, j, acc4);
    finish(t, d, b0 + 5u, j, acc5);
    finish(t, d, b0 + 6u, j, acc6);
    finish(t, d, b0 + 7u, j, acc7);
}

// h_t for row bb, units j .. j + 3, from the recurrent sums in acc. One call per named
// accumulator: no indexing of a local array, which some compilers (lavapipe's) turn into
// per-lane memory traffic.
fn finish(t: u32, d: u32, bb: u32, j: u32, acc: vec4<f32>) {
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
        let o = (t * batch + bb) * dims.dirs * hid + d * hid + jj;
        let v = act(acc[u] + proj[o]);
        y[o] = v;
        if (step.last != 0u) {
            h_n[((dims.state0 + d) * batch + bb) * hid + jj] = v;
        }
    }
}
