//! PyTorch's own numbers: the golden cases in tests/golden (made by PyTorch in float64).

mod common;

use std::path::PathBuf;

use wgpu_rnn::{Device, Rnn, RnnParams, TensorFile};

use common::{ELMAN, golden};

fn check_forward(device: &Device) {
    for name in ELMAN {
        let params = RnnParams::load(golden(name, "model")).unwrap();
        let case = TensorFile::read(golden(name, "case")).unwrap();
        let t = |n: &str| {
            case.tensors
                .get(n)
                .unwrap_or_else(|| panic!("{name}: no {n}"))
        };
        let mut rnn = Rnn::new(params, device).unwrap();
        let out = rnn.forward(t("input"), case.tensors.get("h0")).unwrap();
        let what = format!("{name} on {}", device.describe());
        common::assert_close(&format!("{what}: output"), &out.output, t("output"), 2e-5);
        common::assert_close(&format!("{what}: h_n"), &out.h_n, t("h_n"), 2e-5);
    }
}

#[test]
fn golden_forward_cpu() {
    check_forward(&Device::Cpu);
}

#[test]
fn golden_forward_gpu() {
    check_forward(&Device::Gpu(common::gpu()));
}

#[test]
fn golden_models_infer_their_config() {
    let index: String = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/index.json"),
    )
    .unwrap();
    for name in ELMAN {
        let p = RnnParams::load(golden(name, "model")).unwrap();
        let c = p.config();
        // index.json is flat, one object per case; find this case's block.
        let block = index.split(&format!("\"{name}\"")).nth(1).unwrap();
        let block = &block[..block.find('}').unwrap()];
        let field = |k: &str| {
            let rest = block.split(&format!("\"{k}\": \"")).nth(1).unwrap();
            rest[..rest.find('"').unwrap()].to_string()
        };
        assert_eq!(c.input_size.to_string(), field("input_size"), "{name}");
        assert_eq!(c.hidden_size.to_string(), field("hidden_size"), "{name}");
        assert_eq!(c.num_layers.to_string(), field("num_layers"), "{name}");
        assert_eq!(
            c.bidirectional.to_string(),
            field("bidirectional"),
            "{name}"
        );
        assert_eq!(c.bias.to_string(), field("bias"), "{name}");
        assert_eq!(c.cell.nonlinearity(), field("nonlinearity"), "{name}");
    }
}

/// The backward contract: gradients of `Σ output·grad_output + Σ h_n·grad_h_n`.
fn check_backward(device: &Device) {
    for name in ELMAN {
        let params = RnnParams::load(golden(name, "model")).unwrap();
        let names = params.to_tensor_file();
        let case = TensorFile::read(golden(name, "case")).unwrap();
        let t = |n: &str| {
            case.tensors
                .get(n)
                .unwrap_or_else(|| panic!("{name}: no {n}"))
        };
        let mut rnn = Rnn::new(params, device).unwrap();
        let out = rnn.forward(t("input"), case.tensors.get("h0")).unwrap();
        let g = rnn
            .backward(t("grad_output"), case.tensors.get("grad_h_n"))
            .unwrap();
        let what = format!("{name} on {}", device.describe());
        common::assert_close(&format!("{what}: output"), &out.output, t("output"), 2e-5);
        common::assert_close(
            &format!("{what}: grad.input"),
            &g.input,
            t("grad.input"),
            2e-4,
        );
        common::assert_close(&format!("{what}: grad.h0"), &g.h0, t("grad.h0"), 2e-4);
        let gp = g.params.to_tensor_file();
        for pname in names.tensors.keys() {
            common::assert_close(
                &format!("{what}: grad.{pname}"),
                &gp.tensors[pname],
                t(&format!("grad.{pname}")),
                2e-4,
            );
        }
    }
}

#[test]
fn golden_backward_cpu() {
    check_backward(&Device::Cpu);
}

#[test]
fn golden_backward_gpu() {
    check_backward(&Device::Gpu(common::gpu()));
}
