// Column sums, the gradient of a bias broadcast over rows:
//   out[out0 + c * out_rs + n] = out[out1 + c * out_rs + n] = sum_{r in chunk c} a[a_off + r * a_rs + n]
// for n < cols, where chunk c (workgroup y) is the rows [c * chunk, min(rows, (c + 1) * chunk)).
// One thread per column adds its chunk's rows in order, so the result never depends on
// scheduling. Two destinations because an Elman layer's b_ih and b_hh receive the same
// gradient (out1 may equal out0). Neighbouring threads read neighbouring addresses.
//
// Loop budget (src/gpu/kernels.rs, `budget::colsum`): a chunk is at most
// `budget::COLSUM_CHUNK` rows. With more than one chunk the host writes the chunks' sums as
// rows of a scratch matrix and sums that again, chunk 0 first, until one chunk is left.

struct Dims {
    rows: u32,
    cols: u32,
    a_off: u32,
    a_rs: u32,
    out0: u32,
    out1: u32,
    chunk: u32,       // rows per workgroup y
    out_rs: u32,      // offset between the outputs of consecutive chunks
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = gid.x;
    if (n >= dims.cols) {
        return;
    }
    let begin = wid.y * dims.chunk;
    let end = min(dims.rows, begin + dims.chunk);
    // Four independent partial sums (rows r, r + 1, r + 2, r + 3), combined at the end in a
    // fixed order: the loads of one iteration do not wait on each other.
    var s = vec4<f32>(0.0);
    var r = begin;
    for (; r + 4u <= end; r += 4u) {
        let i = dims.a_off + r * dims.a_rs + n;
        s += vec4<f32>(a[i], a[i + dims.a_rs], a[i + 2u * dims.a_rs], a[i + 3u * dims.a_rs]);
    }
    for (; r < end; r++) {
        s.x += a[dims.a_off + r * dims.a_rs + n];
    }
    let total = (s.x + s.y) + (s.z + s.w);
    let o = wid.y * dims.out_rs + n;
    out[dims.out0 + o] = total;
    out[dims.out1 + o] = total;
}
