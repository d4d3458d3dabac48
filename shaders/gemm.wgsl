// Tiled GEMM: C(m, n) = alpha * sum_k A(m, k) * B(k, n) [+ bias(n)] [+ C(m, n)]
//
// A, B and C are addressed through offsets and strides, so one kernel serves every transpose:
// A(m, k) = a[a_off + m * a_rs + k * a_cs], B(k, n) = b[b_off + k * b_rs + n * b_cs],
// C(m, n) = c[c_off + m * c_rs + n].
//
// Each workgroup computes a 64x64 tile of C with 8x8 threads, each thread an 8x8 register
// block: rows 4 ty + i and 32 + 4 ty + i, columns 4 tx + j and 32 + 4 tx + j (i, j < 4), so
// that a thread's operands are two vec4 loads of A and two of B per step of k, each used 8
// times from registers. K is walked in slices of 16 staged in workgroup memory.
// When FLAG_ACCUMULATE is clear, C is written without being read (so NaN-filled outputs are
// fully overwritten).
//
// Loop budget (src/gpu/kernels.rs, `budget::gemm`): an invocation walks at most k_split rows
// of the reduction. Longer reductions are split: workgroup z = s sums the rows
// [s * k_split, (s + 1) * k_split) into its own slice of C (c_off + s * c_split), and
// `sum_splits` adds the slices in the order s = 0, 1, ... (no atomics: deterministic). The host
// also splits a short reduction when the output has too few tiles to fill a real GPU.

struct Params {
    m: u32, n: u32, k: u32, flags: u32,
    a_off: u32, a_rs: u32, a_cs: u32, k_split: u32, // k_split: rows of K per workgroup z
    b_off: u32, b_rs: u32, b_cs: u32, c_split: u32, // c_split: offset of split z's C from z - 1
    c_off: u32, c_rs: u32, alpha: f32, _pad2: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
const THREADS: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;          // A(m, k), strided
@group(0) @binding(2) var<storage, read> b: array<f32>;          // B(k, n), strided
@group(0) @binding(3) var<storage, read> bias: array<f32>;       // [N], read when FLAG_BIAS
@group(0) @binding(4) var<storage, read_write> c: array<f32>;    // C(m, n), row stride c_rs

var<workgroup> a_tile: array<vec4<f32>, 256>; // [TK][TM / 4]
var<workgroup> b_tile: array<vec4<f32>, 256>; // [TK][TN / 4]

@compute @workgroup_size(8, 8, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let k_lo = wid.z * u.k_split;
    let k_hi = min(u.k, k_lo + u.k_split);
    // acc<i>a / acc<i>b: row i of the thread's block (4 ty + i, or 32 + 4 ty + i - 4 for
    // i >= 4), columns 4 tx .. 4 tx + 3 and 32 + 4 tx .. 32 + 4 tx + 3 in the lanes. Plain
    // vectors rather than arrays so that no compiler spills them to memory.
    var acc0a = vec4<f32>(0.0);
    var acc0b = vec4<f32>(0.0);
    var acc1a = vec4<f32>(0.0);
    var acc1b = vec4<f32>(0.0);
    var acc2a = vec4<f32>(0.0);
    var acc2b = vec4<f32>(0.0);
    var acc3a = vec4<f32>(0.0);
    var acc3b = vec4<f32>(0.0);
    var acc4a = vec4<f32>(0.0);
    var acc4b = vec4<f32>(0.0);
    var acc5a = vec4<f32>(0.0);
    var acc5b = vec4<f32>(0.0);
    var acc6a = vec4<f32>(0.0);
    var acc6b = vec4<f32>(0.0);
    var acc7a = vec4<f32>(0.0);
    var acc7b = vec4<f32>(0.0);
    // Walk memory in the direction of unit stride when loading, so that neighbouring
    // threads read neighbouring addresses.
    let a_k_fast = u.a_cs == 1u;
    let b_k_fast = u.b_rs == 1u && u.b_cs != 1u;
    for (var k0 = k_lo; k0 < k_hi; k0 += TK) {
        // One vec4 slot (4 consecutive rows of one k) per iteration; the slot order follows
        // A's unit stride so that neighbouring threads read neighbouring addresses.
        for (var e = li; e < TM * TK / 4u; e += THREADS) {
            var m4: u32;
            var kk: u32;
            if (a_k_fast) {
                m4 = e / TK;
                kk = e % TK;
            } else {
                m4 = e % (TM / 4u);
                kk = e / (TM / 4u);
            }
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gk < k_hi) {
                for (var i = 0u; i < 4u; i++) {
                    let gm = row0 + 4u * m4 + i;
                    if (gm < u.m) {
                        v[i] = a[u.a_off + gm * u.a_rs + gk * u.a_cs];
                    }
                }
            }
            a_tile[kk * (TM / 4u) + m4] = v;
        }
        for (var e = li; e < TN * TK / 4u; e += THREADS) {
            var n4: u32;
            var kk: u32;
            if (b_k_fast) {
                n4 = e / TK;
                kk = e % TK;
            } else {
                n4 = e % (TN / 4u);
                kk = e / (TN / 4u);
            }
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gk < k_hi) {
                for (var j = 0u; j < 4u; j++) {
                    let gn = col0 + 4u * n4 + j;
                    if (gn < u.n) {
                        v[j] = b[u.b_off + gk * u.b_rs + gn * u.b_cs];
                    }
                }
            }
            b_tile[kk * (TN / 4u) + n4] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a_lo = a_tile[kk * 16u + lid.y];
            let a_hi = a_tile[kk * 16u + 8u + lid.y];
            let b_lo = b_tile[kk * 16u + lid.x];
            let b_hi = b_tile[kk * 16u + 8u + lid.x];
            acc0a = fma(vec4<f32>(a_lo.x), b_lo, acc0a);
            acc0b = fma(vec4<f32>(a_lo.x), b_hi, acc0b);
            acc1a = fma(vec4<f32>(a_lo.y), b_lo, acc1a);
            acc1b = fma(vec4<f32>(a_lo.y), b_hi, acc1b);
            acc2a = fma(vec4<f32>(a_lo.z), b_lo, acc2a);
            acc2b = fma(vec4<f32>(a_lo.z), b_hi, acc2b);
            acc3a = fma(vec4<f32>(a_lo.w), b_lo, acc3a);
            acc3b = fma(vec4<f32>(a_lo.w), b_hi, acc3b);
            acc4a = fma(vec4<f32>(a_hi.x), b_lo, acc4a);
            acc4b = fma(vec4<f32>(a_hi.x), b_hi, acc4b);
            acc5a = fma(vec4<f32>(a_hi.y), b_lo, acc5a);
            acc5b = fma(vec4<f32>(a_hi.y), b_hi, acc5b);
            acc6a = fma(vec4<f32>(a_hi.z), b_lo, acc6a);
            acc6b = fma(vec4<f32>(a_hi.z), b_hi, acc6b);
            acc7a = fma(vec4<f32>(a_hi.w), b_lo, acc7a);
            acc7b = fma(vec4<f32>(a_hi.w), b_hi, acc7b);
        }
        workgroupBarrier();
    }
    let c_base = u.c_off + wid.z * u.c_split;
    store_row(c_base, row0 + 4u * lid.y + 0u, col0 + 4u * lid.x, acc0a, acc0b);
    store_row(c_base, row0 + 4u * lid.y + 1u, col0 + 4u * lid.x, acc1a, acc1b);
    store_row(c_base, row0 + 4u * lid.y + 2u, col0 + 4u * lid.x, acc2a, acc2b);
    store_row(c_base, row0 + 4u * lid.y + 3u, col0 + 4u * lid.x, acc3a, acc3b);
    store_row(c_base, row0 + 32u + 4u * lid.y + 0u, col0 + 4u * lid.x, acc4a, acc4b);
    store_row(c_base, row0 + 32u + 4u * lid.y + 1u, col0 + 4u * lid.x, acc5a, acc5b);
    store_row(c_base, row0 + 32u + 4u * lid.y + 2u, col0 + 4u * lid.x, acc6a, acc6b);
    store_row(c_base, row0 + 32u + 4u * lid.y + 3u, col0 + 4u * lid.x, acc7a, acc7b);
}

// Writes row gm of the thread's block (of the C at c_base): columns gn0 .. gn0 + 3 from lo, gn0 + 32 .. gn0 + 35
// from hi. Called once per row with named accumulators (no indexing of a local array, which
// some compilers, lavapipe's among them, turn into per-lane memory traffic).
fn store_row(c_base: u32, gm: u32, gn0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (gm >= u.m) {
        return;
    }
    let base = c_base + gm * u.c_rs;
    for (var j = 0u; j < 4u; j++) {
        store_one(base, gn0 + j, lo[j]);
        store_one(base, gn0 + 32u + j, hi[j]);
    }
}

fn store_one(base: u32, gn: u32, acc: f32) {
    if (gn >= u.n) {
        return;
    }
    var v = u.alpha * acc;
    if ((u.flags & FLAG_BIAS) != 0u) {
        v += bias[gn];
    }
    if ((u.flags & FLAG_ACCUMULATE) != 0u) {
        v += c[base + gn];
    }
    c[base + gn] = v;
}

// The second pass of a split reduction: C(m, n) = alpha * sum_{s < k} A(s, m, n) (+ bias(n))
// (+ C(m, n)), the splits added in order, with A(s, m, n) = a[a_off + s * a_cs + m * a_rs + n]
// (the partial products written by `main` with c_split = a_cs, c_rs = a_rs). One thread per
// element of C; `k` (the number of splits) is at most `budget::GEMM_MAX_SPLITS`.
@compute @workgroup_size(64, 1, 1)
fn sum_splits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if (i >= u.m * u.n) {
        return;
    }
    let gm = i / u.n;
    let gn = i % u.n;
    let at = u.a_off + gm * u.a_rs + gn;
    var acc = 0.0;
    for (var s = 0u; s < u.k; s++) {
        acc += a[at + s * u.a_cs];
    }
    store_one(u.c_off + gm * u.c_rs, gn, acc);
}
