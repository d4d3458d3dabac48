// Deterministic reductions: each workgroup sums one chunk of the input, each thread a fixed
// stride of it, then a tree in workgroup memory; the order never changes, so neither does the
// result.
//   sum:   out[slot + w] = sum_{i in chunk w} src[off + i]
//   sumsq: out[slot + w] = sum_{i in chunk w} src[off + i]^2      (for the global gradient norm)
// where chunk w (workgroup x) is the elements [w * chunk, min(n, (w + 1) * chunk)).
//
// Loop budget (src/gpu/kernels.rs, `budget::reduce`): a chunk is at most
// `budget::REDUCE_CHUNK` elements; with more than one chunk the host sums the chunks' results
// again with `sum`, chunk 0 first.

struct Dims {
    n: u32,
    off: u32,
    slot: u32,
    chunk: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

fn finish(lid: u32, w: u32, v: f32) {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[dims.slot + w] = partial[0];
    }
}

@compute @workgroup_size(256, 1, 1)
fn sum(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let begin = wid.x * dims.chunk;
    let end = min(dims.n, begin + dims.chunk);
    var acc = 0.0;
    for (var i = begin + lid; i < end; i += 256u) {
        acc += src[dims.off + i];
    }
    finish(lid, wid.x, acc);
}

@compute @workgroup_size(256, 1, 1)
fn sumsq(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let begin = wid.x * dims.chunk;
    let end = min(dims.n, begin + dims.chunk);
    var acc = 0.0;
    for (var i = begin + lid; i < end; i += 256u) {
        let v = src[dims.off + i];
        acc = fma(v, v, acc);
    }
    finish(lid, wid.x, acc);
}
