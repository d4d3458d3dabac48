// What both step cores share (src/gpu/kernels.rs, compose_step, puts it after the cell's
// constants and before the core): the uniforms' layout, where a (row, unit) of a step sits,
// index helpers, the staged recurrent product and the nonlinearities with PyTorch's values at
// the edges.

struct Dims {
    batch: u32,       // B
    hidden: u32,      // H
    dirs: u32,        // D
    state0: u32,      // layer * D: index of this layer's first state in the state buffers
    states_len: u32,  // L*D*B*R: offset of the c part in the state buffers
    w_off: u32,       // offset of this layer's weight_hh (both directions) in params (backward)
    split_off: u32,   // offset of the dR part of grad_gates (backward, cells with SPLIT)
    lengths_off: u32, // offset of the rows' sequence lengths (u32 bits) in states0
    steps: u32,       // T
    first_off: u32,   // offset of each row's first-step dR [B, D*G*H] in grad_gates (backward)
    width: u32,       // R, the width of h: P for a projected LSTM (PROJ), else H
    hr_off: u32,      // offset of this layer's weight_hr [D, P, H] in params (PROJ backward)
}

struct Step {
    t_fwd: u32,       // time index of the forward direction at this step
    t_rev: u32,       // time index of the reverse direction (T - 1 - t_fwd)
    first: u32,       // 1 at step 0: read h0
    last: u32,        // 1 at step T - 1: write h_n
}

// Where one (row, unit block) of a step sits.
struct Site {
    t: u32,           // time index of this step
    tp: u32,          // time index of the step before it in forward order (unused when first)
    d: u32,           // direction
    bb: u32,          // batch row
    first: bool,      // the direction's first step in forward order: the previous state is h0 (c0)
    last: bool,       // the direction's last step in forward order: h_n (c_n) are written there,
                      // and the backward pass starts there
}

// Index of (s.t, s.bb, unit jj) of direction s.d in y (and grad_y): [T, B, D*R].
fn y_at(s: Site, jj: u32) -> u32 {
    return ((s.t * dims.batch + s.bb) * dims.dirs + s.d) * dims.width + jj;
}

// Index of the previous step's (s.tp, s.bb, jj) in y (valid when !s.first).
fn y_prev_at(s: Site, jj: u32) -> u32 {
    return ((s.tp * dims.batch + s.bb) * dims.dirs + s.d) * dims.width + jj;
}

// Index of gate block g, unit jj of (s.t, s.bb) in a [T, B, D*G*H] tensor (the projection
// forward, dX backward; dR follows dX at dims.split_off).
fn gate_at(s: Site, g: u32, jj: u32) -> u32 {
    let gh = GATES * dims.hidden;
    return (s.t * dims.batch + s.bb) * dims.dirs * gh + s.d * gh + g * dims.hidden + jj;
}

// Index of unit jj of row s.bb's state, part 0 (h, [L*D, B, R]) or 1 (c, [L*D, B, H]), in the
// state buffers (h0/c0, h_n/c_n, their gradients and the backward carry).
fn state_at(s: Site, part: u32, jj: u32) -> u32 {
    let row = (dims.state0 + s.d) * dims.batch + s.bb;
    if (part == 0u) {
        return row * dims.width + jj;
    }
    return dims.states_len + row * dims.hidden + jj;
}

// Index of saved unit `slot` (< SAVED_UNITS), hidden unit jj, at time t of row s.bb:
// [T, B, D, S*H].
fn saved_at(s: Site, t: u32, slot: u32, jj: u32) -> u32 {
    let sh = SAVED_UNITS * dims.hidden;
    return ((t * dims.batch + s.bb) * dims.dirs + s.d) * sh + slot * dims.hidden + jj;
}

// Where an invocation works: units j..j+3 (the lanes), batch rows b0..b0+7, direction d, at
// the step's time index t of that direction; tp is the time before it in the direction's
// order (its h_prev), tn the time after it (the step the backward pass processed before).
struct Place {
    j: u32,
    b0: u32,
    d: u32,
    t: u32,
    tp: u32,
    tn: u32,
}

// Row bb's sequence length: T, or its own for a variable-length batch.
fn row_len(bb: u32) -> u32 {
    return bitcast<u32>(states0[dims.lengths_off + bb]);
}

// Whether the invocation's step is inside row bb's sequence (steps past its end do nothing:
// their output is zero and no gradient flows through them).
fn in_sequence(p: Place, bb: u32) -> bool {
    return p.t < row_len(bb);
}

// Row bb's Site at the invocation's step: the forward direction runs 0 .. len, the reverse
// one len - 1 ..= 0, so a short row's reverse pass starts at its own end (PyTorch's packed
// sequences) and its first step reads h0 there.
fn site_of(p: Place, bb: u32) -> Site {
    let len = row_len(bb);
    var first = p.t == 0u;
    var last = p.t + 1u == len;
    if (p.d == 1u) {
        first = p.t + 1u == len;
        last = p.t == 0u;
    }
    return Site(p.t, p.tp, p.d, bb, first, last);
}

fn place_of(lid: u32, wid: vec3<u32>) -> Place {
    var p = Place((wid.x * WG + lid) * UNITS, wid.y * ROWS, wid.z, step.t_fwd, step.t_fwd - 1u, step.t_fwd + 1u);
    if (wid.z == 1u) {
        p.t = step.t_rev;
        p.tp = step.t_rev + 1u;
        p.tn = step.t_rev - 1u;
    }
    return p;
}

// The recurrent product both cores run, for one thread's 8 batch rows b0.. and 4 units
// j..j+3 (the lanes): acc.r[r] = sum_{k < k_len} staged(b0 + r, k, p) * W[k, j..j+3],
// where W's row k starts at w_base + k * w_stride and `weight4` reads it (each core defines
// `staged` and `weight4` for its operands). The 8 rows' slice of the staged operand is put in
// workgroup memory WG columns at a time; every value a thread reads is used 4 or 8 times from
// registers. Rows past the batch stage zeros, reads past H only feed discarded lanes. Called
// in uniform control flow (it holds barriers).
struct Acc8 {
    r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>,
    r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32>,
}

// ROWS, UNITS and MAX_WG come from src/gpu/kernels.rs (STEP_ROWS, STEP_THREAD_UNITS,
// STEP_MAX_WG); the code here is written for 8 rows in 8 named accumulators and 4 units in the
// lanes of a vec4, and says so.
const_assert ROWS == 8u;
const_assert UNITS == 4u;

// [WG][2]: rows 0-3, rows 4-7 in the lanes. Sized for the largest WG (StepTunables): naga 30
// cannot yet specialise a workgroup array sized by an override.
var<workgroup> tile: array<vec4<f32>, ROWS / 4u * MAX_WG>;

fn product8(lid: u32, j_valid: bool, p: Place, k_len: u32, w_base: u32, w_stride: u32) -> Acc8 {
    let b0 = p.b0;
    let z = vec4<f32>(0.0);
    var a = Acc8(z, z, z, z, z, z, z, z);
    for (var k0 = 0u; k0 < k_len; k0 += WG) {
        let kk = k0 + lid;
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        if (kk < k_len) {
            for (var r = 0u; r < ROWS; r++) {
                let bb = b0 + r;
                var v = 0.0;
                if (bb < dims.batch) {
                    v = staged(bb, kk, p);
                }
                if (r < 4u) {
                    lo[r] = v;
                } else {
                    hi[r - 4u] = v;
                }
            }
        }
        tile[2u * lid] = lo;
        tile[2u * lid + 1u] = hi;
        workgroupBarrier();
        if (j_valid) {
            let n = min(WG, k_len - k0);
            for (var q = 0u; q < n; q++) {
                let w = weight4(w_base + (k0 + q) * w_stride);
                let x_lo = tile[2u * q];
                let x_hi = tile[2u * q + 1u];
                a.r0 = fma(vec4<f32>(x_lo.x), w, a.r0);
                a.r1 = fma(vec4<f32>(x_lo.y), w, a.r1);
                a.r2 = fma(vec4<f32>(x_lo.z), w, a.r2);
                a.r3 = fma(vec4<f32>(x_lo.w), w, a.r3);
                a.r4 = fma(vec4<f32>(x_hi.x), w, a.r4);
                a.r5 = fma(vec4<f32>(x_hi.y), w, a.r5);
                a.r6 = fma(vec4<f32>(x_hi.z), w, a.r6);
                a.r7 = fma(vec4<f32>(x_hi.w), w, a.r7);
            }
        }
        workgroupBarrier();
    }
    return a;
}

// Non-finite values follow PyTorch (rule 2 of the crate docs, src/lib.rs). WGSL's max and
// clamp may return either operand for NaN and a compiler may assume there is none, so NaN is
// tested on the bits.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// tanh with PyTorch's values at the edges: tanh(+-inf) = +-1, tanh(NaN) = NaN. Clamped: some
// drivers compute tanh as a ratio of exponentials that overflows to NaN; tanh(15) rounds to
// 1.0 in f32 already.
fn tanh_pt(v: f32) -> f32 {
    return select(tanh(clamp(v, -15.0, 15.0)), v, is_nan(v));
}

// The logistic sigmoid, 1 / (1 + e^-v), NaN for NaN; e^-v overflows to inf for v < -88,
// giving exactly 0 as PyTorch's float32 does.
fn sigmoid_pt(v: f32) -> f32 {
    return select(1.0 / (1.0 + exp(-v)), v, is_nan(v));
}
