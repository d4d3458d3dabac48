//! The `forward` file contract (README: "The forward file contract").

use std::path::Path;

use wgpu_rnn::{Device, Error, Result, Rnn, RnnParams, State, TensorFile};

/// Names a case file may hold besides the inputs: the answers and the inputs of the backward
/// contract, which `forward` ignores (so PyTorch's golden cases run as they are).
fn known_extra(name: &str) -> bool {
    matches!(
        name,
        "output" | "h_n" | "c_n" | "grad_output" | "grad_h_n" | "grad_c_n"
    ) || name.starts_with("grad.")
}

/// Runs the `forward` contract, or the `backward` one when `with_grad` is set.
pub fn run(
    model: &Path,
    prefix: Option<&str>,
    batch_first: bool,
    input: &Path,
    output: &Path,
    device: &Device,
    with_grad: bool,
) -> Result<()> {
    let params = RnnParams::load_at(model, prefix)?.batch_first(batch_first);
    let cfg = *params.config();
    let single_cell = params.is_single_cell();
    let param_names: Vec<String> = params.to_tensor_file().tensors.into_keys().collect();
    let mut case = TensorFile::read(input)?;
    let src = input.display().to_string();
    let inputs: &[&str] = if with_grad {
        &[
            "input",
            "h0",
            "c0",
            "lengths",
            "grad_output",
            "grad_h_n",
            "grad_c_n",
        ]
    } else {
        &["input", "h0", "c0", "lengths"]
    };
    // Integer tensors are read apart; only `lengths` may be one.
    if let Some((name, t)) = case.int_tensors.iter().find(|(n, _)| *n != "lengths") {
        return Err(Error::Dtype {
            name: name.clone(),
            found: t.dtype.clone(),
        });
    }
    for name in case.tensors.keys().chain(case.int_tensors.keys()) {
        if !(inputs.contains(&name.as_str()) || known_extra(name)) {
            return Err(Error::UnknownTensor {
                name: name.clone(),
                source_name: src.clone(),
                expected: format!(
                    "{} (and the answers output, h_n, c_n, grad.*)",
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
    let (h0, c0) = (case.tensors.remove("h0"), case.tensors.remove("c0"));
    let lengths = lengths_of(&mut case)?;
    let mut rnn = Rnn::new(params, device)?;
    let state = State {
        h: h0.as_ref(),
        c: c0.as_ref(),
    };
    let out = match &lengths {
        Some(l) => {
            // Counts and ranges are checked against the input's (T, B) by the engine.
            let (t, b) = match x.shape() {
                [t, b, _] if !cfg.batch_first => (*t, *b),
                [b, t, _] => (*t, *b),
                [t, _] => (*t, 1), // unbatched: one sequence
                _ => return Err(Error::shape("input", &[0, 0, cfg.input_size], x.shape())),
            };
            let l = wgpu_rnn::cpu::check_lengths(l, t, b)?;
            rnn.forward_with_lengths(&x, state, &l)?
        }
        None => rnn.forward(&x, state)?,
    };
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
        let grad_c_n = case.tensors.remove("grad_c_n");
        let grad_state = State {
            h: grad_h_n.as_ref(),
            c: grad_c_n.as_ref(),
        };
        let g = rnn.backward(&grad_output, grad_state)?;
        file.tensors.insert("grad.input".into(), g.input);
        file.tensors.insert("grad.h0".into(), g.h0);
        if let Some(c0) = g.c0 {
            file.tensors.insert("grad.c0".into(), c0);
        }
        // Gradients named as the model is (a single cell's file keeps its form).
        let mut gp = g.params.named_as_single_cell(single_cell)?.to_tensor_file();
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
    if let Some(c_n) = out.c_n {
        file.tensors.insert("c_n".into(), c_n);
    }
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

/// The case's optional `lengths` [B]: an integer tensor (int64, int32, ...) or a float one
/// holding whole numbers.
fn lengths_of(case: &mut TensorFile) -> Result<Option<Vec<i64>>> {
    if let Some(t) = case.int_tensors.remove("lengths") {
        if t.shape.len() != 1 {
            return Err(Error::shape("lengths", &[t.values.len()], &t.shape));
        }
        return Ok(Some(t.values));
    }
    let Some(t) = case.tensors.remove("lengths") else {
        return Ok(None);
    };
    if t.shape().len() != 1 {
        return Err(Error::shape("lengths", &[t.len()], t.shape()));
    }
    t.data()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() != 0.0 || !v.is_finite() {
                Err(Error::config(format!(
                    "lengths[{i}]: expected a whole number of steps, found {v}"
                )))
            } else {
                Ok(v as i64)
            }
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
