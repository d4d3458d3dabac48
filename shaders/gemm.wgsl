// Tiled GEMM: C(m, n) = alpha * sum_k A(m, k) * B(k, n) [+ bias(n)] [+ C(m, n)]
//
// A, B and C are addressed through offsets and strides, so one kernel serves every transpose:
// A(m, k) = a[a_off + m * a_rs + k * a_cs], B(k, n) = b[b_off + k * b_rs + n * b_cs],
// C(m, n) = c[c_off + m * c_rs + n].
//
// Each workgroup computes a 64x64 tile of C with 16x16 threads, each thread a 4x4 register
// block (rows ly + 16 i, columns lx + 16 j, so that neighbouring threads touch neighbouring
// columns). K is walked in slices of 16 staged in workgroup memory.
// When FLAG_ACCUMULATE is clear, C is written without being read (so NaN-filled outputs are
// fully overwritten).

struct Params {
    m: u32, n: u32, k: u32, flags: u32,
    a_off: u32, a_rs: u32, a_cs: u32, _pad0: u32,
    b_off: u32, b_rs: u32, b_cs: u32, _pad1: u32,
    c_off: u32, c_rs: u32, alpha: f32, _pad2: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;          // A(m, k), strided
@group(0) @binding(2) var<storage, read> b: array<f32>;          // B(k, n), strided
@group(0) @binding(3) var<storage, read> bias: array<f32>;       // [N], read when FLAG_BIAS
@group(0) @binding(4) var<storage, read_write> c: array<f32>;    // C(m, n), row stride c_rs

var<workgroup> a_tile: array<f32, 1024>; // [TK][TM]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    // Row i of the thread's 4x4 block in acc_i (columns lx + 16 j in the lanes); plain
    // vectors rather than arrays so that no compiler spills them to memory.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Walk memory in the direction of unit stride when loading, so that neighbouring
    // threads read neighbouring addresses.
    let a_k_fast = u.a_cs == 1u;
    let b_k_fast = u.b_rs == 1u && u.b_cs != 1u;
    for (var k0 = 0u; k0 < u.k; k0 += TK) {
        for (var e = li; e < TM * TK; e += 256u) {
            var mm: u32;
            var kk: u32;
            if (a_k_fast) {
                mm = e / TK;
                kk = e % TK;
            } else {
                mm = e % TM;
                kk = e / TM;
            }
            let gm = row0 + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gm < u.m && gk < u.k) {
                v = a[u.a_off + gm * u.a_rs + gk * u.a_cs];
            }
            a_tile[kk * TM + mm] = v;
        }
        for (var e = li; e < TN * TK; e += 256u) {
            var nn: u32;
            var kk: u32;
            if (b_k_fast) {
                nn = e / TK;
                kk = e % TK;
            } else {
                nn = e % TN;
                kk = e / TN;
            }
            let gn = col0 + nn;
            let gk = k0 + kk;
            var v = 0.0;
            if (gn < u.n && gk < u.k) {
                v = b[u.b_off + gk * u.b_rs + gn * u.b_cs];
            }
            b_tile[kk * TN + nn] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ab = kk * TM + lid.y;
            let bb = kk * TN + lid.x;
            let bv = vec4<f32>(b_tile[bb], b_tile[bb + 16u], b_tile[bb + 32u], b_tile[bb + 48u]);
            acc0 = fma(vec4<f32>(a_tile[ab]), bv, acc0);
            acc1 = fma(vec4<f32>(a_tile[ab + 16u]), bv, acc1);
            acc2 = fma(vec4<f32>(a_tile[ab + 32u]), bv, acc2);
            acc3 = fma(vec4<f32>(a_tile[ab + 48u]), bv, acc3);
        }
        workgroupBarrier();
    }
    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let gm = row0 + lid.y + 16u * i;
        if (gm >= u.m) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let gn = col0 + lid.x + 16u * j;
            if (gn >= u.n) {
                continue;
            }
            let idx = u.c_off + gm * u.c_rs + gn;
            var v = u.alpha * rows[i][j];
            if ((u.flags & FLAG_BIAS) != 0u) {
                v += bias[gn];
            }
            if ((u.flags & FLAG_ACCUMULATE) != 0u) {
                v += c[idx];
            }
            c[idx] = v;
        }
    }
}
