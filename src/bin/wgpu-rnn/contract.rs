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

/// Runs the `forward` contract, or the `backward` one when `with_grad` is set.
pub fn run(
    model: &Path,
    input: &Path,
    output: &Path,
    device: &Device,
    with_grad: bool,
) -> Result<()> {
    let params = RnnParams::load(model)?;
    let cfg = *params.config();
    let param_names: Vec<String> = params.to_tensor_file().tensors.into_keys().collect();
    let mut case = TensorFile::read(input)?;
    let src = input.display().to_string();
    let inputs: &[&str] = if with_grad {
        &["input", "h0", "grad_output", "grad_h_n"]
    } else {
        &["input", "h0"]
    };
    for name in case.tensors.keys() {
        if !(inputs.contains(&name.as_str()) || known_extra(name)) {
            return Err(Error::UnknownTensor {
                name: name.clone(),
                source_name: src.clone(),
                expected: format!(
                    "{} (and the answers output, h_n, grad.*)",
                    inputs.join(", ")
                ),
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
    let mut file = TensorFile::default();
    if with_grad {
        let grad_output =
            case.tensors
                .remove("grad_output")
                .ok_or_else(|| Error::MissingTensor {
                    name: "grad_output".into(),
                    expected: out.output.shape().to_vec(),
                    source_name: src.clone(),
                })?;
        let grad_h_n = case.tensors.remove("grad_h_n");
        let g = rnn.backward(&grad_output, grad_h_n.as_ref())?;
        file.tensors.insert("grad.input".into(), g.input);
        file.tensors.insert("grad.h0".into(), g.h0);
        let mut gp = g.params.to_tensor_file();
        for name in &param_names {
            let t = gp
                .tensors
                .remove(name)
                .expect("gradients share the parameters' names");
            file.tensors.insert(format!("grad.{name}"), t);
        }
    }
    file.tensors.insert("output".into(), out.output);
    file.tensors.insert("h_n".into(), out.h_n);
    for (name, got) in &file.tensors {
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
    file.metadata.insert("device".into(), device.describe());
    file.write(output)?;
    eprintln!(
        "wrote {} ({} tensors) from {} on {}",
        output.display(),
        file.tensors.len(),
        cfg.cell,
        device.describe()
    );
    Ok(())
}
