//! Every bad input gives its typed error, whose message names the tensor or limit and the
//! expected and found values; nothing panics, on the CPU or the GPU. Also the safetensors
//! round trip and the float dtypes a model file may use.

mod common;

use std::collections::HashMap;

use common::{TempPath, assert_msg};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use wgpu_rnn::{Cell, Device, Error, Rnn, RnnConfig, RnnParams, State, Tensor, TensorFile};

/// Two layers, bidirectional: `I = 4`, `H = 3`, so `h0` is `[4, B, 3]`.
fn config() -> RnnConfig {
    RnnConfig::new(Cell::RnnTanh, 4, 3)
        .layers(2)
        .bidirectional(true)
}

fn devices() -> Vec<Device> {
    vec![Device::Cpu, Device::Gpu(common::gpu())]
}

fn model(device: &Device) -> Rnn {
    Rnn::new(RnnParams::random(config(), 1), device).unwrap()
}

/// After an error the model still runs a good input (on the GPU: the workspace is rebuilt).
#[track_caller]
fn still_works(rnn: &mut Rnn) {
    let out = rnn
        .forward(&common::random(&[3, 2, 4], 1.0, 5), None)
        .unwrap();
    assert_eq!(out.output.shape(), &[3, 2, 6]);
}

#[test]
fn input_with_wrong_feature_size() {
    for device in devices() {
        let mut rnn = model(&device);
        let err = rnn.forward(&Tensor::zeros(&[5, 2, 3]), None).unwrap_err();
        assert!(
            matches!(&err, Error::Shape { name, expected, found }
                if name == "input" && expected == &[5, 2, 4] && found == &[5, 2, 3]),
            "{}: {err:?}",
            device.describe()
        );
        assert_eq!(
            err.to_string(),
            "input: expected shape [5, 2, 4], found [5, 2, 3]"
        );
        still_works(&mut rnn);
    }
}

#[test]
fn input_not_three_dimensional() {
    for device in devices() {
        let mut rnn = model(&device);
        // A 2-d input is unbatched ([T, I], as PyTorch): only its feature size can be wrong.
        for (shape, expected) in [
            (vec![5, 3], vec![5, 4]),
            (vec![4], vec![0, 0, 4]),
            (vec![5, 2, 4, 1], vec![5, 2, 4]),
        ] {
            let err = rnn.forward(&Tensor::zeros(&shape), None).unwrap_err();
            assert!(
                matches!(&err, Error::Shape { name, expected: e, found }
                    if name == "input" && e == &expected && found == &shape),
                "{} {shape:?}: {err:?}",
                device.describe()
            );
            assert_msg(
                &err,
                &[
                    "input",
                    &format!("{expected:?}"),
                    &format!("found {shape:?}"),
                ],
            );
        }
        still_works(&mut rnn);
    }
}

#[test]
fn h0_with_wrong_shape() {
    for device in devices() {
        let mut rnn = model(&device);
        let x = Tensor::zeros(&[5, 2, 4]);
        // Wrong H, wrong batch, wrong L·D, and 2-d.
        for shape in [vec![4, 2, 4], vec![4, 3, 3], vec![2, 2, 3], vec![4, 6]] {
            let err = rnn.forward(&x, Some(&Tensor::zeros(&shape))).unwrap_err();
            assert!(
                matches!(&err, Error::Shape { name, expected, found }
                    if name == "h0" && expected == &[4, 2, 3] && found == &shape),
                "{} {shape:?}: {err:?}",
                device.describe()
            );
            assert_msg(&err, &["h0", "[4, 2, 3]", &format!("found {shape:?}")]);
        }
        still_works(&mut rnn);
    }
}

#[test]
fn empty_sequence_or_batch() {
    for device in devices() {
        let mut rnn = model(&device);
        for shape in [[0, 2, 4], [5, 0, 4], [0, 0, 4]] {
            let err = rnn.forward(&Tensor::zeros(&shape), None).unwrap_err();
            assert!(
                matches!(&err, Error::Config(_)),
                "{} {shape:?}: {err:?}",
                device.describe()
            );
            assert_msg(&err, &["input", ">= 1", &format!("{shape:?}")]);
        }
        still_works(&mut rnn);
    }
}

#[test]
fn non_finite_input_or_h0() {
    for device in devices() {
        let mut rnn = model(&device);
        let mut x = common::random::<f32>(&[5, 2, 4], 1.0, 3);
        x.data_mut()[7] = f32::NAN;
        let err = rnn.forward(&x, None).unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { name, index: 7, value } if name == "input" && value.is_nan()),
            "{}: {err:?}",
            device.describe()
        );
        assert_msg(&err, &["input", "NaN", "index 7"]);

        let x = common::random::<f32>(&[5, 2, 4], 1.0, 3);
        let mut h0 = Tensor::<f32>::zeros(&[4, 2, 3]);
        h0.data_mut()[20] = f32::NEG_INFINITY;
        let err = rnn.forward(&x, Some(&h0)).unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { name, index: 20, .. } if name == "h0"),
            "{}: {err:?}",
            device.describe()
        );
        assert_msg(&err, &["h0", "-inf", "index 20"]);
        still_works(&mut rnn);
    }
}

// ---------------------------------------------------------------------------------------
// Parameters built in memory.

#[test]
fn params_new_with_misshapen_weight() {
    let cfg = config();
    let good = RnnParams::<f32>::random(cfg, 2);

    let mut layers = good.layers().to_vec();
    layers[0].w_hh = Tensor::zeros(&[3, 4]);
    let err = RnnParams::new(cfg, layers).unwrap_err();
    assert!(
        matches!(&err, Error::Shape { name, expected, found }
            if name == "weight_hh_l0" && expected == &[3, 3] && found == &[3, 4]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "weight_hh_l0: expected shape [3, 3], found [3, 4]"
    );

    // Layer 1, reverse direction: its input is D·H = 6 wide.
    let mut layers = good.layers().to_vec();
    layers[3].w_ih = Tensor::zeros(&[3, 4]);
    let err = RnnParams::new(cfg, layers).unwrap_err();
    assert_msg(&err, &["weight_ih_l1_reverse", "[3, 6]", "[3, 4]"]);

    let mut layers = good.layers().to_vec();
    layers[1].b_hh = Some(Tensor::zeros(&[4]));
    let err = RnnParams::new(cfg, layers).unwrap_err();
    assert!(
        matches!(&err, Error::Shape { name, .. } if name == "bias_hh_l0_reverse"),
        "{err:?}"
    );
    assert_msg(&err, &["bias_hh_l0_reverse", "[3]", "[4]"]);

    let mut layers = good.layers().to_vec();
    layers[2].b_ih = None;
    let err = RnnParams::new(cfg, layers).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { name, .. } if name == "bias_ih_l1"),
        "{err:?}"
    );
    assert_msg(&err, &["bias_ih_l1", "missing", "[3]"]);

    let mut layers = good.layers().to_vec();
    layers.pop();
    let err = RnnParams::new(cfg, layers).unwrap_err();
    assert!(matches!(&err, Error::Config(_)), "{err:?}");
    assert_msg(&err, &["expected 4", "found 3"]);

    let mut layers = good.layers().to_vec();
    layers[0].w_ih.data_mut()[5] = f32::INFINITY;
    let err = RnnParams::new(cfg, layers).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { name, index: 5, .. } if name == "weight_ih_l0"),
        "{err:?}"
    );

    // Biases given to a model without bias.
    let err = RnnParams::new(cfg.bias(false), good.layers().to_vec()).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownTensor { name, .. } if name == "bias_ih_l0"),
        "{err:?}"
    );

    // A zero size.
    let err = RnnParams::<f32>::new(RnnConfig::new(Cell::RnnTanh, 4, 0), vec![]).unwrap_err();
    assert!(matches!(&err, Error::Config(_)), "{err:?}");
    assert_msg(&err, &["hidden_size", ">= 1", "found 0"]);
}

// ---------------------------------------------------------------------------------------
// Model files.

/// Writes `file` to a fresh temporary path and loads it as a model.
fn load_file(file: &TensorFile, name: &str) -> (TempPath, Result<RnnParams, Error>) {
    let tmp = TempPath::new(name);
    file.write(tmp.path()).unwrap();
    let loaded = RnnParams::load(tmp.path());
    (tmp, loaded)
}

fn good_file() -> TensorFile {
    RnnParams::<f32>::random(config(), 3).to_tensor_file()
}

#[test]
fn file_missing_a_tensor() {
    let mut file = good_file();
    file.tensors.remove("weight_hh_l1").unwrap();
    let (tmp, result) = load_file(&file, "missing.safetensors");
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { name, expected, source_name }
            if name == "weight_hh_l1" && expected == &[3, 3]
                && source_name == &tmp.path().display().to_string()),
        "{err:?}"
    );
    assert_msg(
        &err,
        &[
            "weight_hh_l1",
            "missing",
            "[3, 3]",
            &tmp.path().display().to_string(),
        ],
    );

    // A missing bias, with the other bias of the pair present.
    let mut file = good_file();
    file.tensors.remove("bias_hh_l0_reverse").unwrap();
    let (_tmp, result) = load_file(&file, "missing-bias.safetensors");
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { name, expected, .. }
            if name == "bias_hh_l0_reverse" && expected == &[3]),
        "{err:?}"
    );
}

#[test]
fn file_with_unknown_tensor() {
    for bad in [
        "foo",
        "weight_ih_lx",
        "weight_ih_l",
        "bias_xx_l0",
        "weight_ih_l0_backward",
    ] {
        let mut file = good_file();
        file.tensors.insert(bad.into(), Tensor::zeros(&[3]));
        let (tmp, result) = load_file(&file, "unknown.safetensors");
        let err = result.unwrap_err();
        assert!(
            matches!(&err, Error::UnknownTensor { name, source_name, .. }
                if name == bad && source_name == &tmp.path().display().to_string()),
            "{bad}: {err:?}"
        );
        assert_msg(&err, &[bad, "unknown tensor", "weight_ih_l<k>"]);
    }
}

/// A layer number written with a leading zero (`weight_ih_l00`) parses as layer 0 but is never
/// taken, so it should be rejected as unknown (or as a duplicate).
///
/// Regression (fixed): `RnnParams::from_tensor_file` (src/params.rs, `debug_assert!(file.tensors
/// .is_empty())`) panics in debug builds and silently ignores the tensor in release builds.
#[test]
fn file_with_leading_zero_layer_name() {
    let mut file = good_file();
    file.tensors
        .insert("weight_ih_l00".into(), Tensor::zeros(&[3, 4]));
    let err = RnnParams::from_tensor_file(file, "mem").unwrap_err();
    assert_msg(&err, &["weight_ih_l00"]);
}

/// A layer number of `usize::MAX` should be an error, not an overflow.
///
/// Regression (fixed): `RnnParams::from_tensor_file` computes `max_layer + 1` unchecked
/// (src/params.rs, `let num_layers = ...? + 1;`): it panics with "attempt to add with
/// overflow" in debug builds, and in release builds wraps to 0 and reports the misleading
/// "num_layers: expected >= 1, found 0".
#[test]
fn file_with_huge_layer_number() {
    let mut file = good_file();
    let name = format!("weight_ih_l{}", usize::MAX);
    file.tensors.insert(name.clone(), Tensor::zeros(&[3, 4]));
    let err = RnnParams::from_tensor_file(file, "mem").unwrap_err();
    assert_msg(&err, &[&name]);
}

/// Gated weights load as the cell their gate count names; weights that disagree on the gate
/// count are an error naming both tensors.
#[test]
fn file_with_gated_weights() {
    let (i, h) = (4, 3);
    for (gates, cell) in [(4, Cell::Lstm), (3, Cell::Gru)] {
        let file = |ih_gates: usize| {
            let mut file = TensorFile::default();
            let t = &mut file.tensors;
            t.insert("weight_ih_l0".into(), Tensor::zeros(&[ih_gates * h, i]));
            t.insert("weight_hh_l0".into(), Tensor::zeros(&[gates * h, h]));
            t.insert("bias_ih_l0".into(), Tensor::zeros(&[gates * h]));
            t.insert("bias_hh_l0".into(), Tensor::zeros(&[gates * h]));
            file
        };
        let (_tmp, result) = load_file(&file(gates), "gated.safetensors");
        let p = result.unwrap();
        assert_eq!(p.config().cell, cell);
        assert_eq!((p.config().input_size, p.config().hidden_size), (i, h));
        let other = if gates == 4 { 3 } else { 4 };
        let (_tmp, result) = load_file(&file(other), "mixed.safetensors");
        let err = result.unwrap_err();
        assert!(matches!(&err, Error::Config(_)), "{cell}: {err:?}");
        assert_msg(
            &err,
            &[
                "weight_ih_l0",
                "weight_hh_l0",
                "gate count",
                &cell.to_string(),
            ],
        );
    }
    // A deeper layer that disagrees is named with weight_hh_l0, too.
    let mut file = TensorFile::default();
    let (i, h) = (4, 3);
    for (n, shape) in [
        ("weight_ih_l0", vec![4 * h, i]),
        ("weight_hh_l0", vec![4 * h, h]),
        ("weight_ih_l1", vec![4 * h, h]),
        ("weight_hh_l1", vec![3 * h, h]),
    ] {
        file.tensors.insert(n.into(), Tensor::zeros(&shape));
    }
    let err = RnnParams::from_tensor_file(file, "mem").unwrap_err();
    assert_msg(
        &err,
        &["weight_hh_l1", "weight_hh_l0", "gate count", "lstm"],
    );
    // No cell has 2 gate blocks.
    let mut file = TensorFile::default();
    file.tensors
        .insert("weight_ih_l0".into(), Tensor::zeros(&[2 * h, i]));
    file.tensors
        .insert("weight_hh_l0".into(), Tensor::zeros(&[2 * h, h]));
    let err = RnnParams::from_tensor_file(file, "mem").unwrap_err();
    assert_msg(&err, &["weight_hh_l0", "2 gate blocks", "GRU 3, LSTM 4"]);
}

/// LSTM projections: `weight_hr_l{k}` `[P, H]` gives `proj_size`; a projection on another
/// cell, one not below `hidden_size`, a missing or misshapen `weight_hr` of another layer are
/// errors naming it.
#[test]
fn projection_files_are_checked() {
    let (i, h, p) = (4, 3, 2);
    let file = |g: usize, p: usize, layers: usize| {
        let mut file = TensorFile::default();
        for l in 0..layers {
            let i_l = if l == 0 { i } else { p };
            file.tensors
                .insert(format!("weight_ih_l{l}"), Tensor::zeros(&[g * h, i_l]));
            file.tensors
                .insert(format!("weight_hh_l{l}"), Tensor::zeros(&[g * h, p]));
            file.tensors
                .insert(format!("weight_hr_l{l}"), Tensor::zeros(&[p, h]));
        }
        file
    };
    let ok = RnnParams::from_tensor_file(file(4, p, 2), "mem").unwrap();
    assert_eq!(
        (ok.config().proj_size, ok.config().hidden_size),
        (p, h),
        "P and H from weight_hr_l0"
    );
    assert_eq!(ok.config().output_size(), p);
    let err = RnnParams::from_tensor_file(file(3, p, 1), "mem").unwrap_err();
    assert_msg(&err, &["proj_size", "only an LSTM", "gru"]);
    let err = RnnParams::from_tensor_file(file(4, h, 1), "mem").unwrap_err();
    assert_msg(&err, &["proj_size", "below hidden_size = 3", "found 3"]);
    let mut f = file(4, p, 2);
    f.tensors.remove("weight_hr_l1");
    let err = RnnParams::from_tensor_file(f, "mem").unwrap_err();
    assert_msg(&err, &["weight_hr_l1"]);
    let mut f = file(4, p, 2);
    f.tensors
        .insert("weight_hr_l1".into(), Tensor::zeros(&[p, h + 1]));
    let err = RnnParams::from_tensor_file(f, "mem").unwrap_err();
    assert_msg(&err, &["weight_hr_l1", "[2, 3]", "[2, 4]"]);
    // Parameters built in code are checked the same way.
    let cfg = RnnConfig::new(Cell::Lstm, i, h).proj_size(p);
    let mut layers = RnnParams::<f32>::random(cfg, 1).layers().to_vec();
    layers[0].w_hr = None;
    let err = RnnParams::new(cfg, layers).unwrap_err();
    assert_msg(&err, &["weight_hr_l0"]);
}

/// A stack inside a larger module: `--prefix` with or without the trailing dot, and a prefix
/// that holds no stack directly is an error listing the prefixes found.
#[test]
fn prefixes_pick_a_stack() {
    let p = RnnParams::<f32>::random(RnnConfig::new(Cell::Gru, 3, 2), 5);
    let mut file = TensorFile::default();
    for (n, t) in p.to_tensor_file().tensors {
        file.tensors.insert(format!("model.encoder.rnn.{n}"), t);
    }
    file.tensors
        .insert("model.head.weight".into(), Tensor::zeros(&[1, 2]));
    for prefix in [None, Some("model.encoder.rnn"), Some("model.encoder.rnn.")] {
        let got = RnnParams::from_tensor_file_at(file.clone(), "mem", prefix).unwrap();
        assert_eq!(got, p, "{prefix:?}");
    }
    let err = RnnParams::from_tensor_file_at(file.clone(), "mem", Some("model")).unwrap_err();
    assert_msg(&err, &["\"model.\"", "model.encoder.rnn."]);
    let err = RnnParams::from_tensor_file_at(file, "mem", Some("decoder")).unwrap_err();
    assert_msg(&err, &["decoder.weight_hh_l0", "model.encoder.rnn."]);
}

#[test]
fn file_with_wrong_shapes() {
    // A bias one too long.
    let mut file = good_file();
    file.tensors
        .insert("bias_ih_l1".into(), Tensor::zeros(&[4]));
    let (_tmp, result) = load_file(&file, "bias-shape.safetensors");
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Shape { name, expected, found }
            if name == "bias_ih_l1" && expected == &[3] && found == &[4]),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "bias_ih_l1: expected shape [3], found [4]");

    // A second-layer weight that disagrees with the first layer's H.
    let mut file = good_file();
    file.tensors
        .insert("weight_ih_l1".into(), Tensor::zeros(&[3, 5]));
    let (_tmp, result) = load_file(&file, "weight-shape.safetensors");
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Shape { name, .. } if name == "weight_ih_l1"),
        "{err:?}"
    );
    assert_msg(&err, &["weight_ih_l1", "[3, 6]", "[3, 5]"]);

    // weight_hh_l0 whose rows are not a multiple of H.
    let mut file = good_file();
    file.tensors
        .insert("weight_hh_l0".into(), Tensor::zeros(&[5, 3]));
    let (_tmp, result) = load_file(&file, "rows.safetensors");
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Shape { name, .. } if name == "weight_hh_l0"),
        "{err:?}"
    );
    assert_msg(&err, &["weight_hh_l0", "[5, 3]"]);

    // A 1-d weight.
    let mut file = good_file();
    file.tensors
        .insert("weight_hh_l0".into(), Tensor::zeros(&[9]));
    let (_tmp, result) = load_file(&file, "1d.safetensors");
    let err = result.unwrap_err();
    assert!(matches!(&err, Error::Config(_)), "{err:?}");
    assert_msg(&err, &["weight_hh_l0", "2-d", "[9]"]);

    // A bad nonlinearity.
    let mut file = good_file();
    file.metadata
        .insert("nonlinearity".into(), "sigmoid".into());
    let (_tmp, result) = load_file(&file, "nonlin.safetensors");
    let err = result.unwrap_err();
    assert!(matches!(&err, Error::Config(_)), "{err:?}");
    assert_msg(&err, &["nonlinearity", "sigmoid"]);
}

#[test]
fn file_not_safetensors() {
    let tmp = TempPath::new("garbage.safetensors");
    std::fs::write(
        tmp.path(),
        b"this is not a safetensors file at all, just text\n",
    )
    .unwrap();
    let err = RnnParams::load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Safetensors { path, .. } if path == tmp.path()),
        "{err:?}"
    );
    assert_msg(
        &err,
        &[
            &tmp.path().display().to_string(),
            "not a valid safetensors file",
        ],
    );

    // Truncated: a real file cut short.
    let tmp = TempPath::new("truncated.safetensors");
    let bytes = good_file().to_bytes().unwrap();
    std::fs::write(tmp.path(), &bytes[..bytes.len() - 3]).unwrap();
    let err = RnnParams::load(tmp.path()).unwrap_err();
    assert!(matches!(&err, Error::Safetensors { .. }), "{err:?}");

    // Empty.
    let tmp = TempPath::new("empty.safetensors");
    std::fs::write(tmp.path(), b"").unwrap();
    let err = RnnParams::load(tmp.path()).unwrap_err();
    assert!(matches!(&err, Error::Safetensors { .. }), "{err:?}");
}

#[test]
fn file_does_not_exist() {
    let tmp = TempPath::new("does-not-exist.safetensors");
    let err = RnnParams::load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, source }
            if path == tmp.path() && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert_msg(&err, &[&tmp.path().display().to_string()]);

    // Writing into a directory that does not exist is also Error::Io.
    let dir = TempPath::new("no-such-dir");
    let err = good_file()
        .write(dir.path().join("model.safetensors"))
        .unwrap_err();
    assert!(matches!(&err, Error::Io { .. }), "{err:?}");
}

/// Serialises `tensors` (f32 values) with each tensor stored as `dtype`.
fn serialize_as(file: &TensorFile, dtype: Dtype) -> Vec<u8> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors
        .iter()
        .map(|(name, t)| {
            let d = t.data();
            let bytes: Vec<u8> = match dtype {
                Dtype::F32 => d.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Dtype::F64 => d.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect(),
                Dtype::F16 => d
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                Dtype::BF16 => d
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
                Dtype::I32 => d.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
                other => panic!("serialize_as: {other:?} not handled"),
            };
            (name.clone(), t.shape().to_vec(), bytes)
        })
        .collect();
    let views = encoded.iter().map(|(name, shape, bytes)| {
        (
            name.clone(),
            TensorView::new(dtype, shape.clone(), bytes).unwrap(),
        )
    });
    let meta = (!file.metadata.is_empty()).then(|| file.metadata.clone());
    safetensors::serialize(views, meta).unwrap()
}

#[test]
fn file_with_integer_dtype() {
    let mut file = TensorFile::default();
    file.tensors
        .insert("weight_ih_l0".into(), Tensor::zeros(&[3, 4]));
    let tmp = TempPath::new("i32.safetensors");
    std::fs::write(tmp.path(), serialize_as(&file, Dtype::I32)).unwrap();
    let err = RnnParams::load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Dtype { name, found } if name == "weight_ih_l0" && found == "I32"),
        "{err:?}"
    );
    assert_msg(&err, &["weight_ih_l0", "I32", "f32, f16, bf16, f64"]);

    // One integer tensor among float ones.
    let bytes = good_file();
    let mut views: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = bytes
        .tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.shape().to_vec(),
                t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
                Dtype::F32,
            )
        })
        .collect();
    views.push(("bias_ih_l9".into(), vec![2], vec![0u8; 16], Dtype::I64));
    let st = safetensors::serialize(
        views
            .iter()
            .map(|(n, s, b, d)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())),
        None,
    )
    .unwrap();
    // The file reads (integer tensors are kept apart, for a case's `lengths`); a model made
    // from it names the integer tensor.
    let file = TensorFile::from_bytes(&st).unwrap();
    assert_eq!(file.int_tensors["bias_ih_l9"].values, vec![0, 0]);
    let err = RnnParams::from_tensor_file(file, "mem").unwrap_err();
    assert!(
        matches!(&err, Error::Dtype { name, found } if name == "bias_ih_l9" && found == "I64"),
        "{err:?}"
    );
}

/// Safetensors bytes holding `tensors` as f64, values as given (not limited to f32's range).
fn f64_file(tensors: &[(&str, Vec<usize>, Vec<f64>)]) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), b)| {
        (
            name.to_string(),
            TensorView::new(Dtype::F64, shape.clone(), b).unwrap(),
        )
    });
    safetensors::serialize(views, None).unwrap()
}

/// An f64 value that is finite but beyond f32's range is named as an overflow when the file
/// is read (it used to become `inf` and be reported as a non-finite value).
#[test]
fn f64_values_that_overflow_float32() {
    let file = good_file();
    let as_f64 = |override_name: &str, index: usize, value: f64| {
        let tensors: Vec<(&str, Vec<usize>, Vec<f64>)> = file
            .tensors
            .iter()
            .map(|(n, t)| {
                let mut d: Vec<f64> = t.data().iter().map(|&v| v as f64).collect();
                if n == override_name {
                    d[index] = value;
                }
                (n.as_str(), t.shape().to_vec(), d)
            })
            .collect();
        f64_file(&tensors)
    };
    for value in [1e39, -1e39, f64::MAX] {
        let tmp = TempPath::new("overflow.safetensors");
        std::fs::write(tmp.path(), as_f64("weight_hh_l0", 3, value)).unwrap();
        let err = RnnParams::load(tmp.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Overflow { name, index: 3, value: v } if name == "weight_hh_l0" && *v == value),
            "{value}: {err:?}"
        );
    }
    let tmp = TempPath::new("overflow.safetensors");
    std::fs::write(tmp.path(), as_f64("weight_hh_l0", 3, 1e39)).unwrap();
    let err = RnnParams::load(tmp.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "weight_hh_l0: value 1e39 at flat index 3 overflows float32"
    );
    // The largest f32, and what rounds to it, still load; true infinities stay non-finite.
    for (value, loads) in [
        (f32::MAX as f64, true),
        (-(f32::MAX as f64), true),
        (f64::INFINITY, false),
    ] {
        let tmp = TempPath::new("edge.safetensors");
        std::fs::write(tmp.path(), as_f64("bias_hh_l1_reverse", 2, value)).unwrap();
        let got = RnnParams::load(tmp.path());
        if loads {
            let p = got.unwrap_or_else(|e| panic!("{value}: {e}"));
            let t = p.to_tensor_file().tensors["bias_hh_l1_reverse"].clone();
            assert_eq!(t.data()[2] as f64, value);
        } else {
            let err = got.unwrap_err();
            assert!(
                matches!(&err, Error::NonFinite { name, index: 2, .. } if name == "bias_hh_l1_reverse"),
                "{err:?}"
            );
            assert_msg(&err, &["non-finite value inf"]);
        }
    }
    // Case files are read the same way: input, h0, grad_output.
    for (name, shape) in [
        ("input", vec![5, 2, 4]),
        ("h0", vec![4, 2, 3]),
        ("grad_output", vec![5, 2, 6]),
    ] {
        let n: usize = shape.iter().product();
        let mut d = vec![0.25; n];
        d[n - 1] = -2e40;
        let tmp = TempPath::new("case.safetensors");
        std::fs::write(tmp.path(), f64_file(&[(name, shape, d)])).unwrap();
        let err = TensorFile::read(tmp.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{name}: value -2e40 at flat index {} overflows float32",
                n - 1
            )
        );
    }
}

/// `sample` names the argument that is wrong: an empty prime, or the temperature.
#[test]
fn sample_arguments() {
    use rand::SeedableRng;
    use wgpu_rnn::train::{SeqModel, Task, sample};
    let model = SeqModel::new(
        RnnConfig::new(Cell::RnnTanh, 5, 4),
        Task::Tokens { vocab: 5 },
        0,
    )
    .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let err = sample(&model, &[], 3, 0.8, &mut rng).unwrap_err();
    assert_msg(&err, &["prime is empty"]);
    assert!(!err.to_string().contains("temperature"), "{err}");
    for (t, shown) in [
        (0.0, "0"),
        (-0.5, "-0.5"),
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
    ] {
        let err = sample(&model, &[1, 2], 3, t, &mut rng).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid configuration: sample: temperature must be a finite number > 0, found {shown}"
            )
        );
    }
    assert_eq!(sample(&model, &[1, 2], 3, 1e-3, &mut rng).unwrap().len(), 3);
}

#[test]
fn half_and_double_files_load() {
    let cfg = RnnConfig::new(Cell::RnnRelu, 4, 3)
        .layers(2)
        .bidirectional(true);
    let params = RnnParams::<f32>::random(cfg, 4);
    let file = params.to_tensor_file();
    let x = common::random::<f32>(&[6, 2, 4], 1.0, 6);
    let want = Rnn::new(params.clone(), &Device::Cpu)
        .unwrap()
        .forward(&x, None)
        .unwrap();
    type Round = fn(f32) -> f32;
    let round: [(Dtype, Round, f64); 3] = [
        (Dtype::F64, |v| v, 0.0),
        (Dtype::F16, |v| half::f16::from_f32(v).to_f32(), 2e-3),
        (Dtype::BF16, |v| half::bf16::from_f32(v).to_f32(), 2e-2),
    ];
    for (dtype, rounded, tol) in round {
        let tmp = TempPath::new(&format!("{dtype:?}.safetensors"));
        std::fs::write(tmp.path(), serialize_as(&file, dtype)).unwrap();
        let loaded = RnnParams::load(tmp.path()).unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        assert_eq!(
            loaded.config(),
            &cfg,
            "{dtype:?}: inferred config (relu from metadata)"
        );
        // Exactly the f32 values rounded through the file's dtype.
        let mut expected = params.clone();
        for p in expected.layers_mut() {
            for t in [
                Some(&mut p.w_ih),
                Some(&mut p.w_hh),
                p.b_ih.as_mut(),
                p.b_hh.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                t.data_mut().iter_mut().for_each(|v| *v = rounded(*v));
            }
        }
        assert_eq!(loaded, expected, "{dtype:?}: values");
        if dtype == Dtype::F64 {
            assert_eq!(loaded, params, "f64 file holds the f32 values exactly");
        }
        // And the model computes (nearly) the same function.
        let got = Rnn::new(loaded, &Device::Cpu)
            .unwrap()
            .forward(&x, None)
            .unwrap();
        common::assert_close(
            &format!("{dtype:?}: output"),
            &got.output,
            &want.output,
            tol.max(1e-7),
        );
    }
}

#[test]
fn save_load_round_trip() {
    for (i, cfg) in [
        RnnConfig::new(Cell::RnnRelu, 4, 3)
            .layers(2)
            .bidirectional(true),
        RnnConfig::new(Cell::RnnTanh, 5, 2).layers(3).bias(false),
        RnnConfig::new(Cell::RnnTanh, 1, 1),
        RnnConfig::new(Cell::Lstm, 3, 5)
            .layers(2)
            .bidirectional(true),
        RnnConfig::new(Cell::Gru, 2, 4).bias(false),
        RnnConfig::new(Cell::Gru, 6, 1).layers(2),
    ]
    .into_iter()
    .enumerate()
    {
        let params = RnnParams::<f32>::random(cfg, 10 + i as u64);
        let tmp = TempPath::new("roundtrip.safetensors");
        params.save(tmp.path()).unwrap();
        let loaded = RnnParams::load(tmp.path()).unwrap();
        assert_eq!(loaded, params, "{cfg:?}");
        let file = TensorFile::read(tmp.path()).unwrap();
        assert_eq!(
            file.metadata.get("nonlinearity").map(String::as_str),
            cfg.cell.nonlinearity(),
            "{cfg:?}"
        );
        let n = cfg.num_layers * cfg.directions() * if cfg.bias { 4 } else { 2 };
        assert_eq!(file.tensors.len(), n, "{cfg:?}: tensor count");
        // Saving over an existing file replaces it (atomic rename) and leaves no temp file.
        params.save(tmp.path()).unwrap();
        let dir = tmp.path().parent().unwrap();
        let stem = tmp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with(&format!(".{stem}"))
            })
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
    // A file without metadata is a tanh model.
    let params = RnnParams::<f32>::random(RnnConfig::new(Cell::RnnTanh, 2, 2), 20);
    let mut file = params.to_tensor_file();
    file.metadata = HashMap::new();
    let (_tmp, loaded) = load_file(&file, "nometa.safetensors");
    assert_eq!(loaded.unwrap(), params);
}

// ---------------------------------------------------------------------------------------
// Device limits.

/// An output buffer over `max_storage_buffer_binding_size` is refused before allocating,
/// with the limit's name and both numbers, while the host input stays small.
#[test]
fn output_over_storage_binding_limit() {
    let ctx = common::gpu();
    let max = ctx.limits().max_storage_buffer_binding_size;
    // I = 1, B = 1, D·H = 512: output is 2048 bytes per step, input 4.
    let cfg = RnnConfig::new(Cell::RnnTanh, 1, 256).bidirectional(true);
    let per_step = (cfg.output_size() * 4) as u64;
    let t = (max / per_step + 1) as usize;
    assert!(t * 4 <= 64 << 20, "host input would be {} bytes", t * 4);
    let mut rnn = Rnn::new(RnnParams::random(cfg, 30), &Device::Gpu(ctx.clone())).unwrap();
    let x = Tensor::zeros(&[t, 1, 1]);
    let err = rnn.forward(&x, None).unwrap_err();
    let needed = t as u64 * per_step;
    assert!(
        matches!(&err, Error::Limit { what, limit, needed: n, max: m }
            if what == "buffer output" && *limit == "max_storage_buffer_binding_size"
                && *n == needed && *m == max),
        "{err:?}"
    );
    assert_msg(
        &err,
        &[
            "buffer output",
            "max_storage_buffer_binding_size",
            &needed.to_string(),
            &max.to_string(),
        ],
    );
    // The model is still usable at a size that fits.
    let out = rnn.forward(&Tensor::zeros(&[3, 1, 1]), None).unwrap();
    assert_eq!(out.output.shape(), &[3, 1, 512]);
}

/// A batch needing more step workgroups than `max_compute_workgroups_per_dimension` allows.
/// The step kernels cover `STEP_ROWS` batch rows per workgroup, so `B = STEP_ROWS·max + 1`
/// needs `max + 1` workgroups along y.
#[test]
fn batch_over_dispatch_limit() {
    let ctx = common::gpu();
    let max = ctx.limits().max_compute_workgroups_per_dimension as usize;
    let b = wgpu_rnn::gpu::kernels::STEP_ROWS as usize * max + 1;
    let cfg = RnnConfig::new(Cell::RnnTanh, 1, 1);
    let mut rnn = Rnn::new(RnnParams::random(cfg, 31), &Device::Gpu(ctx.clone())).unwrap();
    let Err(err) = rnn.forward(&Tensor::zeros(&[1, b, 1]), None) else {
        panic!("a forward pass at B = {b} should exceed the dispatch limit");
    };
    assert!(
        matches!(&err, Error::Limit { limit, needed, max: m, .. }
            if *limit == "max_compute_workgroups_per_dimension"
                && *needed == max as u64 + 1 && *m == max as u64),
        "{err:?}"
    );
    assert_msg(
        &err,
        &[
            "dispatch Step(rnn_tanh)",
            "max_compute_workgroups_per_dimension",
            &(max + 1).to_string(),
            &max.to_string(),
        ],
    );
    let out = rnn.forward(&Tensor::zeros(&[2, 3, 1]), None).unwrap();
    assert_eq!(out.h_n.shape(), &[1, 3, 1]);
}

#[test]
fn context_limit_checks() {
    let ctx = common::gpu();
    let limits = ctx.limits().clone();
    let sb = limits.max_storage_buffer_binding_size;
    ctx.check_buffer("x", sb).unwrap();
    let err = ctx.check_buffer("x", sb + 1).unwrap_err();
    assert!(
        matches!(&err, Error::Limit { what, limit, needed, max }
            if what == "buffer x" && *limit == "max_storage_buffer_binding_size"
                && *needed == sb + 1 && *max == sb),
        "{err:?}"
    );
    assert_msg(&err, &["buffer x", &(sb + 1).to_string(), &sb.to_string()]);
    let err = ctx.check_buffer("huge", u64::MAX).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Limit {
                needed: u64::MAX,
                ..
            }
        ),
        "{err:?}"
    );

    let wg = limits.max_compute_workgroups_per_dimension;
    ctx.check_dispatch("k", [wg, wg, 1]).unwrap();
    let err = ctx.check_dispatch("k", [1, 1, wg + 1]).unwrap_err();
    assert!(
        matches!(&err, Error::Limit { what, limit, needed, max }
            if what == "dispatch k" && *limit == "max_compute_workgroups_per_dimension"
                && *needed == wg as u64 + 1 && *max == wg as u64),
        "{err:?}"
    );
    assert_msg(
        &err,
        &["dispatch k", &(wg + 1).to_string(), &wg.to_string()],
    );
}

/// Regression: a GPU forward that failed its checks used to leave the previous forward ready
/// to differentiate, so backward returned the earlier pass's gradients.
#[test]
fn backward_after_a_failed_forward_is_an_error() {
    let params = RnnParams::random(RnnConfig::new(Cell::RnnTanh, 3, 4), 1);
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let mut rnn = Rnn::new(params.clone(), &device).unwrap();
        rnn.forward(&Tensor::full(&[2, 1, 3], 0.5), None).unwrap();
        assert!(rnn.forward(&Tensor::zeros(&[2, 1, 5]), None).is_err());
        let err = rnn
            .backward(&Tensor::full(&[2, 1, 4], 1.0), None)
            .unwrap_err();
        assert!(
            matches!(err, Error::Config(_)),
            "{}: {err:?}",
            device.describe()
        );
    }
}

/// Without gradients a forward pass keeps nothing: backward is an error naming
/// `set_grad_enabled`, whatever layout the forward pass took, until gradients are on again
/// and a forward pass runs.
#[test]
fn backward_after_a_forward_without_gradients_is_an_error() {
    let params = RnnParams::random(RnnConfig::new(Cell::Lstm, 3, 4).batch_first(true), 1);
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let mut rnn = Rnn::new(params.clone(), &device).unwrap();
        rnn.forward(&Tensor::full(&[2, 5, 3], 0.5), None).unwrap();
        rnn.set_grad_enabled(false);
        assert!(!rnn.grad_enabled());
        for x in [Tensor::full(&[2, 5, 3], 0.5), Tensor::full(&[5, 3], 0.5)] {
            let out = rnn.forward(&x, None).unwrap();
            for grad in [
                Tensor::full(out.output.shape(), 1.0),
                Tensor::full(&[5, 1, 4], 1.0),
            ] {
                let err = rnn.backward(&grad, None).unwrap_err();
                assert_msg(&err, &["no forward pass", "set_grad_enabled"]);
            }
        }
        rnn.set_grad_enabled(true);
        let err = rnn
            .backward(&Tensor::full(&[2, 5, 4], 1.0), None)
            .unwrap_err();
        assert_msg(&err, &["no forward pass"]);
        let out = rnn.forward(&Tensor::full(&[2, 5, 3], 0.5), None).unwrap();
        let g = rnn.backward(&Tensor::full(out.output.shape(), 1.0), None);
        assert!(g.is_ok(), "{}: {g:?}", device.describe());
    }
}

#[test]
fn training_inputs_that_do_not_fit_the_model_are_errors() {
    use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer};
    let cfg = TrainConfig {
        optimizer: Optimizer::adam(1e-3),
        clip_norm: None,
    };
    let model = SeqModel::new(
        RnnConfig::new(Cell::RnnTanh, 5, 4),
        Task::Tokens { vocab: 5 },
        0,
    )
    .unwrap();
    // A head of the wrong shape, caught before anything reaches a kernel.
    let mut bad = model.clone();
    bad.head_w = Tensor::zeros(&[5, 3]);
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let err = Trainer::new(TrainState::new(bad.clone()), cfg, &device)
            .err()
            .expect("bad head accepted");
        assert_msg(&err, &["head.weight", "[5, 4]", "[5, 3]"]);
        // A token outside the vocabulary, and a batch of the wrong size.
        let mut tr = Trainer::new(TrainState::new(model.clone()), cfg, &device).unwrap();
        let b = Batch::Tokens {
            t: 2,
            b: 1,
            inputs: vec![0, 5],
            targets: vec![1, 2],
        };
        assert_msg(
            &tr.step(&b, false).unwrap_err(),
            &["inputs", "token 5", "vocabulary of 5"],
        );
        let b = Batch::Tokens {
            t: 2,
            b: 2,
            inputs: vec![0, 1, 2],
            targets: vec![1, 2, 3, 4],
        };
        assert_msg(
            &tr.step(&b, false).unwrap_err(),
            &["inputs", "[2, 2]", "[3]"],
        );
        let b = Batch::Values {
            input: Tensor::zeros(&[2, 1, 5]),
            target: Tensor::zeros(&[2, 1, 5]),
        };
        assert!(matches!(tr.step(&b, false).unwrap_err(), Error::Config(_)));
    }
    // A vocabulary that differs from the input size.
    assert!(
        SeqModel::new(
            RnnConfig::new(Cell::RnnTanh, 4, 4),
            Task::Tokens { vocab: 5 },
            0
        )
        .is_err()
    );
    assert!(
        SeqModel::new(
            RnnConfig::new(Cell::RnnTanh, 4, 4),
            Task::Regression { outputs: 0 },
            0
        )
        .is_err()
    );
    // evaluate checks h0.
    let b = Batch::Tokens {
        t: 2,
        b: 1,
        inputs: vec![0, 1],
        targets: vec![1, 2],
    };
    let err = model.evaluate(&b, &Tensor::zeros(&[1, 2, 4])).unwrap_err();
    assert_msg(&err, &["h0", "[1, 1, 4]", "[1, 2, 4]"]);
    // Truncated BPTT needs T + 1 characters per stream.
    let err = wgpu_rnn::train::data::stream_batch(&[0; 10], 4, 0, 0).unwrap_err();
    assert_msg(&err, &["B = 0"]);
    let err = wgpu_rnn::train::data::stream_batch(&[0; 10], 4, 3, 0).unwrap_err();
    assert_msg(&err, &["3 characters per stream"]);
}

#[test]
fn a_misspelt_backend_is_named() {
    let opts = wgpu_rnn::gpu::AdapterOptions {
        backends: Some("vulkn".into()),
        ..Default::default()
    };
    let err = wgpu_rnn::gpu::GpuContext::new(&opts).unwrap_err();
    assert_msg(&err, &["backend", "vulkn"]);
}

/// `c0` (and `grad_c_n`) for a cell without a cell state, or of the wrong shape, is an error
/// naming it, on both devices.
#[test]
fn cell_state_errors_name_the_tensor() {
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let x = Tensor::zeros(&[3, 2, 4]);
        let good = Tensor::zeros(&[1, 2, 5]);
        let bad = Tensor::zeros(&[1, 3, 5]);
        let cfg = RnnConfig::new(Cell::Gru, 4, 5);
        let mut rnn = Rnn::new(RnnParams::random(cfg, 1), &device).unwrap();
        let err = rnn
            .forward(
                &x,
                State {
                    h: None,
                    c: Some(&good),
                },
            )
            .unwrap_err();
        assert_msg(&err, &["c0", "gru", "no cell state"]);
        let cfg = RnnConfig::new(Cell::Lstm, 4, 5);
        let mut rnn = Rnn::new(RnnParams::random(cfg, 1), &device).unwrap();
        let err = rnn
            .forward(
                &x,
                State {
                    h: Some(&good),
                    c: Some(&bad),
                },
            )
            .unwrap_err();
        assert!(
            matches!(&err, Error::Shape { name, .. } if name == "c0"),
            "{err:?}"
        );
        let out = rnn
            .forward(
                &x,
                State {
                    h: Some(&good),
                    c: Some(&good),
                },
            )
            .unwrap();
        assert_eq!(out.c_n.as_ref().map(Tensor::shape), Some(&[1, 2, 5][..]));
        let err = rnn
            .backward(
                &Tensor::zeros(&[3, 2, 5]),
                State {
                    h: None,
                    c: Some(&bad),
                },
            )
            .unwrap_err();
        assert!(
            matches!(&err, Error::Shape { name, .. } if name == "grad_c_n"),
            "{err:?}"
        );
    }
}
