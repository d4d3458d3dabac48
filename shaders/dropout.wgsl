// Dropout between layers in training (src/dropout.rs has the definition and the same
// generator in Rust, bit for bit):
//   dst[i] = src[i] * m_i
// forward from layer l's output y_l to the input of layer l + 1, and backward from the
// gradient of that input to the gradient of y_l (the same mask, the same product), with m_i = scale if u_i >= threshold else 0, u_i = word (i & 3) of
// Philox4x32-10(counter = [i >> 2, layer, step_lo, step_hi], key = [seed_lo, seed_hi]).
// The masks are regenerated from the counter in the backward pass, never stored.
//
// One thread per Philox block of 4 consecutive elements: the generator's natural unit (one
// call gives 4 words), so no thread computes words it throws away. A block is ~10 rounds of
// 2 products of 16-bit halves: cheap next to the loads on a software adapter, and on a real
// GPU a layer of N elements gives N/256 workgroups of 64 (a 64k-element layer already fills
// 256 compute units). The workgroup size of 64 is not tuned (it is that of the other
// elementwise kernels, whose `linear_groups` indexing this kernel shares); the kernel was
// checked on lavapipe only. No loop depends on the data: 10 rounds, then 4 elements.

struct Dims {
    n: u32,           // elements of the layer's output, T*B*D*H
    layer: u32,       // l: the layer whose output is masked
    threshold: u32,   // round(p * 2^32): dropped iff u < threshold
    scale: f32,       // 1 / (1 - p), computed in f32 on the host
}

struct Counter {
    key: vec2<u32>,   // the run's seed: low word, high word
    step: vec2<u32>,  // the training step's counter: low word, high word
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> counter: Counter;              // written before each step
@group(0) @binding(2) var<storage, read> src: array<f32>;               // [T, B, D*H]
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;         // [T, B, D*H]

// The 64-bit product a * b as (high, low), from 16-bit halves (WGSL has no 64-bit integers).
fn mul_hi_lo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

// Philox4x32-10 (Salmon et al. 2011, Random123's philox4x32_R(10, ctr, key)).
fn philox4x32_10(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = ctr;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k += vec2<u32>(0x9e3779b9u, 0xbb67ae85u);
        }
        let p0 = mul_hi_lo(0xd2511f53u, c.x);
        let p1 = mul_hi_lo(0xcd9e8d57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// The mask factors of block q: scale where kept, 0 where dropped.
fn mask(q: u32) -> vec4<f32> {
    let u = philox4x32_10(vec4<u32>(q, dims.layer, counter.step.x, counter.step.y), counter.key);
    return select(vec4<f32>(0.0), vec4<f32>(dims.scale), u >= vec4<u32>(dims.threshold));
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Block q (linear_groups: q = gid.y * num_workgroups.x * 64 + gid.x) covers 4q .. 4q + 3.
    let q = gid.y * nwg.x * 64u + gid.x;
    if (q >= (dims.n + 3u) / 4u) {
        return;
    }
    let m = mask(q);
    let i = 4u * q;
    for (var k = 0u; k < 4u; k++) {
        if (i + k < dims.n) {
            dst[i + k] = src[i + k] * m[k];
        }
    }
}
