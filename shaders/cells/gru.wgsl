// The GRU cell's epilogue (PyTorch's nn.GRU): gate blocks r, z, n;
//   r = sigmoid(P_r + W_hr h), z = sigmoid(P_z + W_hz h),
//   n = tanh(P_n + r (W_hn h + b_hn)),  h' = n + z (h - n)   (PyTorch's form of (1-z) n + z h).
// b_hr and b_hz fold into P; b_hn does not (the core adds it to rec[2], SPLIT). A step saves
// r, z, n and W_hn h + b_hn (SAVED_UNITS = 4). Backward writes dX (the gradient of P) and dR
// (of the recurrent terms: dR_n = dX_n r) and carries z dh to h_{t-1} in the h part of
// `carry`. What precedes the `// @forward` line goes into both kernels; the `@forward` part is
// composed after shaders/step_core.wgsl, the `@backward` part after
// shaders/step_core_bwd.wgsl (src/gpu/kernels.rs, compose_step).

// h_{t-1} of unit jj: h0 at the direction's first step, else the layer's previous output.
fn h_prev_of(s: Site, jj: u32) -> f32 {
    if (s.first) {
        return states0[state_at(s, 0u, jj)];
    }
    return y[y_prev_at(s, jj)];
}

// @forward: the part composed after shaders/step_core.wgsl.

fn cell_forward(s: Site, jj: u32, rec: array<f32, GATES>) {
    let r = sigmoid_pt(proj[proj_at(s, 0u, jj)] + rec[0]);
    let z = sigmoid_pt(proj[proj_at(s, 1u, jj)] + rec[1]);
    let hn = rec[2];
    let n = tanh_pt(proj[proj_at(s, 2u, jj)] + r * hn);
    let h = n + z * (h_prev_of(s, jj) - n);
    saved[saved_at(s, s.t, 0u, jj)] = r;
    saved[saved_at(s, s.t, 1u, jj)] = z;
    saved[saved_at(s, s.t, 2u, jj)] = n;
    saved[saved_at(s, s.t, 3u, jj)] = hn;
    y[y_at(s, jj)] = h;
    if (s.last) {
        states_n[state_at(s, 0u, jj)] = h;
    }
}

// @backward: the part composed after shaders/step_core_bwd.wgsl.

fn cell_backward(s: Site, jj: u32, dh_rec: f32) {
    var dh = grad_y[y_at(s, jj)] + dh_rec;
    if (!s.last) {
        dh += carry[state_at(s, 0u, jj)];
    }
    let r = saved[saved_at(s, s.t, 0u, jj)];
    let z = saved[saved_at(s, s.t, 1u, jj)];
    let n = saved[saved_at(s, s.t, 2u, jj)];
    let hn = saved[saved_at(s, s.t, 3u, jj)];
    let da_n = dh * (1.0 - z) * (1.0 - n * n);
    let da_r = da_n * hn * r * (1.0 - r);
    let da_z = dh * (h_prev_of(s, jj) - n) * z * (1.0 - z);
    grad_gates[gate_at(s, 0u, jj)] = da_r;
    grad_gates[gate_at(s, 1u, jj)] = da_z;
    grad_gates[gate_at(s, 2u, jj)] = da_n;
    grad_gates[dims.split_off + gate_at(s, 0u, jj)] = da_r;
    grad_gates[dims.split_off + gate_at(s, 1u, jj)] = da_z;
    grad_gates[dims.split_off + gate_at(s, 2u, jj)] = da_n * r;
    carry[state_at(s, 0u, jj)] = dh * z;
}
