// The LSTM cell's epilogue (PyTorch's nn.LSTM): gate blocks i, f, g, o of P + W_hh h (both
// biases folded into P); c' = f c + i g, h' = o tanh(c'). A step saves i, f, g, o and c'
// (SAVED_UNITS = 5: slots 0-3 the gates, slot 4 c'); with a projection (PROJ) also
// m = o tanh(c') in slot M_SLOT = 5, and h' = W_hr m is shaders/project.wgsl's. What precedes the `// @forward` line goes
// into both kernels; the `@forward` part is composed after shaders/step_core.wgsl, the
// `@backward` part after shaders/step_core_bwd.wgsl (src/gpu/kernels.rs, compose_step).

// @forward: the part composed after shaders/step_core.wgsl.

fn cell_forward(s: Site, jj: u32, rec: array<f32, GATES>) {
    var c_prev = 0.0;
    if (s.first) {
        c_prev = states0[state_at(s, 1u, jj)];
    } else {
        c_prev = saved[saved_at(s, s.tp, 4u, jj)];
    }
    let i = sigmoid_pt(proj[proj_at(s, 0u, jj)] + rec[0]);
    let f = sigmoid_pt(proj[proj_at(s, 1u, jj)] + rec[1]);
    let g = tanh_pt(proj[proj_at(s, 2u, jj)] + rec[2]);
    let o = sigmoid_pt(proj[proj_at(s, 3u, jj)] + rec[3]);
    let c = f * c_prev + i * g;
    let h = o * tanh_pt(c);
    saved[saved_at(s, s.t, 0u, jj)] = i;
    saved[saved_at(s, s.t, 1u, jj)] = f;
    saved[saved_at(s, s.t, 2u, jj)] = g;
    saved[saved_at(s, s.t, 3u, jj)] = o;
    saved[saved_at(s, s.t, 4u, jj)] = c;
    if (PROJ) {
        // h = W_hr m is shaders/project.wgsl's, from m = o tanh(c') in slot M_SLOT.
        saved[saved_at(s, s.t, M_SLOT, jj)] = h;
    } else {
        y[y_at(s, jj)] = h;
    }
    if (s.last) {
        if (!PROJ) {
            states_n[state_at(s, 0u, jj)] = h;
        }
        states_n[state_at(s, 1u, jj)] = c;
    }
}

// @backward: the part composed after shaders/step_core_bwd.wgsl.

// dc, the gradient carried to c_t from the later step, lives in the c part of `carry` (at the
// first backward step it is grad_c_n); after the direction's last step it is grad c0.
// With a projection (PROJ) dh_rec is all of dL/dm_t = dL/dh_t W_hr (the core computed it from
// the gradient of h_t that shaders/project.wgsl's backward wrote), otherwise the output's
// gradient is added here.
fn cell_backward(s: Site, jj: u32, dh_rec: f32) {
    var dh = dh_rec;
    if (!PROJ) {
        dh += grad_y[y_at(s, jj)];
    }
    var dc = 0.0;
    if (s.last) {
        dc = grad_states_n[state_at(s, 1u, jj)];
    } else {
        dc = carry[state_at(s, 1u, jj)];
    }
    var c_prev = 0.0;
    if (s.first) {
        c_prev = states0[state_at(s, 1u, jj)];
    } else {
        c_prev = saved[saved_at(s, s.tp, 4u, jj)];
    }
    let i = saved[saved_at(s, s.t, 0u, jj)];
    let f = saved[saved_at(s, s.t, 1u, jj)];
    let g = saved[saved_at(s, s.t, 2u, jj)];
    let o = saved[saved_at(s, s.t, 3u, jj)];
    let c = saved[saved_at(s, s.t, 4u, jj)];
    let tc = tanh_pt(c);
    let dct = dc + dh * o * (1.0 - tc * tc);
    grad_gates[gate_at(s, 0u, jj)] = dct * g * i * (1.0 - i);
    grad_gates[gate_at(s, 1u, jj)] = dct * c_prev * f * (1.0 - f);
    grad_gates[gate_at(s, 2u, jj)] = dct * i * (1.0 - g * g);
    grad_gates[gate_at(s, 3u, jj)] = dh * tc * o * (1.0 - o);
    carry[state_at(s, 1u, jj)] = dct * f;
}
