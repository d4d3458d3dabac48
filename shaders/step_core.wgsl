// The shared core of every cell's forward step kernel (the software-adapter core): one time
// step of a layer, both directions in one dispatch. Composed with a cell's epilogue
// (shaders/cells/*.wgsl) by src/gpu/kernels.rs, which appends the epilogue to this text.
//
// The core computes the recurrent product of every gate block g < GATES,
//   rec[g][b, j] = sum_k W_hh[d][g*H + j, k] * h_prev[b, k]  (+ the unfolded b_hh block),
// where h_prev is h0 at the first step and the layer's own output at the previous time
// otherwise (t - 1 for the forward direction, t + 1 for the reverse one), and hands each
// (row, unit) to the epilogue, which combines it with the hoisted input projection
// P = X W_ih^T + b_ih + folded b_hh and writes the outputs.
//
// The composer puts the cell's constants before it (from src/cell.rs, CellSpec): GATES (gate
// blocks G), SAVED_UNITS (S, units saved per row for backward), SPLIT (a b_hh block does
// not fold into the projection: it follows W_hh in w_hh_t and is added here) and PROJ (an
// LSTM with a projection: h_prev has dims.width = P units, the cell's o*tanh(c) goes to saved
// slot M_SLOT and shaders/project.wgsl, dispatched after this kernel, writes y = W_hr m and
// h_n). The epilogue
// provides:
//   fn cell_forward(s: Site, jj: u32, rec: array<f32, GATES>)
// and may use the bindings below, the helpers of shaders/step_common.wgsl and `s.first` /
// `s.last` (h_n, c_n are written at the last step). It writes y (and whatever its cell saves)
// for unit jj.
//
// Blocking: each thread computes 4 consecutive hidden units (j in the lanes of a vec4) for 8
// batch rows; a workgroup of WG threads covers 4*WG units x 8 rows of one direction, by the
// staged product of step_common.wgsl (product8). Gate blocks are computed one after another,
// so the loop count per invocation is G times Elman's (src/gpu/kernels.rs, budget::step).
// Loads, not arithmetic, are what a software adapter (lavapipe runs each lane's load as a
// scalar) and a real GPU pay for. W_hh is read transposed so that the 4 units of a thread, and
// neighbouring threads, read neighbouring addresses.

// Threads per workgroup, and columns of h_prev staged at a time. Set by the host
// (src/gpu/kernels.rs, StepTunables), part of the pipeline's cache key.
override WG: u32;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> step: Step;                     // one per step, dynamic offset
@group(0) @binding(2) var<storage, read> w_hh_t: array<f32>;       // [D, R, G*H] W_hh^T, then [D, G*H] unfolded b_hh
@group(0) @binding(3) var<storage, read> proj: array<f32>;         // [T, B, D*G*H]
@group(0) @binding(4) var<storage, read> states0: array<f32>;      // h0 [L*D, B, R], then c0 [L*D, B, H]
@group(0) @binding(5) var<storage, read_write> y: array<f32>;      // [T, B, D*R]
@group(0) @binding(6) var<storage, read_write> states_n: array<f32>; // h_n [L*D, B, R], then c_n
@group(0) @binding(7) var<storage, read_write> saved: array<f32>;  // [T, B, D, S*H]

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let hid = dims.hidden;
    let gh = GATES * hid;
    let p = place_of(lid.x, wid);
    // rec[g * 8 + r]: gate block g, batch row p.b0 + r, units p.j..p.j+3 in the lanes.
    var rec: array<vec4<f32>, 8 * GATES>;
    let wid_r = dims.width;
    for (var g = 0u; g < GATES; g++) {
        let w_base = p.d * wid_r * gh + g * hid + p.j;
        let a = product8(lid.x, p.j < hid, p, wid_r, w_base, gh);
        var bias = vec4<f32>(0.0);
        if (SPLIT) {
            bias = weight4(dims.dirs * wid_r * gh + p.d * gh + g * hid + p.j);
        }
        rec[g * 8u] = a.r0 + bias;
        rec[g * 8u + 1u] = a.r1 + bias;
        rec[g * 8u + 2u] = a.r2 + bias;
        rec[g * 8u + 3u] = a.r3 + bias;
        rec[g * 8u + 4u] = a.r4 + bias;
        rec[g * 8u + 5u] = a.r5 + bias;
        rec[g * 8u + 6u] = a.r6 + bias;
        rec[g * 8u + 7u] = a.r7 + bias;
    }
    for (var r = 0u; r < 8u; r++) {
        let bb = p.b0 + r;
        if (bb >= dims.batch) {
            break;
        }
        let s = site_of(p, bb);
        let valid = in_sequence(p, bb);
        for (var u = 0u; u < 4u; u++) {
            let jj = p.j + u;
            if (jj >= hid) {
                break;
            }
            if (!valid) {
                // Past the row's end: output zero (with a projection, m: project.wgsl zeroes
                // y), state untouched.
                if (PROJ) {
                    saved[saved_at(s, s.t, M_SLOT, jj)] = 0.0;
                } else {
                    y[y_at(s, jj)] = 0.0;
                }
                continue;
            }
            var unit: array<f32, GATES>;
            for (var g = 0u; g < GATES; g++) {
                unit[g] = rec[g * 8u + r][u];
            }
            cell_forward(s, jj, unit);
        }
    }
}

// Index of gate block g, unit jj of (s.t, s.bb) in the projection: [T, B, D*G*H].
fn proj_at(s: Site, g: u32, jj: u32) -> u32 {
    return gate_at(s, g, jj);
}

// The staged operand of the product (step_common.wgsl, product8): h_prev, row bb, column kk
// of direction p.d; h0 at the row's first step, else the layer's output at time p.tp.
fn staged(bb: u32, kk: u32, p: Place) -> f32 {
    if (!in_sequence(p, bb)) {
        return 0.0; // past the row's end: nothing to read (y[p.tp] may not exist)
    }
    let s = site_of(p, bb);
    if (s.first) {
        return states0[state_at(s, 0u, kk)];
    }
    return y[y_prev_at(s, kk)];
}

// W_hh^T[k][c .. c + 3] at `at`.
fn weight4(at: u32) -> vec4<f32> {
    return vec4<f32>(w_hh_t[at], w_hh_t[at + 1u], w_hh_t[at + 2u], w_hh_t[at + 3u]);
}
