// The Elman cell's epilogue (PyTorch's nn.RNN): h' = act(P + W_hh h), one gate, both biases
// folded into P, nothing saved beyond h'. What precedes the `// @forward` line goes into both
// kernels; the `@forward` part is composed after shaders/step_core.wgsl (cell_forward), the
// `@backward` part after shaders/step_core_bwd.wgsl (cell_backward). Both cores define the
// helpers it uses.

// 1 for relu, 0 for tanh (src/cell.rs, Elman::wgsl_constants).
override RELU: bool;

// @forward: the part composed after shaders/step_core.wgsl.

// Forward: relu(NaN) = NaN, tanh(+-inf) = +-1, tanh(NaN) = NaN, as PyTorch.
fn cell_forward(s: Site, jj: u32, rec: array<f32, GATES>) {
    let o = y_at(s, jj);
    let a = rec[0] + proj[proj_at(s, 0u, jj)];
    var v = tanh_pt(a);
    if (RELU) {
        v = select(0.0, a, a > 0.0 || is_nan(a));
    }
    y[o] = v;
    if (s.last) {
        states_n[state_at(s, 0u, jj)] = v;
    }
}

// @backward: the part composed after shaders/step_core_bwd.wgsl.

// Backward, from the activation's output y as PyTorch does: tanh multiplies, g * (1 - y^2);
// relu selects (threshold_backward): 0 where y <= 0, even for an infinite or NaN g, and g
// everywhere else, a NaN output included.
fn cell_backward(s: Site, jj: u32, dh_rec: f32) {
    let o = y_at(s, jj);
    let g = grad_y[o] + dh_rec;
    let v = y[o];
    var da = g * (1.0 - v * v);
    if (RELU) {
        da = select(g, 0.0, v <= 0.0 && !is_nan(v));
    }
    grad_gates[gate_at(s, 0u, jj)] = da;
}
