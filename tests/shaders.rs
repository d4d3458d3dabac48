//! Every WGSL kernel parses and validates with naga (no GPU needed), and every shader file in
//! `shaders/` is one of the kernels the crate builds.

use std::path::PathBuf;

use wgpu_rnn::gpu::kernels::{Kernel, validate_wgsl};

#[test]
fn every_kernel_validates() {
    for kernel in Kernel::ALL {
        let source = kernel.source();
        assert!(!source.trim().is_empty(), "{kernel:?}: empty source");
        let entry = format!("fn {}(", kernel.entry_point());
        assert!(
            source.contains(&entry),
            "{kernel:?}: no `{}` entry point (the pipeline is built with it)",
            kernel.entry_point()
        );
        if let Err(e) = validate_wgsl(source) {
            panic!("{kernel:?} does not validate:\n{e}");
        }
    }
}

#[test]
fn kernels_are_distinct() {
    for (i, a) in Kernel::ALL.iter().enumerate() {
        for b in &Kernel::ALL[i + 1..] {
            assert_ne!(a, b);
            assert!(
                a.source() != b.source() || a.entry_point() != b.entry_point(),
                "{a:?} and {b:?} are the same entry point of the same source"
            );
        }
    }
}

/// The validator is not a no-op: a type error and a syntax error are reported with a message.
#[test]
fn validator_rejects_broken_wgsl() {
    let syntax = "@compute @workgroup_size(1) fn main( {";
    assert!(validate_wgsl(syntax).is_err(), "syntax error accepted");
    let types = "@group(0) @binding(0) var<storage, read_write> c: array<f32>;\n\
                 @compute @workgroup_size(1) fn main() { c[0] = 1u; }";
    let err = validate_wgsl(types).expect_err("type error accepted");
    assert!(!err.is_empty());
    // And a tweak of a real kernel: an undeclared identifier.
    let broken = Kernel::Gemm.source().replacen("u.alpha", "u.alpha_typo", 1);
    assert!(validate_wgsl(&broken).is_err(), "undeclared field accepted");
}

#[test]
fn every_shader_file_is_a_kernel() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            files.push(path);
        }
    }
    assert!(!files.is_empty(), "no .wgsl files in {}", dir.display());
    files.sort();
    let mut covered = vec![false; Kernel::ALL.len()];
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let mut any = false;
        for (i, k) in Kernel::ALL.iter().enumerate() {
            if k.source() == text {
                covered[i] = true;
                any = true;
            }
        }
        match any {
            true => {}
            false => panic!(
                "{} is not the source of any Kernel (Kernel::ALL = {:?})",
                path.display(),
                Kernel::ALL
            ),
        }
        // Each file also validates on its own (no reliance on concatenation).
        if let Err(e) = validate_wgsl(&text) {
            panic!("{} does not validate:\n{e}", path.display());
        }
    }
    for (k, c) in Kernel::ALL.iter().zip(covered) {
        assert!(c, "{k:?} has no file in {}", dir.display());
    }
}
