//! `wgpu-rnn bench`: the suite file is the only list of cases, and `--json` lines are in the
//! format of PyTorch's side-by-side script (name, device, pass, ms, gflops) so that they join
//! with its output on (name, pass).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;
use wgpu_rnn::suite::Suite;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run wgpu-rnn")
}

#[test]
fn the_suite_file_is_the_compiled_in_suite() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/suite.json"))
        .unwrap();
    let suite = Suite::parse(&text).unwrap();
    assert_eq!(suite, Suite::builtin());
    assert!(suite.case("charlm").is_some_and(|c| c.vocab == Some(65)));
    let names: BTreeSet<&str> = suite.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), suite.cases.len(), "case names are unique");
}

/// The cells the engine runs; a case of another cell must be reported as skipped. (When a cell
/// lands, add it here: the test then demands its cases run.)
const ENGINE_CELLS: [&str; 4] = ["rnn_tanh", "rnn_relu", "lstm", "gru"];

/// Every case of the suite (gpu_only ones included) either gives a forward and a train line
/// on both devices, or is reported skipped with its reason; every line has the five fields of
/// PyTorch's script in its order and with its separators, and joins with PyTorch's lines on
/// (name, pass) as `join.py` does.
#[test]
fn quick_json_covers_the_suite_and_joins_with_pytorch_lines() {
    let out = bench(&["--quick", "--json", "--repeats", "1", "--gpu-suite"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}");
    let mut ours: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    let mut constants = 0;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        // json.dumps's layout: the keys in the script's order, ", " and ": " separators.
        let at = |key: &str| line.find(&format!("\"{key}\": ")).unwrap_or(usize::MAX);
        let order = ["name", "device", "pass", "ms", "gflops"].map(at);
        assert!(line.starts_with("{\"name\": \""), "{line}");
        assert!(
            order.windows(2).all(|w| w[0] < w[1] && w[1] != usize::MAX),
            "{line}"
        );
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let name = v["name"].as_str().unwrap_or_else(|| panic!("{line}: name"));
        let device = v["device"]
            .as_str()
            .unwrap_or_else(|| panic!("{line}: device"));
        let pass = v["pass"].as_str().unwrap_or_else(|| panic!("{line}: pass"));
        let ms = v["ms"].as_f64().unwrap_or_else(|| panic!("{line}: ms"));
        assert!(v["gflops"].as_f64().is_some(), "{line}: gflops");
        assert!(ms >= 0.0 && ms.is_finite(), "{line}: ms");
        assert!(matches!(device, "wgpu-rnn-gpu" | "wgpu-rnn-cpu"), "{line}");
        match pass {
            "constant" => constants += 1,
            "forward" | "train" => {
                let bytes = v["bytes"].as_u64();
                assert_eq!(
                    bytes.is_some(),
                    device == "wgpu-rnn-gpu",
                    "{line}: bytes on GPU lines"
                );
                assert!(bytes.is_none_or(|b| b > 0), "{line}");
                assert!(v["gflops"].as_f64().unwrap() > 0.0, "{line}");
            }
            other => panic!("{line}: pass {other}"),
        }
        let key = (name.to_string(), device.to_string(), pass.to_string());
        assert!(ours.insert(key, ms).is_none(), "{line}: duplicate");
    }
    assert_eq!(
        constants, 3,
        "the three cost constants lead the GPU's lines"
    );
    let suite = Suite::builtin();
    let mut joined = 0;
    for case in &suite.cases {
        let runs = ENGINE_CELLS.contains(&case.cell.as_str());
        let skipped = stderr.contains(&format!("skipped {}: ", case.name));
        assert_eq!(
            skipped, !runs,
            "{}: skipped exactly when its cell is missing",
            case.name
        );
        for pass in ["forward", "train"] {
            // The line PyTorch's script prints for this case and pass.
            let theirs = format!(
                "{{\"name\": \"{}\", \"device\": \"pytorch-cpu\", \"pass\": \"{pass}\", \"ms\": 1.5, \"gflops\": 2.0}}",
                case.name
            );
            let t: Value = serde_json::from_str(&theirs).unwrap();
            for device in ["wgpu-rnn-gpu", "wgpu-rnn-cpu"] {
                let key = (
                    t["name"].as_str().unwrap().to_string(),
                    device.to_string(),
                    t["pass"].as_str().unwrap().to_string(),
                );
                match ours.get(&key) {
                    Some(ms) => {
                        assert!(runs, "{key:?}: a skipped case has a line");
                        let ratio = ms / t["ms"].as_f64().unwrap();
                        assert!(ratio.is_finite() && ratio >= 0.0, "{key:?}");
                        joined += 1;
                    }
                    None => assert!(!runs, "{key:?}: missing"),
                }
            }
        }
    }
    let elman = suite
        .cases
        .iter()
        .filter(|c| ENGINE_CELLS.contains(&c.cell.as_str()));
    assert_eq!(
        joined,
        4 * elman.count(),
        "two passes on two devices per Elman case"
    );
    assert!(joined >= 4 * 7, "the suite has at least 7 Elman cases");
}

#[test]
fn an_unknown_case_is_an_error_naming_it() {
    let out = bench(&["--only", "tiny_b1,no_such_case", "--device", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("\"no_such_case\" is not in the suite"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tiny_b1"),
        "the known cases are listed: {stderr}"
    );
}

#[test]
fn only_picks_cases_on_one_device() {
    let out = bench(&[
        "--quick",
        "--only",
        "mid,charlm",
        "--device",
        "cpu",
        "--repeats",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("mid ") || l.starts_with("charlm "))
        .collect();
    assert_eq!(rows.len(), 4, "forward and train of two cases:\n{stdout}");
    assert!(!stdout.contains("tiny_b1"), "{stdout}");
}
