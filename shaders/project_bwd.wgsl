// The gradient of h_t of an LSTM with proj_size P at one reverse-time step, both directions:
//   dh[t, b, d*P + p] = grad_y[t, b, d*P + p] + sum_k dR_next[b, k] * W_hh[d][k, p]
// (k over the 4*H gate rows; W_hh [4H, P] read row-major from params), with grad_h_n in place
// of the recurrent sum at each row's last step, and zero past a row's end. dR_next is the gate
// gradient of the step processed just before in reverse time (t + 1 for the forward
// direction, t - 1 for the reverse one). Dispatched before the backward step kernel (PROJ),
// which reads dh as its grad_y and computes dL/dm_t = dh_t W_hr; after the loop the host's
// GEMMs read dh for dW_hr = sum_t dh_t^T m_t.
//
// Composed by src/gpu/kernels.rs after the LSTM's constants (PROJ = true, SPLIT = false: dR is
// dX) and shaders/step_common.wgsl; blocking as the step cores (product8).

override WG: u32;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> step: Step;                     // dynamic offset
@group(0) @binding(2) var<storage, read> params: array<f32>;       // flat; W_hh [D, 4H, P] at w_off
@group(0) @binding(3) var<storage, read> grad_y: array<f32>;       // [T, B, D*P]
@group(0) @binding(4) var<storage, read> grad_states_n: array<f32>; // grad_h_n [L*D, B, P], then grad_c_n
@group(0) @binding(5) var<storage, read> states0: array<f32>;      // read for the rows' lengths
@group(0) @binding(6) var<storage, read> grad_gates: array<f32>;   // dX [T, B, D*G*H] (= dR)
@group(0) @binding(7) var<storage, read_write> dh: array<f32>;     // [T, B, D*P]

const_assert PROJ && !SPLIT;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let p = place_of(lid.x, wid);
    let gh = GATES * dims.hidden;
    let pr = dims.width;
    let z = vec4<f32>(0.0);
    var a = Acc8(z, z, z, z, z, z, z, z);
    // At the first backward step every row is at its last step or past its end.
    if (step.last == 0u) {
        a = product8(lid.x, p.j < pr, p, gh, dims.w_off + p.d * gh * pr + p.j, pr);
    }
    put(p, p.b0, a.r0);
    put(p, p.b0 + 1u, a.r1);
    put(p, p.b0 + 2u, a.r2);
    put(p, p.b0 + 3u, a.r3);
    put(p, p.b0 + 4u, a.r4);
    put(p, p.b0 + 5u, a.r5);
    put(p, p.b0 + 6u, a.r6);
    put(p, p.b0 + 7u, a.r7);
}

// Units p.j .. p.j + 3 of row bb.
fn put(p: Place, bb: u32, v: vec4<f32>) {
    if (bb >= dims.batch) {
        return;
    }
    let s = site_of(p, bb);
    let valid = in_sequence(p, bb);
    for (var u = 0u; u < 4u; u++) {
        let jj = p.j + u;
        if (jj >= dims.width) {
            return;
        }
        if (!valid) {
            dh[y_at(s, jj)] = 0.0;
            continue;
        }
        var rec = v[u];
        if (s.last) {
            rec = grad_states_n[state_at(s, 0u, jj)];
        }
        dh[y_at(s, jj)] = grad_y[y_at(s, jj)] + rec;
    }
}

// The staged operand of product8: dR of the step processed before (p.tn), row bb, gate row kk.
fn staged(bb: u32, kk: u32, p: Place) -> f32 {
    let gh = GATES * dims.hidden;
    return grad_gates[(p.tn * dims.batch + bb) * dims.dirs * gh + p.d * gh + kk];
}

// W_hh[k][p .. p + 3] at `at` (the flat parameters, row-major [4H, P]).
fn weight4(at: u32) -> vec4<f32> {
    return vec4<f32>(params[at], params[at + 1u], params[at + 2u], params[at + 3u]);
}
