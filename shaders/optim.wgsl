// Optimizer updates, in place, one thread per parameter, with gradient clipping by global
// norm folded in: norms[] holds the squared norms of every gradient buffer (from reduce.wgsl's
// sumsq), so each thread computes the same scale min(1, max_norm / (||g|| + 1e-6)) as
// torch.nn.utils.clip_grad_norm_, and nothing is read back.
//
// kind 0, SGD:     buf = momentum * buf + g;  p -= lr * buf      (buf = g when momentum = 0)
// kind 1, Adam:    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//                  p -= lr * (m / bc1) / (sqrt(v / bc2) + eps),  bc_i = 1 - b_i^step
// kind 2, Adagrad: v += g^2;  p -= lr * g / (sqrt(v) + eps)

struct Hyper {
    n: u32,           // parameters in this buffer
    kind: u32,
    n_norms: u32,     // entries of norms to sum; 0 disables clipping
    p_off: u32,       // offset of the first parameter in params (and of its gradient in grads)
    lr: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
    max_norm: f32,
}

@group(0) @binding(0) var<uniform> hp: Hyper;
@group(0) @binding(1) var<storage, read> norms: array<f32>;           // [n_norms] squared norms
@group(0) @binding(2) var<storage, read> grads: array<f32>;           // flat gradients
@group(0) @binding(3) var<storage, read_write> params: array<f32>;    // flat parameters
@group(0) @binding(4) var<storage, read_write> m1: array<f32>;        // [n] momentum / first moment
@group(0) @binding(5) var<storage, read_write> m2: array<f32>;        // [n] second moment

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if (i >= hp.n) {
        return;
    }
    var scale = 1.0;
    if (hp.n_norms > 0u) {
        var total = 0.0;
        for (var k = 0u; k < hp.n_norms; k++) {
            total += norms[k];
        }
        // A NaN norm gives a NaN scale, as torch.nn.utils.clip_grad_norm_ (WGSL's min may
        // return either operand for NaN, so it is tested on the bits).
        let s = hp.max_norm / (sqrt(total) + 1e-6);
        let nan = (bitcast<u32>(s) & 0x7fffffffu) > 0x7f800000u;
        scale = select(min(1.0, s), s, nan);
    }
    let g = grads[hp.p_off + i] * scale;
    let p = hp.p_off + i;
    if (hp.kind == 0u) {
        var step = g;
        if (hp.momentum != 0.0) {
            step = hp.momentum * m1[i] + g;
            m1[i] = step;
        }
        params[p] -= hp.lr * step;
    } else if (hp.kind == 1u) {
        let m = hp.beta1 * m1[i] + (1.0 - hp.beta1) * g;
        let v = hp.beta2 * m2[i] + (1.0 - hp.beta2) * g * g;
        m1[i] = m;
        m2[i] = v;
        params[p] -= hp.lr * (m / hp.bc1) / (sqrt(v / hp.bc2) + hp.eps);
    } else {
        let v = m2[i] + g * g;
        m2[i] = v;
        params[p] -= hp.lr * g / (sqrt(v) + hp.eps);
    }
}
