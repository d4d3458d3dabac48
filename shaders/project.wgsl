// The projection of an LSTM with proj_size P (PyTorch's weight_hr, Sak et al. 2014): after the
// step kernel of a time step wrote m = o tanh(c) of every row to saved slot M_SLOT, this
// kernel, dispatched right after it, computes the step's hidden state for both directions,
//   y[t, b, d*P + p] = sum_k W_hr[d][p, k] * m[t, b, d, k]   (k over H),
// writes it to h_n at each row's last step, and zero past a row's end. The next step kernel
// reads h_{t-1} from y, so the projection needs every unit of m first: hence a dispatch of its
// own (WGSL has no barrier across workgroups).
//
// Composed by src/gpu/kernels.rs after the LSTM's constants (PROJ = true) and
// shaders/step_common.wgsl; blocking as the step cores (product8): each thread computes 4
// consecutive output units for 8 batch rows, the rows' m staged WG columns at a time, W_hr^T
// read so that neighbouring threads read neighbouring addresses.

override WG: u32;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> step: Step;                     // dynamic offset
@group(0) @binding(2) var<storage, read> w_hh_t: array<f32>;       // derived; W_hr^T [D, H, P] after W_hh^T [D, P, G*H] and [D, G*H]
@group(0) @binding(3) var<storage, read> saved: array<f32>;        // [T, B, D, S*H], m in slot M_SLOT
@group(0) @binding(4) var<storage, read> states0: array<f32>;      // read for the rows' lengths
@group(0) @binding(5) var<storage, read_write> y: array<f32>;      // [T, B, D*P]
@group(0) @binding(6) var<storage, read_write> states_n: array<f32>; // h_n [L*D, B, P], then c_n

const_assert PROJ;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let p = place_of(lid.x, wid);
    let hid = dims.hidden;
    let pr = dims.width;
    let w_base = dims.dirs * (pr + 1u) * GATES * hid + p.d * hid * pr + p.j;
    let a = product8(lid.x, p.j < pr, p, hid, w_base, pr);
    put(p, p.b0, a.r0);
    put(p, p.b0 + 1u, a.r1);
    put(p, p.b0 + 2u, a.r2);
    put(p, p.b0 + 3u, a.r3);
    put(p, p.b0 + 4u, a.r4);
    put(p, p.b0 + 5u, a.r5);
    put(p, p.b0 + 6u, a.r6);
    put(p, p.b0 + 7u, a.r7);
}

// Units p.j .. p.j + 3 of row bb: h_t, and h_n at the row's last step; zero past its end.
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
            y[y_at(s, jj)] = 0.0;
            continue;
        }
        y[y_at(s, jj)] = v[u];
        if (s.last) {
            states_n[state_at(s, 0u, jj)] = v[u];
        }
    }
}

// The staged operand of product8: m of row bb, unit kk, at the invocation's step.
fn staged(bb: u32, kk: u32, p: Place) -> f32 {
    if (!in_sequence(p, bb)) {
        return 0.0;
    }
    return saved[saved_at(site_of(p, bb), p.t, M_SLOT, kk)];
}

// W_hr^T[k][p .. p + 3] at `at`.
fn weight4(at: u32) -> vec4<f32> {
    return vec4<f32>(w_hh_t[at], w_hh_t[at + 1u], w_hh_t[at + 2u], w_hh_t[at + 3u]);
}
