// Derived weights of one layer, refreshed after every optimizer update (R is the width of h:
// the projection's P for a projected LSTM, else H):
//   w_hh_t[d][k][c]  = W_hh[d][c][k]     ([D, R, G*H]: transposed, for coalesced reads in
//                                         step_core)
//   bias[i]          = b_ih[i] + b_hh[i] for the b_hh blocks that fold (all of Elman's and
//                      LSTM's), b_ih[i] alone for the others (GRU's b_hn)
//   w_hh_t[D*R*G*H + i] = b_hh[i] for the blocks that do not fold, else 0
//   then, with a projection, W_hr transposed: w_hh_t[D*R*G*H + D*G*H + (d*H + k)*P + p]
//                      = W_hr[d][p][k]  ([D, H, P], for coalesced reads in project.wgsl)
// The parameters are read from the flat parameter buffer at the offsets in `dims`.

struct Dims {
    dirs: u32,        // D
    hidden: u32,      // H
    w_hh_off: u32,    // offset of weight_hh (both directions, [D, G*H, H]) in params
    b_ih_off: u32,    // offset of bias_ih (both directions)
    b_hh_off: u32,    // offset of bias_hh (both directions)
    has_bias: u32,
    gates: u32,       // G
    fold_mask: u32,   // bit g: b_hh block g folds into the projection's bias
    width: u32,       // R: the width of h (W_hh's columns)
    w_hr_off: u32,    // offset of weight_hr (both directions, [D, P, H]) in params
    proj: u32,        // P, 0 without a projection
    _pad: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> params: array<f32>;          // flat parameters
@group(0) @binding(2) var<storage, read_write> w_hh_t: array<f32>;    // [D, R, G*H], [D, G*H], [D, H, P]
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;      // [D*G*H]

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    let h = dims.hidden;
    let w = dims.width;
    let gh = dims.gates * h;
    let n = dims.dirs * w * gh;
    if (i < n) {
        // i indexes w_hh_t as (d, k, col): W_hh[d][col, k].
        let d = i / (w * gh);
        let k = (i / gh) % w;
        let col = i % gh;
        w_hh_t[i] = params[dims.w_hh_off + (d * gh + col) * w + k];
    }
    let pr = dims.proj;
    if (i < dims.dirs * h * pr) {
        // i indexes W_hr^T as (d, k, p): W_hr[d][p, k].
        let d = i / (h * pr);
        let k = (i / pr) % h;
        let pp = i % pr;
        w_hh_t[n + dims.dirs * gh + i] = params[dims.w_hr_off + (d * pr + pp) * h + k];
    }
    if (i < dims.dirs * gh) {
        // Block g of b_hh goes to the projection's bias when it folds, else after W_hh^T,
        // added to the recurrent product by the step kernel (zeros without bias).
        let folds = ((dims.fold_mask >> ((i % gh) / h)) & 1u) != 0u;
        var b = 0.0;
        var rec = 0.0;
        if (dims.has_bias != 0u) {
            b = params[dims.b_ih_off + i];
            if (folds) {
                b += params[dims.b_hh_off + i];
            } else {
                rec = params[dims.b_hh_off + i];
            }
            bias[i] = b;
        }
        w_hh_t[n + i] = rec;
    }
}
