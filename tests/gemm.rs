//! The GPU GEMM kernel alone (`wgpu_rnn::gpu::gemm`) against a naive f64 triple loop, over
//! shapes that straddle the 64×64 output tile and the 16-deep K slice, every layout the
//! strides allow, offsets, padding, bias, accumulation and scaling.
//!
//! Unused memory (the padding of A and B, and every element of C outside the written region)
//! is NaN, so a kernel that reads out of bounds or leaves an element unwritten fails loudly.

mod common;

use rand::{RngExt, SeedableRng};
use wgpu_rnn::Error;
use wgpu_rnn::gpu::{GemmSpec, gemm};

/// Sizes that straddle the tile (64), the K slice (16) and the thread grid (16).
const AWKWARD: [usize; 11] = [1, 2, 3, 15, 16, 17, 63, 64, 65, 127, 257];
/// Sizes whose full cube is run.
const CUBE: [usize; 6] = [1, 17, 64, 65, 127, 257];

/// A GEMM problem: the spec and its host operands.
struct Case {
    spec: GemmSpec,
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Option<Vec<f32>>,
    c: Vec<f32>,
}

fn uniform(n: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..=1.0)).collect()
}

impl Case {
    /// Operands for `spec`, sized to what it spans plus `tail` extra elements each. Elements
    /// the spec addresses are uniform in [-1, 1]; the rest of A and B are NaN, C is NaN
    /// everywhere unless `spec.accumulate` (then uniform in the written region).
    fn new(spec: GemmSpec, with_bias: bool, tail: usize, seed: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let s = &spec;
        let span = |off: usize, rows: usize, cols: usize, rs: usize, cs: usize| {
            if rows == 0 || cols == 0 {
                0
            } else {
                off + (rows - 1) * rs + (cols - 1) * cs + 1
            }
        };
        let mut a = vec![f32::NAN; span(s.a_off, s.m, s.k, s.a_rs, s.a_cs) + tail];
        for i in 0..s.m {
            for p in 0..s.k {
                a[s.a_off + i * s.a_rs + p * s.a_cs] = rng.random_range(-1.0f32..=1.0);
            }
        }
        let mut b = vec![f32::NAN; span(s.b_off, s.k, s.n, s.b_rs, s.b_cs) + tail];
        for p in 0..s.k {
            for j in 0..s.n {
                b[s.b_off + p * s.b_rs + j * s.b_cs] = rng.random_range(-1.0f32..=1.0);
            }
        }
        let mut c = vec![f32::NAN; span(s.c_off, s.m, s.n, s.c_rs, 1) + tail];
        if s.accumulate {
            for i in 0..s.m {
                for j in 0..s.n {
                    c[s.c_off + i * s.c_rs + j] = rng.random_range(-1.0f32..=1.0);
                }
            }
        }
        let bias = with_bias.then(|| uniform(s.n, &mut rng));
        Case {
            spec,
            a,
            b,
            bias,
            c,
        }
    }

    /// Runs the GPU kernel and checks every element of C against the f64 reference.
    #[track_caller]
    fn check(&self) {
        let s = &self.spec;
        let got = gemm(
            &common::gpu(),
            s,
            &self.a,
            &self.b,
            self.bias.as_deref(),
            &self.c,
        )
        .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(got.len(), self.c.len(), "{s:?}: returned length");
        let mut written = vec![false; self.c.len()];
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for i in 0..s.m {
            for j in 0..s.n {
                // Reference in f64, and the sum of magnitudes that bounds the f32 rounding.
                let (mut dot, mut mag) = (0.0f64, 0.0f64);
                for p in 0..s.k {
                    let x = self.a[s.a_off + i * s.a_rs + p * s.a_cs] as f64;
                    let y = self.b[s.b_off + p * s.b_rs + j * s.b_cs] as f64;
                    dot += x * y;
                    mag += (x * y).abs();
                }
                let alpha = s.alpha as f64;
                let mut want = alpha * dot;
                mag *= alpha.abs();
                if let Some(bias) = &self.bias {
                    want += bias[j] as f64;
                    mag += (bias[j] as f64).abs();
                }
                let idx = s.c_off + i * s.c_rs + j;
                if s.accumulate {
                    want += self.c[idx] as f64;
                    mag += (self.c[idx] as f64).abs();
                }
                written[idx] = true;
                let g = got[idx] as f64;
                // γ_{k+3}·Σ|terms|: a rigorous bound for any order of f32 (fused) additions.
                let bound =
                    (s.k as f64 + 3.0) * f32::EPSILON as f64 * mag.max(f32::MIN_POSITIVE as f64);
                assert!(
                    (g - want).abs() <= bound,
                    "{s:?}, bias {}: C({i}, {j}) at flat {idx} = {g}, want {want} (bound {bound:.2e})",
                    self.bias.is_some()
                );
                num += (g - want).powi(2);
                den += want.powi(2);
            }
        }
        let rel = num.sqrt() / den.sqrt().max(1e-30);
        assert!(
            rel <= 1e-5,
            "{s:?}: relative normwise error {rel:.3e} > 1e-5"
        );
        for (idx, (&g, &old)) in got.iter().zip(&self.c).enumerate() {
            if !written[idx] {
                assert!(
                    g.to_bits() == old.to_bits(),
                    "{s:?}: element {idx} outside C(m, n) was changed from {old} to {g}"
                );
            }
        }
    }
}

/// The full cube of `CUBE` sizes, contiguous row-major, no bias, C prefilled with NaN.
#[test]
fn row_major_cube() {
    let mut seed = 0;
    for &m in &CUBE {
        for &n in &CUBE {
            for &k in &CUBE {
                seed += 1;
                Case::new(GemmSpec::row_major(m, n, k), false, 0, seed).check();
            }
        }
    }
}

/// Every m, n, k of `AWKWARD` appears, in a seeded sample of triples (not the full cube),
/// each with one of the four transpose layouts and bias on or off.
#[test]
fn awkward_sample_all_layouts() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let mut triples: Vec<[usize; 3]> = Vec::new();
    // Each size at least once in each role, paired with random partners.
    for (i, &s) in AWKWARD.iter().enumerate() {
        let pick = |rng: &mut rand_chacha::ChaCha8Rng| AWKWARD[rng.random_range(0..AWKWARD.len())];
        triples.push([s, pick(&mut rng), pick(&mut rng)]);
        triples.push([pick(&mut rng), s, pick(&mut rng)]);
        triples.push([pick(&mut rng), pick(&mut rng), s]);
        // And diagonal: all three equal.
        triples.push([AWKWARD[i]; 3]);
    }
    for (case, [m, n, k]) in triples.into_iter().enumerate() {
        let layout = case % 4;
        let mut spec = match layout {
            0 => GemmSpec::row_major(m, n, k),
            1 => GemmSpec::a_bt(m, n, k),
            _ => GemmSpec::row_major(m, n, k),
        };
        if layout >= 2 {
            // A stored transposed, as [k, m].
            spec.a_rs = 1;
            spec.a_cs = m;
        }
        if layout == 3 {
            // And B stored transposed, as [n, k].
            spec.b_rs = 1;
            spec.b_cs = k;
        }
        Case::new(spec, case % 3 == 0, 0, 1000 + case as u64).check();
    }
}

/// `A·Wᵀ` with `W[n, k]` (the projection's layout), around the tile edges.
#[test]
fn transposed_b() {
    for (i, &(m, n, k)) in [
        (1, 1, 1),
        (17, 65, 3),
        (64, 63, 17),
        (65, 127, 64),
        (257, 17, 65),
    ]
    .iter()
    .enumerate()
    {
        Case::new(GemmSpec::a_bt(m, n, k), i % 2 == 0, 0, 2000 + i as u64).check();
    }
}

/// `Aᵀ` stored as `[k, m]` (`a_rs = 1`, `a_cs = m`).
#[test]
fn transposed_a() {
    for (i, &(m, n, k)) in [
        (1, 3, 2),
        (17, 64, 65),
        (65, 17, 127),
        (127, 65, 16),
        (3, 257, 1),
    ]
    .iter()
    .enumerate()
    {
        let spec = GemmSpec {
            a_rs: 1,
            a_cs: m,
            ..GemmSpec::row_major(m, n, k)
        };
        Case::new(spec, i % 2 == 1, 0, 3000 + i as u64).check();
    }
}

/// Offsets into all three operands, row strides larger than the rows (padding is NaN) and a
/// tail after C: everything outside C(m, n) must come back untouched (still NaN).
#[test]
fn offsets_and_padded_strides() {
    for (i, &(m, n, k)) in [
        (1, 1, 1),
        (3, 17, 15),
        (65, 64, 17),
        (17, 65, 64),
        (127, 3, 65),
    ]
    .iter()
    .enumerate()
    {
        let spec = GemmSpec {
            m,
            n,
            k,
            a_off: 5,
            a_rs: k + 3,
            a_cs: 1,
            b_off: 11,
            b_rs: n + 2,
            b_cs: 1,
            c_off: 7,
            c_rs: n + 9,
            alpha: 1.0,
            accumulate: false,
        };
        Case::new(spec, i % 2 == 0, 13, 4000 + i as u64).check();
        // The same with both inputs transposed and column strides > 1.
        let spec_t = GemmSpec {
            a_rs: 1,
            a_cs: m + 4,
            b_rs: 2,
            b_cs: 2 * k + 1,
            ..spec
        };
        Case::new(spec_t, i % 2 == 1, 13, 4100 + i as u64).check();
    }
}

/// `C ← A·B + bias` with C's old values NaN (not read).
#[test]
fn bias() {
    for (i, &(m, n, k)) in [(1, 1, 1), (63, 65, 17), (64, 127, 16), (257, 1, 3)]
        .iter()
        .enumerate()
    {
        Case::new(GemmSpec::row_major(m, n, k), true, 0, 5000 + i as u64).check();
    }
}

/// `C ← A·B (+ bias) + C` with C prefilled with known values, and a NaN margin around it.
#[test]
fn accumulate() {
    for (i, &(m, n, k)) in [(1, 1, 1), (17, 63, 65), (65, 64, 2), (127, 17, 257)]
        .iter()
        .enumerate()
    {
        let spec = GemmSpec {
            accumulate: true,
            c_off: 3,
            c_rs: n + 1,
            ..GemmSpec::row_major(m, n, k)
        };
        Case::new(spec, i % 2 == 0, 5, 6000 + i as u64).check();
    }
}

/// `α ≠ 1` scales the product only (not the bias nor the old C).
#[test]
fn alpha() {
    for (i, &alpha) in [-1.0f32, 0.0, 0.5, 3.25].iter().enumerate() {
        for (j, &(m, n, k)) in [(1, 2, 3), (65, 17, 64)].iter().enumerate() {
            let spec = GemmSpec {
                alpha,
                accumulate: j == 1,
                ..GemmSpec::a_bt(m, n, k)
            };
            Case::new(spec, true, 0, 7000 + (10 * i + j) as u64).check();
        }
    }
    // A hand-checked value: α·(1·3 + 2·4) + bias 0.5 + old C 1 = -11 + 1.5.
    let spec = GemmSpec {
        alpha: -1.0,
        accumulate: true,
        ..GemmSpec::row_major(1, 1, 2)
    };
    let c = gemm(
        &common::gpu(),
        &spec,
        &[1.0, 2.0],
        &[3.0, 4.0],
        Some(&[0.5]),
        &[1.0],
    )
    .unwrap();
    assert_eq!(c, vec![-9.5]);
}

/// `k = 0`: the product is empty, so C is the bias (or zero).
#[test]
fn empty_inner_dimension() {
    let ctx = common::gpu();
    let spec = GemmSpec::row_major(3, 2, 0);
    let c = gemm(&ctx, &spec, &[], &[], Some(&[1.5, -2.0]), &[f32::NAN; 6]).unwrap();
    assert_eq!(c, vec![1.5, -2.0, 1.5, -2.0, 1.5, -2.0]);
    let c = gemm(&ctx, &spec, &[], &[], None, &[f32::NAN; 6]).unwrap();
    assert_eq!(c, vec![0.0; 6]);
}

/// Operands shorter than the spec spans are an `Error::Shape` naming the operand, with the
/// needed and found lengths; nothing panics and nothing runs.
#[test]
fn operands_too_short() {
    let ctx = common::gpu();
    let (m, n, k) = (5, 4, 3);
    let spec = GemmSpec::row_major(m, n, k);
    let a = vec![1.0f32; m * k];
    let b = vec![1.0f32; k * n];
    let c = vec![0.0f32; m * n];
    let bias = vec![0.0f32; n];
    let cases = [
        (
            "a",
            gemm(&ctx, &spec, &a[1..], &b, None, &c),
            m * k,
            m * k - 1,
        ),
        (
            "b",
            gemm(&ctx, &spec, &a, &b[..k * n - 2], None, &c),
            k * n,
            k * n - 2,
        ),
        ("c", gemm(&ctx, &spec, &a, &b, None, &c[..3]), m * n, 3),
        (
            "bias",
            gemm(&ctx, &spec, &a, &b, Some(&bias[1..]), &c),
            n,
            n - 1,
        ),
    ];
    for (name, result, needed, found) in cases {
        let err = result.expect_err(name);
        assert!(
            matches!(&err, Error::Shape { name: got, expected, found: f }
                if got == &format!("gemm operand {name} (elements)") && expected == &[needed] && f == &[found]),
            "{name}: {err:?}"
        );
        common::assert_msg(
            &err,
            &[
                &format!("{name} (elements):"),
                &format!("[{needed}]"),
                &format!("found [{found}]"),
            ],
        );
    }
    // Offsets and strides count: C(m, n) with c_off 2 and c_rs n + 1 spans 2 + 4·5 + 4.
    let spec = GemmSpec {
        c_off: 2,
        c_rs: n + 1,
        ..spec
    };
    let need = 2 + (m - 1) * (n + 1) + n;
    let err = gemm(&ctx, &spec, &a, &b, None, &vec![0.0; need - 1]).unwrap_err();
    assert!(
        matches!(&err, Error::Shape { name, .. } if name == "gemm operand c (elements)"),
        "{err:?}"
    );
    common::assert_msg(&err, &[&format!("[{need}]"), &format!("[{}]", need - 1)]);
    assert_eq!(
        gemm(&ctx, &spec, &a, &b, None, &vec![0.0; need])
            .unwrap()
            .len(),
        need
    );
}

/// An empty C (`m = 0`) is a valid spec (every span is 0) and should give back an empty C.
///
/// Regression (fixed): `GpuContext::read_buffers` panics in `bytemuck::cast_slice` on the zero-byte
/// mapped range (src/gpu/context.rs, the `cast_slice::<u8, f32>(&view)` line).
#[test]
fn empty_output() {
    let ctx = common::gpu();
    let c = gemm(
        &ctx,
        &GemmSpec::row_major(0, 3, 2),
        &[],
        &[0.0; 6],
        None,
        &[],
    )
    .unwrap();
    assert!(c.is_empty());
}
