// The shared core of every cell's backward step kernel (the software-adapter core): one
// reverse-time step of backpropagation through a layer, both directions in one dispatch.
// Composed with a cell's epilogue (shaders/cells/*.wgsl) by src/gpu/kernels.rs.
//
// The core computes the gradient reaching h_t through the recurrence,
//   dh_rec[b, j] = sum_k dR_next[b, k] * W_hh[d][k, j]   (k over all G*H gate rows),
// where dR_next is the recurrent gate gradient of the step processed just before in reverse
// time (t + 1 for the forward direction, t - 1 for the reverse one), or grad_h_n itself at the
// first backward step (then W_hh is not applied: dh_T = grad_h_n directly), and hands each
// (row, unit) to the epilogue, which adds the output's gradient and any carried term and
// writes every gate's gradient.
//
// With a projection (PROJ, an LSTM with proj_size P) the gradient of h_t [B, P] was computed
// by shaders/project_bwd.wgsl, dispatched just before this kernel, into the buffer bound as
// grad_y; the core's product is then dL/dm_t = dL/dh_t W_hr (k over P, W_hr [P, H] read
// row-major from params at dims.hr_off) at every step, the first backward one included.
//
// The composer puts the cell's constants GATES, SAVED_UNITS, SPLIT and PROJ before it; the epilogue
// provides `fn cell_backward(s: Site, jj: u32, dh_rec: f32)`. It writes dX (grad_gates at
// gate_at) and, for cells that split them (SPLIT), dR (at gate_at + dims.split_off);
// the carried terms (dc, GRU's direct dh) go in `carry`: [S_state, L*D, B, H], the layout of
// the state gradients, so that after the last step the c part is grad c0.
//
// Blocking as the forward core (step_common.wgsl, product8): 4 units x 8 rows per thread,
// the rows' slice of dR_next staged in workgroup memory WG columns at a time. It reads the step uniforms of the forward
// pass: the backward step s uses the forward entry T-1-s, whose `last` flag marks the first
// backward step.

override WG: u32;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> step: Step;                     // dynamic offset
@group(0) @binding(2) var<storage, read> params: array<f32>;       // flat; W_hh [D, G*H, H] at w_off
@group(0) @binding(3) var<storage, read> grad_y: array<f32>;       // [T, B, D*R] (PROJ: dL/dh_t)
@group(0) @binding(4) var<storage, read> grad_states_n: array<f32>; // grad_h_n [L*D, B, R], then grad_c_n
@group(0) @binding(5) var<storage, read> y: array<f32>;            // [T, B, D*R]
@group(0) @binding(6) var<storage, read> saved: array<f32>;        // [T, B, D, S*H]
@group(0) @binding(7) var<storage, read> states0: array<f32>;      // h0 [L*D, B, R], then c0
@group(0) @binding(8) var<storage, read_write> grad_gates: array<f32>; // dX [T, B, D*G*H], then dR
@group(0) @binding(9) var<storage, read_write> carry: array<f32>;  // [S_state, L*D, B, H]

// The staged operand of the product (step_common.wgsl, product8): dR of the step processed
// before in reverse time (p.tn), row bb, gate row kk of direction p.d (the second half of
// grad_gates for cells that split them).
fn staged(bb: u32, kk: u32, p: Place) -> f32 {
    if (PROJ) {
        // dL/dh_t of this step (p.t), unit kk < P.
        return grad_y[((p.t * dims.batch + bb) * dims.dirs + p.d) * dims.width + kk];
    }
    let gh = GATES * dims.hidden;
    var r_off = 0u;
    if (SPLIT) {
        r_off = dims.split_off;
    }
    return grad_gates[r_off + (p.tn * dims.batch + bb) * dims.dirs * gh + p.d * gh + kk];
}

// W_hh[k][j .. j + 3] at `at` (the flat parameters, row-major [G*H, H]).
fn weight4(at: u32) -> vec4<f32> {
    return vec4<f32>(params[at], params[at + 1u], params[at + 2u], params[at + 3u]);
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let p = place_of(lid.x, wid);
    let hid = dims.hidden;
    let gh = GATES * hid;
    // acc: the carried gradient of batch rows p.b0.., units p.j..p.j+3 in the lanes.
    let z = vec4<f32>(0.0);
    var acc = Acc8(z, z, z, z, z, z, z, z);
    let first_bwd = step.last != 0u;
    if (PROJ) {
        let w_base = dims.hr_off + p.d * dims.width * hid + p.j;
        acc = product8(lid.x, p.j < hid, p, dims.width, w_base, hid);
    } else if (!first_bwd) {
        acc = product8(lid.x, p.j < hid, p, gh, dims.w_off + p.d * gh * hid + p.j, hid);
    }
    finish(p, p.b0, acc.r0);
    finish(p, p.b0 + 1u, acc.r1);
    finish(p, p.b0 + 2u, acc.r2);
    finish(p, p.b0 + 3u, acc.r3);
    finish(p, p.b0 + 4u, acc.r4);
    finish(p, p.b0 + 5u, acc.r5);
    finish(p, p.b0 + 6u, acc.r6);
    finish(p, p.b0 + 7u, acc.r7);
}

// Units p.j .. p.j + 3 of row bb: the carried gradient (acc, or grad_h_n at the row's last
// step) to the epilogue; past the row's end, zero gate gradients instead. After the row's
// first step (which read h0), its dR is copied to first_off for the h0 GEMMs. One call per
// named accumulator: no indexing of a local array, which some compilers (lavapipe's) turn
// into per-lane memory traffic.
fn finish(p: Place, bb: u32, acc: vec4<f32>) {
    if (bb >= dims.batch) {
        return;
    }
    let s = site_of(p, bb);
    let valid = in_sequence(p, bb);
    let gh = GATES * dims.hidden;
    var r_off = 0u;
    if (SPLIT) {
        r_off = dims.split_off;
    }
    for (var u = 0u; u < 4u; u++) {
        let jj = p.j + u;
        if (jj >= dims.hidden) {
            return;
        }
        if (!valid) {
            for (var g = 0u; g < GATES; g++) {
                grad_gates[gate_at(s, g, jj)] = 0.0;
                if (SPLIT) {
                    grad_gates[r_off + gate_at(s, g, jj)] = 0.0;
                }
            }
            continue;
        }
        var dh_rec = acc[u];
        if (s.last && !PROJ) {
            dh_rec = grad_states_n[state_at(s, 0u, jj)];
        }
        cell_backward(s, jj, dh_rec);
        if (s.first) {
            for (var g = 0u; g < GATES; g++) {
                let to = dims.first_off + (bb * dims.dirs + p.d) * gh + g * dims.hidden + jj;
                grad_gates[to] = grad_gates[r_off + gate_at(s, g, jj)];
            }
        }
    }
}
