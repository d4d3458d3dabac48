// Deterministic reductions by one workgroup: each thread sums a fixed stride of the input,
// then a tree in workgroup memory; the order never changes, so neither does the result.
//   sum:   out[slot] = sum_i src[off + i]
//   sumsq: out[slot] = sum_i src[off + i]^2      (for the global gradient norm)

struct Dims {
    n: u32,
    off: u32,
    slot: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

fn finish(lid: u32, v: f32) {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[dims.slot] = partial[0];
    }
}

@compute @workgroup_size(256, 1, 1)
fn sum(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < dims.n; i += 256u) {
        acc += src[dims.off + i];
    }
    finish(lid, acc);
}

@compute @workgroup_size(256, 1, 1)
fn sumsq(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < dims.n; i += 256u) {
        let v = src[dims.off + i];
        acc = fma(v, v, acc);
    }
    finish(lid, acc);
}
