//! Every WGSL kernel parses and validates with naga (no GPU needed), every shader file in
//! `shaders/` is one of the kernels the crate builds, and every kernel's entry point translates
//! with naga's SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL) back-ends, the code wgpu
//! runs when it builds a pipeline, so the Metal, DX12 and GL paths are exercised without their
//! GPUs.

use std::path::PathBuf;

use wgpu_rnn::gpu::kernels::{Kernel, validate_wgsl};

#[test]
fn every_kernel_validates() {
    for kernel in Kernel::all() {
        let source = kernel.source();
        assert!(!source.trim().is_empty(), "{kernel:?}: empty source");
        let entry = format!("fn {}(", kernel.entry_point());
        assert!(
            source.contains(&entry),
            "{kernel:?}: no `{}` entry point (the pipeline is built with it)",
            kernel.entry_point()
        );
        if let Err(e) = validate_wgsl(&source) {
            panic!("{kernel:?} does not validate:\n{e}");
        }
    }
}

#[test]
fn kernels_are_distinct() {
    let all = Kernel::all();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
            assert!(
                a.source() != b.source()
                    || a.entry_point() != b.entry_point()
                    || a.constants() != b.constants(),
                "{a:?} and {b:?} are the same entry point of the same source with the same constants"
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

/// Every `.wgsl` file under `shaders/` is used: a fixed kernel's whole source (which then
/// validates on its own), or a part (a step core, a cell's epilogue) of a composed one; and
/// every kernel's source comes from those files.
#[test]
fn every_shader_file_is_a_kernel() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("cells")] {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wgsl") {
                files.push(path);
            }
        }
    }
    assert!(
        files.len() > 3,
        "too few .wgsl files under {}",
        root.display()
    );
    files.sort();
    let all = Kernel::all();
    let sources: Vec<String> = all.iter().map(|k| k.source().into_owned()).collect();
    let mut covered = vec![false; all.len()];
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        // A cell's epilogue is composed in parts.
        let parts: Vec<&str> = match path.parent().is_some_and(|p| p.ends_with("cells")) {
            true => wgpu_rnn::gpu::kernels::epilogue_parts(&text).to_vec(),
            false => vec![&text],
        };
        let mut whole = false;
        let mut part = false;
        for (i, source) in sources.iter().enumerate() {
            if *source == text {
                covered[i] = true;
                whole = true;
            } else if parts.iter().all(|p| source.contains(p))
                || (parts.len() == 3
                    && source.contains(parts[0])
                    && (source.contains(parts[1]) || source.contains(parts[2])))
            {
                covered[i] = true;
                part = true;
            }
        }
        assert!(
            whole || part,
            "{} is not the source, nor part of the source, of any kernel",
            path.display()
        );
        if let (true, Err(e)) = (whole, validate_wgsl(&text)) {
            panic!("{} does not validate:\n{e}", path.display());
        }
    }
    for (k, c) in all.iter().zip(covered) {
        assert!(c, "{k:?} has no file under {}", root.display());
    }
}

/// The step kernels bind at most 8 storage buffers (WebGPU's guaranteed minimum per stage),
/// for every cell, and declare no `override` the host does not set.
#[test]
fn step_kernels_fit_webgpu_minimums() {
    for kernel in Kernel::all() {
        let (module, _) = compiled(kernel);
        let storage = module
            .global_variables
            .iter()
            .filter(|(_, v)| {
                v.binding.is_some() && matches!(v.space, naga::AddressSpace::Storage { .. })
            })
            .count();
        assert!(storage <= 8, "{kernel:?} binds {storage} storage buffers");
        let mut declared: Vec<String> = module
            .overrides
            .iter()
            .filter_map(|(_, o)| o.name.clone())
            .collect();
        let mut set: Vec<String> = kernel
            .constants()
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        declared.sort();
        set.sort();
        assert_eq!(
            declared, set,
            "{kernel:?}: overrides declared and set differ"
        );
    }
}

/// A kernel's module as wgpu hands it to a back-end: parsed, validated with the capabilities of
/// a device opened with no features (what the engine requests), and specialised to the kernel's
/// entry point by `process_overrides` (which wgpu-hal runs before every back-end).
fn compiled(kernel: Kernel) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = kernel.source();
    let source = &*source;
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{kernel:?}: {}", e.emit_to_string(source)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{kernel:?}: {}", e.emit_to_string(source)));
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, kernel.entry_point())),
        &kernel
            .constants()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
    .unwrap_or_else(|e| panic!("{kernel:?}: process_overrides: {e}"));
    (module.into_owned(), info.into_owned())
}

/// The module's resource bindings (group, binding), with whether each is writable storage.
fn bindings(module: &naga::Module) -> Vec<(naga::ResourceBinding, bool)> {
    module
        .global_variables
        .iter()
        .filter_map(|(_, var)| {
            let writable = matches!(
                var.space,
                naga::AddressSpace::Storage { access }
                    if access.contains(naga::StorageAccess::STORE)
            );
            var.binding.map(|b| (b, writable))
        })
        .collect()
}

/// wgpu's runtime checks (on by default): out-of-range indices are clamped.
fn restrict() -> naga::proc::BoundsCheckPolicies {
    use naga::proc::BoundsCheckPolicy::{Restrict, Unchecked};
    naga::proc::BoundsCheckPolicies {
        index: Restrict,
        buffer: Restrict,
        image_load: Restrict,
        binding_array: Unchecked,
    }
}

/// SPIR-V for Vulkan, at `lang_version`, with explicit bindings as wgpu's Vulkan back-end.
fn to_spirv(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    lang_version: (u8, u8),
) -> Result<usize, String> {
    use naga::back::spv;
    let options = spv::Options {
        lang_version,
        flags: spv::WriterFlags::empty(),
        fake_missing_bindings: false,
        binding_map: bindings(module)
            .into_iter()
            .map(|(b, _)| {
                let target = spv::BindingInfo {
                    descriptor_set: b.group,
                    binding: b.binding,
                    binding_array_size: None,
                };
                (b, target)
            })
            .collect(),
        bounds_check_policies: restrict(),
        ..spv::Options::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    let words =
        spv::write_vec(module, info, &options, Some(&pipeline)).map_err(|e| e.to_string())?;
    match words.first() {
        Some(&0x0723_0203) => Ok(words.len() * 4),
        _ => Err("output does not start with the SPIR-V magic number".into()),
    }
}

/// MSL at `lang_version`, with a buffer slot per binding and a sizes buffer, as wgpu's Metal
/// back-end (which does not fake missing bindings).
fn to_msl(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    lang_version: (u8, u8),
) -> Result<usize, String> {
    use naga::back::msl;
    let resources: msl::BindingMap = bindings(module)
        .into_iter()
        .enumerate()
        .map(|(slot, (b, mutable))| {
            let target = msl::BindTarget {
                buffer: Some(slot as u8),
                mutable,
                ..msl::BindTarget::default()
            };
            (b, target)
        })
        .collect();
    let sizes_buffer = Some(resources.len() as u8);
    let options = msl::Options {
        lang_version,
        per_entry_point_map: msl::EntryPointResourceMap::from([(
            entry.to_string(),
            msl::EntryPointResources {
                resources,
                immediates_buffer: None,
                sizes_buffer,
            },
        )]),
        fake_missing_bindings: false,
        bounds_check_policies: restrict(),
        ..msl::Options::default()
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
        ..msl::PipelineOptions::default()
    };
    let (text, translation) =
        msl::write_string(module, info, &options, &pipeline).map_err(|e| e.to_string())?;
    // An entry point the writer skips (a missing binding, say) is reported here, not as an Err.
    for name in translation.entry_point_names {
        name.map_err(|e| e.to_string())?;
    }
    Ok(text.len())
}

/// HLSL for `shader_model`, with explicit registers (space = group, register = binding) as
/// wgpu's DX12 back-end (which does not fake missing bindings).
fn to_hlsl(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    shader_model: naga::back::hlsl::ShaderModel,
) -> Result<usize, String> {
    use naga::back::hlsl;
    let options = hlsl::Options {
        shader_model,
        binding_map: bindings(module)
            .into_iter()
            .map(|(b, _)| {
                let target = hlsl::BindTarget {
                    space: b.group as u8,
                    register: b.binding,
                    binding_array_size: None,
                    dynamic_storage_buffer_offsets_index: None,
                    restrict_indexing: false,
                };
                (b, target)
            })
            .collect(),
        fake_missing_bindings: false,
        restrict_indexing: true,
        ..hlsl::Options::default()
    };
    let pipeline = hlsl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
    };
    let mut text = String::new();
    let reflection = hlsl::Writer::new(&mut text, &options, &pipeline)
        .write(module, info, None)
        .map_err(|e| e.to_string())?;
    for name in reflection.entry_point_names {
        name.map_err(|e| e.to_string())?;
    }
    Ok(text.len())
}

/// GLSL (`version`) for wgpu's GL back-end: one entry point per translation, bound per binding.
fn to_glsl(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    version: naga::back::glsl::Version,
) -> Result<usize, String> {
    use naga::back::glsl;
    let options = glsl::Options {
        version,
        writer_flags: glsl::WriterFlags::empty(),
        binding_map: bindings(module)
            .into_iter()
            .map(|(b, _)| (b, b.binding as u8))
            .collect(),
        zero_initialize_workgroup_memory: true,
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let mut text = String::new();
    // wgpu's GL back-end leaves buffer and index bounds to GL.
    let policies = naga::proc::BoundsCheckPolicies::default();
    glsl::Writer::new(&mut text, module, info, &options, &pipeline, policies)
        .and_then(|mut w| w.write())
        .map_err(|e| e.to_string())?;
    Ok(text.len())
}

type Translate = fn(&naga::Module, &naga::valid::ModuleInfo, &str) -> Result<usize, String>;

/// Each back-end wgpu can ship with, at two of the targets wgpu-hal picks for it: SPIR-V for
/// Vulkan 1.0 and 1.3+, MSL 2.0 (macOS 10.13) and 4.0 (macOS 26), HLSL for FXC (shader model
/// 5.1) and DXC's lowest (6.0), GLSL ES 3.10 and desktop 4.30 (the first versions with compute).
const BACKENDS: [(&str, Translate); 8] = [
    ("SPIR-V 1.0 (Vulkan 1.0)", |m, i, e| {
        to_spirv(m, i, e, (1, 0))
    }),
    ("SPIR-V 1.6 (Vulkan 1.3)", |m, i, e| {
        to_spirv(m, i, e, (1, 6))
    }),
    ("MSL 2.0", |m, i, e| to_msl(m, i, e, (2, 0))),
    ("MSL 4.0", |m, i, e| to_msl(m, i, e, (4, 0))),
    ("HLSL SM 5.1 (FXC)", |m, i, e| {
        to_hlsl(m, i, e, naga::back::hlsl::ShaderModel::V5_1)
    }),
    ("HLSL SM 6.0 (DXC)", |m, i, e| {
        to_hlsl(m, i, e, naga::back::hlsl::ShaderModel::V6_0)
    }),
    ("GLSL ES 3.10", |m, i, e| {
        to_glsl(m, i, e, naga::back::glsl::Version::new_gles(310))
    }),
    ("GLSL 4.30 core", |m, i, e| {
        to_glsl(m, i, e, naga::back::glsl::Version::Desktop(430))
    }),
];

/// Every kernel's entry point translates with every back-end; all failures are listed, each
/// naming the kernel, the back-end and naga's error.
#[test]
fn every_kernel_translates_with_every_backend() {
    let mut failures = Vec::new();
    for kernel in Kernel::all() {
        let (module, info) = compiled(kernel);
        for (backend, translate) in BACKENDS {
            match translate(&module, &info, kernel.entry_point()) {
                Ok(0) => failures.push(format!("{kernel:?} on {backend}: empty output")),
                Ok(_) => {}
                Err(e) => failures.push(format!("{kernel:?} on {backend}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} translation(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The translations are not vacuous: every back-end refuses an entry point the module lacks.
#[test]
fn backends_reject_a_missing_entry_point() {
    let (module, info) = compiled(Kernel::Gemm);
    for (backend, translate) in BACKENDS {
        assert!(
            translate(&module, &info, "no_such_entry").is_err(),
            "{backend} translated an entry point that does not exist"
        );
    }
}

/// The step kernels' workgroup size is bounded by the staging tile; any allowed size composes,
/// validates and translates (the variants a per-adapter rule may pick).
#[test]
fn step_tunables_are_bounded_and_every_size_compiles() {
    use wgpu_rnn::Cell;
    use wgpu_rnn::gpu::kernels::{STEP_MAX_WG, StepTunables};
    assert!(StepTunables::new(0).is_err());
    assert!(StepTunables::new(STEP_MAX_WG + 1).is_err());
    for wg in [1, 32, STEP_MAX_WG] {
        let tune = StepTunables::new(wg).unwrap();
        for kernel in [
            Kernel::Step(Cell::Lstm, tune),
            Kernel::StepBwd(Cell::Gru, tune),
        ] {
            let (module, info) = compiled(kernel);
            for (backend, translate) in BACKENDS {
                translate(&module, &info, kernel.entry_point())
                    .unwrap_or_else(|e| panic!("{kernel:?} on {backend}: {e}"));
            }
        }
    }
}
