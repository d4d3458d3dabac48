//! Time series: a built-in noisy signal, a CSV column, normalisation, windows, and the
//! one-step-ahead forecast error against the naive last-value forecast.

use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::train::{Batch, SeqModel};

/// The built-in series: `sin(0.07t) + 0.5·sin(0.23t + 1) + 0.3·sin(0.011t)` plus uniform noise
/// of amplitude 0.1, from a seeded generator.
pub fn builtin_series(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|t| {
            let t = t as f32;
            (0.07 * t).sin()
                + 0.5 * (0.23 * t + 1.0).sin()
                + 0.3 * (0.011 * t).sin()
                + rng.random_range(-0.1f32..0.1)
        })
        .collect()
}

/// The cell separator of a CSV file from its command-line spelling: one single-byte
/// character (`,`, `;`, `|`, ...), or `\t` (a backslash and a `t`) or `tab` for a tab.
///
/// # Errors
/// [`Error::Config`] for an empty string, more than one character, a character that takes
/// more than one byte in UTF-8, or one that cannot separate cells (`"`, a line break).
pub fn parse_delimiter(s: &str) -> Result<u8> {
    if s == "\\t" || s.eq_ignore_ascii_case("tab") {
        return Ok(b'\t');
    }
    let chars = s.chars().count();
    if chars != 1 {
        return Err(Error::config(format!(
            "delimiter: expected one character (or \\t or tab for a tab), found {s:?} ({chars} characters)"
        )));
    }
    if s.len() != 1 {
        return Err(Error::config(format!(
            "delimiter: {s:?} takes {} bytes in UTF-8; the delimiter must be a one-byte (ASCII) character",
            s.len()
        )));
    }
    let b = s.as_bytes()[0];
    if matches!(b, b'"' | b'\n' | b'\r') {
        return Err(Error::config(format!(
            "delimiter: {s:?} cannot separate cells (it quotes cells or ends lines)"
        )));
    }
    Ok(b)
}

/// One column of a CSV file, by 0-based index or by header name.
///
/// The file is read by the `csv` crate: cells may be quoted (`"Paris, FR"`, with `""` for a
/// quote inside), lines may end in LF or CRLF, and a leading UTF-8 byte-order mark is
/// ignored. Cells are trimmed of surrounding whitespace. Lines that hold only whitespace are
/// skipped; rows may have different numbers of cells.
///
/// The first row is the header when `column` is a name, and when `column` is an index and
/// the first row's cell at that index is not a number; otherwise the first row is data.
///
/// # Errors
/// [`Error::Io`] when unreadable; [`Error::NotUtf8`] when not UTF-8; [`Error::Data`] for a
/// column name that is not in the header, and, naming the line, the column (1-based, and its
/// header name) and the cell's text, for a missing cell or one that is not a finite number
/// or overflows f32.
pub fn read_csv_column(path: impl AsRef<Path>, column: &str, delimiter: u8) -> Result<Vec<f32>> {
    let path = path.as_ref();
    let data_err = |message: String| Error::Data {
        path: path.to_path_buf(),
        message,
    };
    let text = crate::train::data::read_text(path)?;
    // Spreadsheet programs start UTF-8 files with a byte-order mark; the csv crate keeps it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    // Empty lines never become records; a line of blanks becomes one blank cell (or several
    // when the delimiter is itself whitespace).
    let blank = |r: &csv::StringRecord| {
        r.iter().all(|c| c.trim().is_empty())
            && (r.len() == 1 || (delimiter as char).is_ascii_whitespace())
    };
    // The csv crate's record position is where the previous record's reading stopped (before
    // the `\n` of a CRLF, before skipped empty lines), so its line number lags; the line is
    // counted here from the first byte of the record instead.
    let bytes = text.as_bytes();
    let (mut counted, mut line) = (0, 1);
    let mut rows = Vec::new();
    for r in reader.records() {
        let r = r.map_err(|e| data_err(e.to_string()))?;
        let mut start = r.position().map_or(0, |p| p.byte() as usize);
        while bytes.get(start).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            start += 1;
        }
        for i in counted..start {
            let crlf = bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n');
            line += usize::from(bytes[i] == b'\n' || (bytes[i] == b'\r' && !crlf));
        }
        counted = counted.max(start);
        if !blank(&r) {
            rows.push((line, r));
        }
    }
    let mut index = column.parse::<usize>().ok();
    let mut header = None;
    if let Some(first) = rows.first() {
        let is_header = match index {
            Some(i) => first
                .1
                .get(i)
                .is_some_and(|c| c.trim().parse::<f32>().is_err()),
            None => true,
        };
        if is_header {
            if index.is_none() {
                index = first.1.iter().position(|c| c.trim() == column);
            }
            header = Some(first.1.clone());
        }
    }
    let index = index.ok_or_else(|| match &header {
        Some(h) => {
            let names: Vec<&str> = h.iter().map(str::trim).collect();
            data_err(format!(
                "no column named {column:?} in the header {names:?}"
            ))
        }
        None => data_err(format!("no column named {column:?}: the file has no rows")),
    })?;
    let col = match header.as_ref().and_then(|h| h.get(index)) {
        Some(name) => format!("column {} {:?} (counting from 1)", index + 1, name.trim()),
        None => format!("column {} (counting from 1)", index + 1),
    };
    let skip = usize::from(header.is_some());
    let mut out = Vec::with_capacity(rows.len().saturating_sub(skip));
    for (line, r) in &rows[skip..] {
        let cell = r.get(index).map(str::trim).ok_or_else(|| {
            data_err(format!(
                "line {line}: no {col}: the row has {} cells",
                r.len()
            ))
        })?;
        let v: f32 = cell
            .parse()
            .map_err(|_| data_err(format!("line {line}, {col}: {cell:?} is not a number")))?;
        if !v.is_finite() {
            let what = if cell.parse::<f64>().is_ok_and(f64::is_finite) {
                "overflows float32"
            } else {
                "is not a finite number"
            };
            return Err(data_err(format!("line {line}, {col}: {cell:?} {what}")));
        }
        out.push(v);
    }
    Ok(out)
}

/// A series split into training and validation parts, normalised by the training part's
/// mean and standard deviation.
#[derive(Debug, Clone)]
pub struct Series {
    /// Normalised training values.
    pub train: Vec<f32>,
    /// Normalised validation values.
    pub valid: Vec<f32>,
    /// Mean of the training part.
    pub mean: f32,
    /// Standard deviation of the training part.
    pub std: f32,
}

impl Series {
    /// Splits off the last `valid_fraction` for validation and normalises.
    ///
    /// # Errors
    /// [`Error::Config`] when a part has fewer than `min_len` values.
    pub fn new(values: &[f32], valid_fraction: f64, min_len: usize) -> Result<Self> {
        let cut = ((values.len() as f64) * (1.0 - valid_fraction)).round() as usize;
        let (train, valid) = values.split_at(cut.min(values.len()));
        if train.len() < min_len || valid.len() < min_len {
            return Err(Error::config(format!(
                "series: expected at least {min_len} values in the training and validation parts, found {} and {}",
                train.len(),
                valid.len()
            )));
        }
        let n = train.len() as f64;
        let mean = train.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = train
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt().max(1e-12);
        let norm = |v: &[f32]| {
            v.iter()
                .map(|&x| ((x as f64 - mean) / std) as f32)
                .collect()
        };
        Ok(Series {
            train: norm(train),
            valid: norm(valid),
            mean: mean as f32,
            std: std as f32,
        })
    }
}

/// `b` windows at random offsets: input `x[o..o+t]`, target `x[o+1..o+t+1]`, as `[T, B, 1]`.
///
/// # Panics
/// When `xs` is shorter than `t + 1`.
pub fn random_batch(xs: &[f32], t: usize, b: usize, rng: &mut ChaCha8Rng) -> Batch {
    assert!(xs.len() > t, "series shorter than a window");
    let mut input = vec![0.0; t * b];
    let mut target = vec![0.0; t * b];
    for bi in 0..b {
        let off = rng.random_range(0..=xs.len() - t - 1);
        for ti in 0..t {
            input[ti * b + bi] = xs[off + ti];
            target[ti * b + bi] = xs[off + ti + 1];
        }
    }
    Batch::Values {
        input: Tensor::new(vec![t, b, 1], input).expect("sizes match"),
        target: Tensor::new(vec![t, b, 1], target).expect("sizes match"),
    }
}

/// One-step-ahead forecast over the whole of `xs` (one sequence from a zero state): the root
/// mean squared errors of the model and of the naive forecast `x̂_{t+1} = x_t`, over the steps
/// after `warmup`, in the units of `xs`.
///
/// # Errors
/// As [`SeqModel::evaluate`]; [`Error::Config`] when `xs` is not longer than `warmup + 1`.
pub fn forecast_rmse(model: &SeqModel, xs: &[f32], warmup: usize) -> Result<(f64, f64)> {
    if xs.len() <= warmup + 1 {
        return Err(Error::config(format!(
            "series: expected more than {} values to forecast, found {}",
            warmup + 1,
            xs.len()
        )));
    }
    let t = xs.len() - 1;
    let input = Tensor::new(vec![t, 1, 1], xs[..t].to_vec())?;
    let out = crate::cpu::forward(&model.rnn, &input, None)?;
    let pred = model.head(&out.output);
    let (mut m, mut n) = (0.0f64, 0.0f64);
    for i in warmup..t {
        m += ((pred[i] - xs[i + 1]) as f64).powi(2);
        n += ((xs[i] - xs[i + 1]) as f64).powi(2);
    }
    let k = (t - warmup) as f64;
    Ok(((m / k).sqrt(), (n / k).sqrt()))
}

/// Rolls a regression model (one input, one output per step, predicting the next value)
/// forward past `history`: it reads `history` in one chunk through a [`crate::Stream`] on
/// `device`, predicts the next value, then feeds each prediction back as the next input,
/// `n` predictions in all, in the units of `history`. The first is the model's one-step
/// prediction after the last value of `history`.
///
/// # Errors
/// [`Error::Config`] for a model that is not a one-input, one-output regression, an empty
/// history, or a bidirectional model; as [`crate::Stream::new`] and [`crate::Stream::feed`].
pub fn forecast(
    model: &SeqModel,
    history: &[f32],
    n: usize,
    device: &crate::Device,
) -> Result<Vec<f32>> {
    if model.task.outputs() != 1 || model.config().input_size != 1 {
        return Err(Error::config(format!(
            "forecast: expected a model of one input and one output per step, found {} and {}",
            model.config().input_size,
            model.task.outputs()
        )));
    }
    if history.is_empty() {
        return Err(Error::config(
            "forecast: the history is empty; the model needs at least one value to read",
        ));
    }
    let mut stream = crate::Stream::new(model.rnn.clone(), device, 1)?;
    let out = stream.feed(&Tensor::new(vec![history.len(), 1, 1], history.to_vec())?)?;
    let dh = model.config().output_size();
    let mut last = Tensor::new(vec![1, 1, dh], out.data()[out.len() - dh..].to_vec())?;
    let mut preds = Vec::with_capacity(n);
    for k in 0..n {
        let p = model.head(&last)[0];
        preds.push(p);
        if k + 1 < n {
            last = stream.feed(&Tensor::new(vec![1, 1, 1], vec![p])?)?;
        }
    }
    Ok(preds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` to a fresh temporary file, reads `column` with `delimiter`, removes it.
    fn read(name: &str, text: &str, column: &str, delimiter: u8) -> (String, Result<Vec<f32>>) {
        let path =
            std::env::temp_dir().join(format!("wgpu-rnn-series-{}-{name}.csv", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let got = read_csv_column(&path, column, delimiter);
        std::fs::remove_file(&path).ok();
        (path.display().to_string(), got)
    }

    #[track_caller]
    fn values(name: &str, text: &str, column: &str, delimiter: u8) -> Vec<f32> {
        read(name, text, column, delimiter)
            .1
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[track_caller]
    fn message(name: &str, text: &str, column: &str, delimiter: u8) -> String {
        let (path, got) = read(name, text, column, delimiter);
        let err = got.expect_err(name);
        assert!(matches!(err, Error::Data { .. }), "{name}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&path),
            "{name}: {msg:?} does not name {path}"
        );
        msg
    }

    #[test]
    fn a_quoted_comma_stays_inside_its_cell() {
        let text = "city,temp,humidity\n\"Paris, FR\",20.37,80\n\"Berlin, DE\",15.5,65\n";
        assert_eq!(values("quoted", text, "humidity", b','), [80.0, 65.0]);
        assert_eq!(values("quoted", text, "2", b','), [80.0, 65.0]);
        assert_eq!(values("quoted", text, "temp", b','), [20.37, 15.5]);
        // A quote inside a quoted cell is doubled.
        let text = "name,v\n\"the \"\"big\"\" one, really\",3\n";
        assert_eq!(values("doubled", text, "v", b','), [3.0]);
    }

    #[test]
    fn a_quoted_decimal_comma_is_not_a_number() {
        let text = "day,temp\nd0,\"20,37\"\n";
        let msg = message("decimal", text, "temp", b',');
        assert!(
            msg.ends_with(r#"line 2, column 2 "temp" (counting from 1): "20,37" is not a number"#),
            "{msg}"
        );
        // Without a header the column is named by its number only.
        let text = "0,1\n1,\"20,37\"\n";
        let msg = message("decimal-noheader", text, "1", b',');
        assert!(
            msg.ends_with(r#"line 2, column 2 (counting from 1): "20,37" is not a number"#),
            "{msg}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let bom = "\u{feff}";
        assert_eq!(
            values("bom-header", &format!("{bom}value\n1\n2\n"), "value", b','),
            [1.0, 2.0]
        );
        assert_eq!(
            values(
                "bom-header-index",
                &format!("{bom}value\n1\n2\n"),
                "0",
                b','
            ),
            [1.0, 2.0]
        );
        assert_eq!(
            values("bom-no-header", &format!("{bom}1.5\n2\n3\n"), "0", b','),
            [1.5, 2.0, 3.0]
        );
    }

    #[test]
    fn crlf_line_ends() {
        let text = "t,value\r\n0,1.5\r\n1,2.5\r\n\r\n2,x\r\n";
        let msg = message("crlf", text, "value", b',');
        assert!(
            msg.ends_with(r#"line 5, column 2 "value" (counting from 1): "x" is not a number"#),
            "{msg}"
        );
        assert_eq!(
            values("crlf", &text.replace("2,x\r\n", ""), "value", b','),
            [1.5, 2.5]
        );
        assert_eq!(values("crlf-noheader", "1\r\n2\r\n", "0", b','), [1.0, 2.0]);
    }

    #[test]
    fn other_delimiters() {
        let tab = "t\tvalue\n0\t1.5\n1\t-2\n";
        assert_eq!(values("tab", tab, "value", b'\t'), [1.5, -2.0]);
        // Read with the wrong delimiter, the header is one cell.
        let msg = message("tab-as-comma", tab, "value", b',');
        assert!(
            msg.ends_with(r#"no column named "value" in the header ["t\tvalue"]"#),
            "{msg}"
        );
        let semi = "city;temp\n\"Paris; FR\";20.5\nLyon;\"21\"\n";
        assert_eq!(values("semicolon", semi, "temp", b';'), [20.5, 21.0]);
        // With `;` as delimiter a comma is an ordinary character: still not a number.
        let msg = message("semicolon-decimal", "temp\n20,5\n", "temp", b';');
        assert!(msg.ends_with(r#""20,5" is not a number"#), "{msg}");
    }

    #[test]
    fn blank_lines_are_skipped_and_counted() {
        let text = "v\n1\n\n   \n2\n\n";
        assert_eq!(values("blank", text, "v", b','), [1.0, 2.0]);
        let msg = message("blank-err", &format!("{text}inf\n"), "v", b',');
        assert!(
            msg.ends_with(
                r#"line 7, column 1 "v" (counting from 1): "inf" is not a finite number"#
            ),
            "{msg}"
        );
        // A line break inside a quoted cell is part of the cell, and counted.
        let msg = message("multiline", "v\n\"1\n\"\n\nx\n", "v", b',');
        assert!(msg.contains("line 5, column 1"), "{msg}");
        assert_eq!(
            values("blank-tab", "1\t2\n\t\n3\t4\n", "1", b'\t'),
            [2.0, 4.0]
        );
    }

    #[test]
    fn bad_cells_are_named() {
        let msg = message("overflow", "a,b\n1,2\n3,1e39\n", "b", b',');
        assert!(
            msg.ends_with(r#"line 3, column 2 "b" (counting from 1): "1e39" overflows float32"#),
            "{msg}"
        );
        let msg = message("short", "a,b,c\n1,2,3\n4,5\n", "c", b',');
        assert!(
            msg.ends_with(r#"line 3: no column 3 "c" (counting from 1): the row has 2 cells"#),
            "{msg}"
        );
        let msg = message("empty", "", "value", b',');
        assert!(msg.ends_with("the file has no rows"), "{msg}");
        assert_eq!(values("empty-index", "", "0", b','), Vec::<f32>::new());
    }

    #[test]
    fn not_utf8() {
        let path =
            std::env::temp_dir().join(format!("wgpu-rnn-series-{}-latin1.csv", std::process::id()));
        std::fs::write(&path, b"v\n1\n\xe9t\xe9\n").unwrap();
        let err = read_csv_column(&path, "v", b',').unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(
            matches!(
                err,
                Error::NotUtf8 {
                    offset: 4,
                    line: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn delimiters_from_the_command_line() {
        for (s, want) in [
            (",", b','),
            (";", b';'),
            ("|", b'|'),
            ("\\t", b'\t'),
            ("tab", b'\t'),
            ("\t", b'\t'),
        ] {
            assert_eq!(parse_delimiter(s).unwrap(), want, "{s:?}");
        }
        for (s, part) in [
            ("", "found \"\" (0 characters)"),
            (";;", "found \";;\" (2 characters)"),
            ("\\n", "(2 characters)"),
            ("§", "takes 2 bytes in UTF-8"),
            ("\"", "cannot separate cells"),
            ("\n", "cannot separate cells"),
        ] {
            let msg = parse_delimiter(s).unwrap_err().to_string();
            assert!(msg.contains(part), "{s:?}: {msg}");
        }
    }
}
