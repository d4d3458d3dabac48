//! The `forward` file contract (README: "The forward file contract").

use std::path::Path;

use wgpu_rnn::{Device, Error, Result, Rnn, RnnParams, TensorFile};

/// Names a case file may hold besides `input` and `h0`: the answers and the inputs of the
/// backward contract, which `forward` ignores (so PyTorch's golden cases run as they are).
fn known_extra(name: &str) -> bool {
    matches!(
        name,
        "output" | "h_n" | "c_n" | "grad_output" | "grad_h_n" | "grad_c_n"
    ) || name.starts_with("grad.")
}

pub fn forward(model: &Path, input: &Path, output: &Path, device: &Device) -> Result<()> {
    let params = RnnParams::load(model)?;
    let cfg = *params.config();
    let mut case = TensorFile::read(input)?;
    let src = input.display().to_string();
    for name in case.tensors.keys() {
        if !(name == "input" || name == "h0" || known_extra(name)) {
            return Err(Error::UnknownTensor {
                name: name.clone(),
                source_name: src.clone(),
                expected: "input, h0 (and the answers output, h_n, grad_*)".into(),
            });
        }
    }
    let x = case
        .tensors
        .remove("input")
        .ok_or_else(|| Error::MissingTensor {
            name: "input".into(),
            expected: vec![0, 0, cfg.input_size],
            source_name: src.clone(),
        })?;
    let h0 = case.tensors.remove("h0");
    let mut rnn = Rnn::new(params, device)?;
    let out = rnn.forward(&x, h0.as_ref())?;
    for (name, got) in [("output", &out.output), ("h_n", &out.h_n)] {
        if let Some(want) = case.tensors.get(name).filter(|w| w.shape() == got.shape()) {
            let (num, den) =
                got.data()
                    .iter()
                    .zip(want.data())
                    .fold((0.0f64, 0.0f64), |(n, d), (&g, &w)| {
                        let (g, w) = (g as f64, w as f64);
                        (n + (g - w) * (g - w), d + w * w)
                    });
            eprintln!(
                "{name}: relative error {:.2e} against the reference in {src}",
                num.sqrt() / den.sqrt().max(1e-30)
            );
        }
    }
    let mut file = TensorFile::default();
    file.tensors.insert("output".into(), out.output);
    file.tensors.insert("h_n".into(), out.h_n);
    file.metadata.insert("device".into(), device.describe());
    file.write(output)?;
    eprintln!(
        "wrote {} (output, h_n) from {} on {}",
        output.display(),
        cfg.cell,
        device.describe()
    );
    Ok(())
}
