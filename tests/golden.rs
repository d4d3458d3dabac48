//! PyTorch's own numbers: the golden cases in tests/golden (made by PyTorch in float64).

mod common;

use std::path::PathBuf;

use wgpu_rnn::{Device, ForwardOutput, Rnn, RnnParams, State, TensorFile};

use common::{CELLS, ELMAN, GATED, PROJ, VARLEN, golden};

/// Every golden case of a stack: Elman, LSTM and GRU, LSTM projections and variable-length
/// batches.
fn cases() -> impl Iterator<Item = &'static str> {
    ELMAN.into_iter().chain(GATED).chain(PROJ).chain(VARLEN)
}

/// The case's forward pass: `input` from `h0` (`c0`), with its `lengths` when it has them.
fn forward(rnn: &mut Rnn, case: &TensorFile) -> ForwardOutput {
    let state = State {
        h: case.tensors.get("h0"),
        c: case.tensors.get("c0"),
    };
    let x = &case.tensors["input"];
    match case.int_tensors.get("lengths") {
        Some(l) => {
            let l: Vec<usize> = l.values.iter().map(|&v| v as usize).collect();
            rnn.forward_with_lengths(x, state, &l).unwrap()
        }
        None => rnn.forward(x, state).unwrap(),
    }
}

fn check_forward(device: &Device) {
    for name in cases() {
        let params = RnnParams::load(golden(name, "model")).unwrap();
        let case = TensorFile::read(golden(name, "case")).unwrap();
        let t = |n: &str| {
            case.tensors
                .get(n)
                .unwrap_or_else(|| panic!("{name}: no {n}"))
        };
        let mut rnn = Rnn::new(params, device).unwrap();
        let out = forward(&mut rnn, &case);
        let what = format!("{name} on {}", device.describe());
        common::assert_close(&format!("{what}: output"), &out.output, t("output"), 2e-5);
        common::assert_close(&format!("{what}: h_n"), &out.h_n, t("h_n"), 2e-5);
        match (&out.c_n, case.tensors.get("c_n")) {
            (Some(got), Some(want)) => {
                common::assert_close(&format!("{what}: c_n"), got, want, 2e-5)
            }
            (None, None) => {}
            (got, want) => panic!("{what}: c_n {got:?}, expected {want:?}"),
        }
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
    for name in cases() {
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
        let proj = block.contains("\"proj_size\"");
        let want_proj = if proj { field("proj_size") } else { "0".into() };
        assert_eq!(c.proj_size.to_string(), want_proj, "{name}");
        let cell = match field("mode").as_str() {
            "RNN" => format!("rnn_{}", field("nonlinearity")),
            mode => mode.to_lowercase(),
        };
        assert_eq!(c.cell.to_string(), cell, "{name}");
    }
}

/// The backward contract: gradients of
/// `Σ output·grad_output + Σ h_n·grad_h_n (+ Σ c_n·grad_c_n)`.
fn check_backward(device: &Device) {
    for name in cases() {
        let params = RnnParams::load(golden(name, "model")).unwrap();
        let names = params.to_tensor_file();
        let case = TensorFile::read(golden(name, "case")).unwrap();
        let t = |n: &str| {
            case.tensors
                .get(n)
                .unwrap_or_else(|| panic!("{name}: no {n}"))
        };
        let mut rnn = Rnn::new(params, device).unwrap();
        let out = forward(&mut rnn, &case);
        let grad_state = State {
            h: case.tensors.get("grad_h_n"),
            c: case.tensors.get("grad_c_n"),
        };
        let g = rnn.backward(t("grad_output"), grad_state).unwrap();
        let what = format!("{name} on {}", device.describe());
        common::assert_close(&format!("{what}: output"), &out.output, t("output"), 2e-5);
        common::assert_close(
            &format!("{what}: grad.input"),
            &g.input,
            t("grad.input"),
            2e-4,
        );
        common::assert_close(&format!("{what}: grad.h0"), &g.h0, t("grad.h0"), 2e-4);
        match (&g.c0, case.tensors.get("grad.c0")) {
            (Some(got), Some(want)) => {
                common::assert_close(&format!("{what}: grad.c0"), got, want, 2e-4)
            }
            (None, None) => {}
            (got, want) => panic!("{what}: grad.c0 {got:?}, expected {want:?}"),
        }
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

/// A PyTorch `nn.RNNCell`, `nn.LSTMCell` or `nn.GRUCell` state_dict loads as a one-layer,
/// one-direction model that equals the cell applied T times, on both devices, and saves back
/// in the same form (the names PyTorch's `load_state_dict` of the cell expects).
#[test]
fn single_cell_files_load_run_and_save_as_cells() {
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        for name in CELLS {
            let params = RnnParams::load(golden(name, "model")).unwrap();
            assert!(params.is_single_cell(), "{name}");
            let c = *params.config();
            assert_eq!((c.num_layers, c.bidirectional), (1, false), "{name}");
            let saved = params.to_tensor_file();
            let want_names = TensorFile::read(golden(name, "model")).unwrap();
            assert_eq!(
                saved.tensors.keys().collect::<Vec<_>>(),
                want_names.tensors.keys().collect::<Vec<_>>(),
                "{name}: saved names"
            );
            let case = TensorFile::read(golden(name, "case")).unwrap();
            let t = |n: &str| &case.tensors[n];
            let mut rnn = Rnn::new(params, &device).unwrap();
            let state = State {
                h: case.tensors.get("h0"),
                c: case.tensors.get("c0"),
            };
            let out = rnn.forward(t("input"), state).unwrap();
            let what = format!("{name} on {}", device.describe());
            common::assert_close(&format!("{what}: output"), &out.output, t("output"), 2e-5);
            common::assert_close(&format!("{what}: h_n"), &out.h_n, t("h_n"), 2e-5);
            if let Some(want) = case.tensors.get("c_n") {
                common::assert_close(
                    &format!("{what}: c_n"),
                    out.c_n.as_ref().unwrap(),
                    want,
                    2e-5,
                );
            }
        }
    }
    // A stack of two layers cannot be named as a single cell.
    let p = RnnParams::<f32>::random(
        wgpu_rnn::RnnConfig::new(wgpu_rnn::Cell::Gru, 2, 3).layers(2),
        1,
    );
    assert!(p.named_as_single_cell(true).is_err());
}
