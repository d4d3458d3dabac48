//! The `wgpu-rnn` binary: the forward file contract on every Elman, LSTM and GRU golden case,
//! models saved from larger modules (`--prefix`), and errors that exit non-zero with a message
//! instead of a panic.

mod common;

use std::path::PathBuf;
use std::process::Command;

use wgpu_rnn::TensorFile;

use common::{ELMAN, GATED, golden};

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wgpu-rnn-cli-{}-{name}", std::process::id()))
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
        .args(args)
        .output()
        .expect("run wgpu-rnn")
}

/// `wgpu-rnn COMMAND --model M --input C --output O --device D EXTRA...` (the file contract).
fn contract(
    command: &str,
    model: &std::path::Path,
    input: &std::path::Path,
    output: &std::path::Path,
    device: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        command,
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--device",
        device,
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

#[test]
fn forward_and_backward_reproduce_golden_cases_on_both_devices() {
    for (command, device) in [
        ("forward", "cpu"),
        ("forward", "gpu"),
        ("backward", "cpu"),
        ("backward", "gpu"),
    ] {
        for name in ELMAN
            .into_iter()
            .chain(GATED)
            .chain(common::PROJ)
            .chain(common::VARLEN)
        {
            let out = tmp(&format!("{name}-{command}-{device}.safetensors"));
            let (m, c) = (golden(name, "model"), golden(name, "case"));
            let r = contract(command, &m, &c, &out, device, &[]);
            assert!(
                r.status.success(),
                "{name} on {device}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            let got = TensorFile::read(&out).unwrap();
            let want = TensorFile::read(&c).unwrap();
            let names: Vec<&String> = got.tensors.keys().collect();
            // output, h_n (and c_n), plus every grad.* for backward.
            let answers = 2 + want.tensors.contains_key("c_n") as usize;
            let expected = if command == "forward" {
                answers
            } else {
                want.tensors
                    .keys()
                    .filter(|k| k.starts_with("grad."))
                    .count()
                    + answers
            };
            assert_eq!(names.len(), expected, "{name} {command}: wrote {names:?}");
            for (t, g) in &got.tensors {
                let tol = if t.starts_with("grad.") { 2e-4 } else { 2e-5 };
                common::assert_close(
                    &format!("{name} {command} {device} {t}"),
                    g,
                    &want.tensors[t],
                    tol,
                );
            }
            std::fs::remove_file(out).ok();
        }
    }
}

#[test]
fn forward_errors_exit_nonzero_with_a_message() {
    let out = tmp("never-written.safetensors");
    let m = golden("rnn_tanh_1l", "model");
    let wrong_case = golden("rnn_relu_2l", "case"); // input has 4 features, the model takes 5
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "forward",
                "--model",
                "/nonexistent/m.safetensors",
                "--input",
                "x",
                "--output",
                "y",
            ],
            "/nonexistent/m.safetensors",
        ),
        (
            &[
                "forward",
                "--model",
                m.to_str().unwrap(),
                "--input",
                wrong_case.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--device",
                "cpu",
            ],
            "input: expected shape [6, 2, 5], found [6, 2, 4]",
        ),
        (
            &[
                "forward",
                "--model",
                m.to_str().unwrap(),
                "--input",
                m.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--device",
                "cpu",
            ],
            "unknown tensor",
        ),
    ];
    for (args, needle) in cases {
        let r = cli(args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} should fail");
        assert!(
            err.contains(needle),
            "{args:?}: stderr {err:?} lacks {needle:?}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    assert!(!out.exists(), "a failed run must not write its output");
}

#[test]
fn no_adapter_is_a_clear_error() {
    let r = cli(&["info", "--adapter", "no-such-adapter-name-xyz"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(err.contains("no GPU adapter found"), "{err}");
    assert!(err.contains("mesa-vulkan-drivers"), "{err}");
}

#[test]
fn train_sample_and_predict_run_end_to_end() {
    let dir = tmp("runs");
    let out = dir.join("charlm");
    let o = out.to_str().unwrap();
    for device in ["cpu", "gpu"] {
        let r = cli(&[
            "train",
            "--steps",
            "20",
            "--hidden",
            "16",
            "--batch",
            "4",
            "--seq",
            "16",
            "--eval-every",
            "10",
            "--device",
            device,
            "--out",
            o,
        ]);
        let stdout = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success(),
            "train on {device}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(stdout.contains("final validation loss"), "{stdout}");
        assert!(out.join("checkpoint.safetensors").exists() && out.join("loss.svg").exists());
    }
    // Resume to 30 steps, then sample.
    let ckpt = out.join("checkpoint.safetensors");
    let c = ckpt.to_str().unwrap();
    let r = cli(&[
        "train", "--steps", "30", "--seq", "16", "--batch", "4", "--device", "cpu", "--resume", c,
        "--out", o,
    ]);
    assert!(
        r.status.success(),
        "resume: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("10 steps"),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    let sample = [
        "sample",
        "--checkpoint",
        c,
        "--len",
        "40",
        "--prime",
        "The ",
        "--seed",
        "3",
    ];
    let r = cli(&sample);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(
        text.starts_with("The ") && text.chars().count() >= 44,
        "{text:?}"
    );
    let again = cli(&sample);
    assert_eq!(again.stdout, r.stdout, "the same seed gives the same text");
    // Streamed one character at a time on either device, the same text.
    for device in ["cpu", "gpu"] {
        let on = cli(&[&sample[..], &["--device", device]].concat());
        assert!(
            on.status.success(),
            "{}",
            String::from_utf8_lossy(&on.stderr)
        );
        assert_eq!(on.stdout, r.stdout, "sample --device {device}");
    }
    // The training checkpoint (stack under `rnn.`, a head, optimizer state) runs through
    // `forward` as a model file, without --prefix: a [T, B, V] input of the 16 hidden units.
    let case = dir.join("ckpt-case.safetensors");
    let ckpt_file = TensorFile::read(&ckpt).unwrap();
    let vocab = ckpt_file.tensors["rnn.weight_ih_l0"].shape()[1];
    let mut cf = TensorFile::default();
    cf.tensors
        .insert("input".into(), wgpu_rnn::Tensor::full(&[3, 2, vocab], 0.1));
    cf.write(&case).unwrap();
    let fwd_out = dir.join("ckpt-out.safetensors");
    let r = cli(&[
        "forward",
        "--model",
        c,
        "--input",
        case.to_str().unwrap(),
        "--output",
        fwd_out.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let got = TensorFile::read(&fwd_out).unwrap();
    assert_eq!(got.tensors["output"].shape(), &[3, 2, 16]);
    // A prime outside the vocabulary is an error, not a panic.
    let r = cli(&["sample", "--checkpoint", c, "--prime", "\u{2603}"]);
    assert!(
        !r.status.success() && String::from_utf8_lossy(&r.stderr).contains("not in the vocabulary")
    );

    // Time series: the built-in series and a CSV column, on both devices.
    let csv = dir.join("series.csv");
    let mut text = String::from("time,value\n");
    for i in 0..600 {
        text.push_str(&format!("{i},{}\n", (i as f32 * 0.1).sin()));
    }
    std::fs::write(&csv, text).unwrap();
    let so = dir.join("series");
    for (device, extra) in [
        ("gpu", vec![]),
        (
            "cpu",
            vec!["--csv", csv.to_str().unwrap(), "--column", "value"],
        ),
    ] {
        let mut args = vec![
            "predict",
            "--steps",
            "40",
            "--hidden",
            "8",
            "--batch",
            "4",
            "--seq",
            "20",
            "--device",
            device,
            "--out",
            so.to_str().unwrap(),
            "--forecast",
            "3",
        ];
        args.extend(extra);
        let r = cli(&args);
        let stdout = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success(),
            "predict on {device}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(stdout.contains("naive last value"), "{stdout}");
        assert!(
            stdout.contains("t+3:") && !stdout.contains("t+4:"),
            "{stdout}"
        );
        assert!(
            so.join("forecast.svg").exists(),
            "{device}: no forecast plot"
        );
    }
    let r = cli(&[
        "predict",
        "--csv",
        csv.to_str().unwrap(),
        "--column",
        "nope",
        "--device",
        "cpu",
    ]);
    assert!(
        !r.status.success()
            && String::from_utf8_lossy(&r.stderr).contains("no column named \"nope\"")
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Trains a tiny character model on the CPU into `dir` and returns its checkpoint.
fn tiny_checkpoint(dir: &std::path::Path) -> PathBuf {
    let r = cli(&[
        "train",
        "--steps",
        "2",
        "--hidden",
        "4",
        "--batch",
        "2",
        "--seq",
        "8",
        "--eval-every",
        "0",
        "--device",
        "cpu",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    dir.join("checkpoint.safetensors")
}

/// Runs the binary, expecting failure without a panic; returns stderr.
#[track_caller]
fn fails(args: &[&str]) -> String {
    let r = cli(args);
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(!r.status.success(), "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err
}

#[test]
fn sample_names_the_argument_that_is_wrong() {
    let dir = tmp("sample-args");
    let ckpt = tiny_checkpoint(&dir);
    let c = ckpt.to_str().unwrap();
    let err = fails(&["sample", "--checkpoint", c, "--temperature", "0"]);
    assert_eq!(
        err.trim(),
        "error: invalid configuration: sample: temperature must be a finite number > 0, found 0"
    );
    let err = fails(&["sample", "--checkpoint", c, "--temperature=-1"]);
    assert!(
        err.contains("temperature must be a finite number > 0, found -1"),
        "{err}"
    );
    let err = fails(&["sample", "--checkpoint", c, "--prime", ""]);
    assert!(
        err.contains("prime is empty") && !err.contains("temperature"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_text_that_is_not_utf8_is_named_once_with_its_offset() {
    let dir = tmp("not-utf8");
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("latin1.txt");
    // "caf\xe9" in Latin-1: the é is byte 14, on line 2.
    std::fs::write(&text, b"first line\ncaf\xe9 au lait\n").unwrap();
    let t = text.to_str().unwrap();
    let err = fails(&["train", "--text", t, "--steps", "1", "--device", "cpu"]);
    assert_eq!(
        err.trim(),
        format!(
            "error: {t}: not valid UTF-8: the first invalid byte sequence is at byte offset 14 \
             (line 2)"
        )
    );
    // The operating system's message is printed once too (it used to repeat as the cause).
    let missing = dir.join("missing.txt");
    let err = fails(&[
        "train",
        "--text",
        missing.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing.txt: "), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `predict --csv`: quoted cells, other delimiters, and cells that are not numbers.
#[test]
fn predict_reads_csv_through_a_parser() {
    let dir = tmp("predict-csv");
    std::fs::create_dir_all(&dir).unwrap();
    // Humidity around 70, temperature around 20; the city names hold commas.
    let mut text = String::from("city,temp,humidity\r\n");
    let mut tsv = String::from("\u{feff}temp\thumidity\n");
    for i in 0..60 {
        let (temp, hum) = (20.0 + (i as f32 * 0.3).sin(), 70.0 + (i as f32 * 0.2).cos());
        text.push_str(&format!("\"Paris, FR {i}\",{temp},{hum}\r\n"));
        tsv.push_str(&format!("{temp}\t{hum}\n"));
    }
    let csv = dir.join("cities.csv");
    std::fs::write(&csv, &text).unwrap();
    let tsv_path = dir.join("cities.tsv");
    std::fs::write(&tsv_path, &tsv).unwrap();
    let out = dir.join("out");
    let run = |file: &PathBuf, extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--csv",
            file.to_str().unwrap(),
            "--column",
            "humidity",
            "--steps",
            "2",
            "--hidden",
            "4",
            "--batch",
            "2",
            "--seq",
            "5",
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let r = cli(&args);
        assert!(
            r.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let meta = TensorFile::read(out.join("checkpoint.safetensors"))
            .unwrap()
            .metadata;
        meta["series.mean"].parse::<f32>().unwrap()
    };
    for (file, extra) in [
        (&csv, vec![]),
        (&tsv_path, vec!["--delimiter", "\\t"]),
        (&tsv_path, vec!["--delimiter", "tab"]),
    ] {
        let mean = run(file, &extra);
        assert!(
            (69.0..71.0).contains(&mean),
            "{file:?} {extra:?}: trained on a series of mean {mean}, not the humidity"
        );
    }
    // A multi-character or multi-byte delimiter is refused by the argument parser.
    for (d, part) in [(";;", "2 characters"), ("§", "2 bytes")] {
        let err = fails(&["predict", "--csv", "x.csv", "--delimiter", d]);
        assert!(err.contains("--delimiter") && err.contains(part), "{err}");
    }
    // A quoted decimal comma is a cell that is not a number, named with its place.
    let bad = dir.join("decimal.csv");
    std::fs::write(&bad, "day,temp\nd0,\"20,37\"\nd1,21\n").unwrap();
    let b = bad.to_str().unwrap();
    let err = fails(&["predict", "--csv", b, "--column", "temp", "--device", "cpu"]);
    assert_eq!(
        err.trim(),
        format!(
            "error: {b}: line 2, column 2 \"temp\" (counting from 1): \"20,37\" is not a number"
        )
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A stack saved inside a larger module loads with and without `--prefix`; a file with two
/// stacks is an error listing both prefixes unless `--prefix` picks one.
#[test]
fn models_saved_from_larger_modules_load_by_prefix() {
    let name = "lstm_2l_bidir";
    let (m, c) = (golden(name, "model"), golden(name, "case"));
    let stack = TensorFile::read(&m).unwrap();
    let nest = |prefixes: &[&str]| {
        let mut f = TensorFile::default();
        for p in prefixes {
            for (n, t) in &stack.tensors {
                f.tensors.insert(format!("{p}{n}"), t.clone());
            }
        }
        f.tensors
            .insert("model.head.weight".into(), wgpu_rnn::Tensor::zeros(&[2, 3]));
        f
    };
    let run = |model: &std::path::Path, prefix: Option<&str>| {
        let out = tmp(&format!("prefix-{}.safetensors", prefix.unwrap_or("none")));
        let mut args = vec![
            "forward",
            "--model",
            model.to_str().unwrap(),
            "--input",
            c.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--device",
            "cpu",
        ];
        if let Some(p) = prefix {
            args.extend(["--prefix", p]);
        }
        let r = cli(&args);
        let got = r.status.success().then(|| TensorFile::read(&out).unwrap());
        std::fs::remove_file(&out).ok();
        (got, String::from_utf8_lossy(&r.stderr).to_string())
    };
    let want = TensorFile::read(&c).unwrap();
    let one = tmp("one-stack.safetensors");
    nest(&["model.encoder.rnn."]).write(&one).unwrap();
    for prefix in [None, Some("model.encoder.rnn.")] {
        let (got, err) = run(&one, prefix);
        let got = got.unwrap_or_else(|| panic!("prefix {prefix:?}: {err}"));
        common::assert_close(
            "nested output",
            &got.tensors["output"],
            &want.tensors["output"],
            2e-5,
        );
        common::assert_close(
            "nested c_n",
            &got.tensors["c_n"],
            &want.tensors["c_n"],
            2e-5,
        );
    }
    let two = tmp("two-stacks.safetensors");
    nest(&["encoder.rnn.", "decoder.rnn."]).write(&two).unwrap();
    let (got, err) = run(&two, None);
    assert!(got.is_none(), "two stacks loaded without a prefix");
    for part in [
        "2 recurrent stacks",
        "\"decoder.rnn.\"",
        "\"encoder.rnn.\"",
        "--prefix",
    ] {
        assert!(err.contains(part), "{err:?} does not contain {part:?}");
    }
    let (got, err) = run(&two, Some("decoder.rnn."));
    assert!(got.is_some(), "{err}");
    let (got, err) = run(&two, Some("nothing.here."));
    assert!(
        got.is_none() && err.contains("nothing.here.weight_hh_l0"),
        "{err}"
    );
    std::fs::remove_file(one).ok();
    std::fs::remove_file(two).ok();
}

/// `train --cell` for the gated cells on both devices, then `sample` from the checkpoint,
/// which records the cell (the state carries c from character to character).
#[test]
fn every_cell_trains_and_samples() {
    let dir = tmp("cells");
    for (cell, device) in [
        ("lstm", "gpu"),
        ("gru", "cpu"),
        ("lstm", "cpu"),
        ("gru", "gpu"),
    ] {
        let out = dir.join(format!("{cell}-{device}"));
        let o = out.to_str().unwrap();
        let r = cli(&[
            "train",
            "--cell",
            cell,
            "--layers",
            "2",
            "--steps",
            "6",
            "--hidden",
            "12",
            "--batch",
            "3",
            "--seq",
            "10",
            "--eval-every",
            "0",
            "--device",
            device,
            "--out",
            o,
        ]);
        let stdout = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success(),
            "{cell} on {device}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(
            stdout.contains(&format!("model: {cell} H=12 L=2")),
            "{stdout}"
        );
        let ckpt = out.join("checkpoint.safetensors");
        let r = cli(&[
            "sample",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--len",
            "20",
            "--prime",
            "The ",
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(
            text.starts_with("The ") && text.chars().count() >= 24,
            "{text:?}"
        );
    }
    let r = cli(&["train", "--cell", "lstn", "--steps", "1"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("lstn") && err.contains("gru"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Single-cell files (nn.LSTMCell and friends) through `forward` on both devices, and through
/// `backward`, whose parameter gradients keep the cell's names.
#[test]
fn single_cell_files_through_the_contract() {
    for name in common::CELLS {
        let (m, c) = (golden(name, "model"), golden(name, "case"));
        let want = TensorFile::read(&c).unwrap();
        for device in ["cpu", "gpu"] {
            let out = tmp(&format!("{name}-{device}.safetensors"));
            let r = contract("forward", &m, &c, &out, device, &[]);
            assert!(
                r.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            let got = TensorFile::read(&out).unwrap();
            common::assert_close(name, &got.tensors["output"], &want.tensors["output"], 2e-5);
            std::fs::remove_file(out).ok();
        }
        let mut case = TensorFile::default();
        case.tensors
            .insert("input".into(), want.tensors["input"].clone());
        let shape = want.tensors["output"].shape().to_vec();
        case.tensors
            .insert("grad_output".into(), wgpu_rnn::Tensor::full(&shape, 1.0));
        let case_path = tmp(&format!("{name}-bwd-case.safetensors"));
        case.write(&case_path).unwrap();
        let out = tmp(&format!("{name}-bwd.safetensors"));
        let r = contract("backward", &m, &case_path, &out, "cpu", &[]);
        assert!(
            r.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let got = TensorFile::read(&out).unwrap();
        assert!(
            got.tensors.contains_key("grad.weight_hh")
                && !got.tensors.contains_key("grad.weight_hh_l0"),
            "{name}: {:?}",
            got.tensors.keys().collect::<Vec<_>>()
        );
        std::fs::remove_file(out).ok();
        std::fs::remove_file(case_path).ok();
    }
}

/// `--batch-first`: a golden case transposed to [B, T, I] gives the transposed answers.
#[test]
fn batch_first_contract() {
    let name = "gru_2l_bidir";
    let (m, c) = (golden(name, "model"), golden(name, "case"));
    let want = TensorFile::read(&c).unwrap();
    let swap = |t: &wgpu_rnn::Tensor| {
        let s = t.shape();
        let mut data = Vec::new();
        for j in 0..s[1] {
            for i in 0..s[0] {
                data.extend_from_slice(&t.data()[(i * s[1] + j) * s[2]..][..s[2]]);
            }
        }
        wgpu_rnn::Tensor::new(vec![s[1], s[0], s[2]], data).unwrap()
    };
    let mut case = TensorFile::default();
    case.tensors
        .insert("input".into(), swap(&want.tensors["input"]));
    case.tensors.insert("h0".into(), want.tensors["h0"].clone());
    let case_path = tmp("bf-case.safetensors");
    case.write(&case_path).unwrap();
    let out = tmp("bf-out.safetensors");
    let r = contract("forward", &m, &case_path, &out, "gpu", &["--batch-first"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let got = TensorFile::read(&out).unwrap();
    common::assert_close(
        "batch_first output",
        &got.tensors["output"],
        &swap(&want.tensors["output"]),
        2e-5,
    );
    common::assert_close(
        "batch_first h_n",
        &got.tensors["h_n"],
        &want.tensors["h_n"],
        2e-5,
    );
    std::fs::remove_file(out).ok();
    std::fs::remove_file(case_path).ok();
}

/// A case's `lengths` that are 0, over T, negative, not whole numbers or of the wrong count
/// are errors naming `lengths`, with the index and value.
#[test]
fn bad_lengths_in_a_case_are_errors() {
    let name = "gru_varlen_2l";
    let (m, c) = (golden(name, "model"), golden(name, "case"));
    let want = TensorFile::read(&c).unwrap();
    let run = |lengths: Option<Vec<i64>>, float: Option<Vec<f32>>, parts: &[&str]| {
        let mut case = TensorFile::default();
        case.tensors
            .insert("input".into(), want.tensors["input"].clone());
        if let Some(l) = lengths {
            let t = wgpu_rnn::IntTensor {
                shape: vec![l.len()],
                values: l,
                dtype: "I64".into(),
            };
            case.int_tensors.insert("lengths".into(), t);
        }
        if let Some(f) = float {
            case.tensors.insert(
                "lengths".into(),
                wgpu_rnn::Tensor::new(vec![f.len()], f).unwrap(),
            );
        }
        let path = tmp("bad-lengths.safetensors");
        case.write(&path).unwrap();
        let out = tmp("bad-lengths-out.safetensors");
        let r = contract("forward", &m, &path, &out, "cpu", &[]);
        let err = String::from_utf8_lossy(&r.stderr).to_string();
        assert!(!r.status.success() && !out.exists(), "{parts:?}: {err}");
        for p in parts {
            assert!(err.contains(p), "{err:?} lacks {p:?}");
        }
        std::fs::remove_file(path).ok();
    };
    run(
        Some(vec![8, 0, 3]),
        None,
        &["lengths[1]", "1..=8", "found 0"],
    );
    run(Some(vec![8, 9, 3]), None, &["lengths[1]", "found 9"]);
    run(Some(vec![8, 2, -3]), None, &["lengths[2]", "found -3"]);
    run(
        Some(vec![8, 2]),
        None,
        &["lengths", "expected 3", "found 2"],
    );
    run(
        None,
        Some(vec![8.0, 2.5, 3.0]),
        &["lengths[1]", "whole number", "2.5"],
    );
}

/// An unbatched case takes one length; an integer tensor other than `lengths` is an error
/// naming it.
#[test]
fn unbatched_lengths_and_integer_tensors_in_a_case() {
    let m = golden("gru_1l", "model");
    let want = TensorFile::read(golden("gru_1l", "case")).unwrap();
    let x = &want.tensors["input"]; // [T, B, I]
    let (t, i) = (x.shape()[0], x.shape()[2]);
    let x1: Vec<f32> = (0..t)
        .flat_map(|a| x.data()[a * x.shape()[1] * i..][..i].to_vec())
        .collect();
    let run = |case: TensorFile, what: &str| {
        let path = tmp(&format!("{what}.safetensors"));
        case.write(&path).unwrap();
        let out = tmp(&format!("{what}-out.safetensors"));
        let r = contract("forward", &m, &path, &out, "cpu", &[]);
        std::fs::remove_file(path).ok();
        std::fs::remove_file(&out).ok();
        (
            r.status.success(),
            String::from_utf8_lossy(&r.stderr).to_string(),
        )
    };
    let mut case = TensorFile::default();
    case.tensors.insert(
        "input".into(),
        wgpu_rnn::Tensor::new(vec![t, i], x1).unwrap(),
    );
    let l = wgpu_rnn::IntTensor {
        shape: vec![1],
        values: vec![2],
        dtype: "I64".into(),
    };
    case.int_tensors.insert("lengths".into(), l);
    let (ok, err) = run(case.clone(), "unbatched-lengths");
    assert!(ok, "{err}");
    let h = wgpu_rnn::IntTensor {
        shape: vec![1, 6],
        values: vec![1; 6],
        dtype: "I64".into(),
    };
    case.int_tensors.insert("h0".into(), h);
    let (ok, err) = run(case, "int-h0");
    assert!(!ok && err.contains("h0") && err.contains("I64"), "{err}");
}
