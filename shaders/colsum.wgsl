// Column sums, the gradient of a bias broadcast over rows:
//   out[out0 + n] = out[out1 + n] = sum_{r < rows} a[a_off + r * a_rs + n],   n < cols
// One thread per column adds its rows in order, so the result never depends on scheduling.
// Two destinations because an Elman layer's b_ih and b_hh receive the same gradient (out1 may
// equal out0). Neighbouring threads read neighbouring addresses.

struct Dims {
    rows: u32,
    cols: u32,
    a_off: u32,
    a_rs: u32,
    out0: u32,
    out1: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= dims.cols) {
        return;
    }
    // Four independent partial sums (rows r, r + 1, r + 2, r + 3), combined at the end in a
    // fixed order: the loads of one iteration do not wait on each other.
    var s = vec4<f32>(0.0);
    var r = 0u;
    for (; r + 4u <= dims.rows; r += 4u) {
        let i = dims.a_off + r * dims.a_rs + n;
        s += vec4<f32>(a[i], a[i + dims.a_rs], a[i + 2u * dims.a_rs], a[i + 3u * dims.a_rs]);
    }
    for (; r < dims.rows; r++) {
        s.x += a[dims.a_off + r * dims.a_rs + n];
    }
    let total = (s.x + s.y) + (s.z + s.w);
    out[dims.out0 + n] = total;
    out[dims.out1 + n] = total;
}
