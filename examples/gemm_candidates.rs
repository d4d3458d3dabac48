//! Issue 13's first measurement: the GEMM crates a fast CPU path could use, on the shapes the
//! benchmark suite's cases put through a CPU pass.
//!
//!     MATMUL_NUM_THREADS=1 cargo run --release --features gemm-candidates --example gemm_candidates
//!     MATMUL_NUM_THREADS=2 cargo run --release --features gemm-candidates --example gemm_candidates
//!
//! For each case of `benches/suite.json` (layer 0, one direction) three products, each
//! `C[m, n] = A[m, k]·B[k, n]` with the strides the CPU path uses:
//! - `step`: the recurrent product of one step, `h_prev [B, R] × W_hhᵀ` → `[B, G·H]`;
//! - `hoisted`: the input projection of all steps, `X [T·B, I] × W_ihᵀ` → `[T·B, G·H]`;
//! - `grad_w`: the recurrent weights' gradient, `δᵀ [G·H, T·B] × H_prev [T·B, R]` → `[G·H, R]`.
//!
//! Candidates: `matrixmultiply` 0.3 (`sgemm`, with its `threading` feature: as many threads as
//! `MATMUL_NUM_THREADS`), and `gemm` 0.19 single-threaded and with rayon on 2 threads
//! (`Parallelism::Rayon(2)`), its kernels chosen at run time (AVX-512 with `x86-v4` when the
//! CPU has it, else AVX2 + FMA). Each time is the median of enough repetitions to fill about
//! 0.2 s; GFLOP/s is `2·m·n·k` over it. Results are checked against each other. Last, the
//! time of the scalar activations over `mid`'s 819,200 pre-activations.

// A GEMM's operands are its arguments: sizes, three matrices and their strides.
#![allow(clippy::too_many_arguments)]

use std::time::Instant;

use wgpu_rnn::suite::Suite;

type Gemm = fn(usize, usize, usize, &[f32], [isize; 2], &[f32], [isize; 2], &mut [f32]);

/// `C = A·B` through matrixmultiply (`[row stride, column stride]` of A and B; C row-major).
fn mm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: [isize; 2],
    b: &[f32],
    sb: [isize; 2],
    c: &mut [f32],
) {
    // SAFETY: the slices hold every element the strides reach (checked by `operands`).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            sa[0],
            sa[1],
            b.as_ptr(),
            sb[0],
            sb[1],
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

fn gemm_with(
    par: gemm::Parallelism,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: [isize; 2],
    b: &[f32],
    sb: [isize; 2],
    c: &mut [f32],
) {
    // SAFETY: as `mm`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            sa[1],
            sa[0],
            b.as_ptr(),
            sb[1],
            sb[0],
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

fn gemm1(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: [isize; 2],
    b: &[f32],
    sb: [isize; 2],
    c: &mut [f32],
) {
    gemm_with(gemm::Parallelism::None, m, k, n, a, sa, b, sb, c);
}

fn gemm2(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: [isize; 2],
    b: &[f32],
    sb: [isize; 2],
    c: &mut [f32],
) {
    gemm_with(gemm::Parallelism::Rayon(2), m, k, n, a, sa, b, sb, c);
}

/// Median milliseconds of `f` over repetitions filling about 0.2 s (at least 5).
fn time_ms(mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64();
    let reps = ((0.2 / once.max(1e-7)) as usize).clamp(5, 20_000);
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let threads = std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "(unset)".into());
    println!(
        "CPU: avx2 {}, fma {}, avx512f {}; MATMUL_NUM_THREADS={threads}; gemm built with x86-v4",
        is_x86_feature_detected!("avx2"),
        is_x86_feature_detected!("fma"),
        is_x86_feature_detected!("avx512f"),
    );
    let candidates: [(&str, Gemm); 3] = [
        ("matrixmultiply", mm),
        ("gemm 1 thread", gemm1),
        ("gemm rayon 2", gemm2),
    ];
    println!(
        "{:<11} {:<8} {:>6} {:>6} {:>6} | {}",
        "case",
        "product",
        "m",
        "k",
        "n",
        candidates
            .iter()
            .map(|(n, _)| format!("{n:>16} ms  GF/s"))
            .collect::<Vec<_>>()
            .join(" |")
    );
    for case in Suite::builtin().cases.iter().filter(|c| !c.gpu_only) {
        let g = match case.cell.as_str() {
            "lstm" => 4,
            "gru" => 3,
            _ => 1,
        };
        let (t, b, i, h) = (case.t, case.b, case.i, case.h);
        let gh = g * h;
        // (name, m, k, n, A's strides, B's strides), A and B as the CPU path lays them out.
        let products = [
            ("step", b, h, gh, [h as isize, 1], [1, h as isize]),
            ("hoisted", t * b, i, gh, [i as isize, 1], [1, i as isize]),
            ("grad_w", gh, t * b, h, [1, gh as isize], [h as isize, 1]),
        ];
        for (name, m, k, n, sa, sb) in products {
            let a: Vec<f32> = (0..m * k)
                .map(|x| ((x * 7 % 13) as f32 - 6.0) / 13.0)
                .collect();
            let bm: Vec<f32> = (0..k * n)
                .map(|x| ((x * 5 % 11) as f32 - 5.0) / 11.0)
                .collect();
            let mut reference = vec![0.0f32; m * n];
            mm(m, k, n, &a, sa, &bm, sb, &mut reference);
            let flops = 2.0 * (m * n * k) as f64;
            let mut cells = Vec::new();
            for (_, f) in candidates {
                let mut c = vec![0.0f32; m * n];
                let ms = time_ms(|| f(m, k, n, &a, sa, &bm, sb, &mut c));
                let err = c
                    .iter()
                    .zip(&reference)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    err < 1e-3 * k as f32,
                    "{}: {name}: results differ by {err}",
                    case.name
                );
                cells.push(format!("{ms:>19.4} {:>5.1}", flops / ms / 1e6));
            }
            println!(
                "{:<11} {:<8} {:>6} {:>6} {:>6} | {}",
                case.name,
                name,
                m,
                k,
                n,
                cells.join(" |")
            );
        }
    }
    // The pointwise part of `mid`'s forward: T·B·H = 819,200 activations.
    let n = 100 * 32 * 256;
    let x: Vec<f32> = (0..n)
        .map(|v| ((v % 1000) as f32 - 500.0) / 200.0)
        .collect();
    let mut y = vec![0.0f32; n];
    let tanh = time_ms(|| y.iter_mut().zip(&x).for_each(|(o, &v)| *o = v.tanh()));
    let sigmoid = time_ms(|| {
        y.iter_mut()
            .zip(&x)
            .for_each(|(o, &v)| *o = 1.0 / (1.0 + (-v).exp()))
    });
    println!(
        "pointwise, {n} values (mid's forward): f32::tanh {tanh:.2} ms, 1/(1 + exp(-x)) \
         {sigmoid:.2} ms"
    );
}
