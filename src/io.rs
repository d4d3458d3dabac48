//! safetensors files: read any float dtype into f32 tensors (and integer tensors, such as a
//! batch's `lengths`, as i64), write them atomically.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The contents of a safetensors file: named f32 tensors and the string metadata.
#[derive(Debug, Clone, Default)]
pub struct TensorFile {
    /// Tensors by name, converted to f32.
    pub tensors: BTreeMap<String, Tensor<f32>>,
    /// The header's `__metadata__` map (empty when absent).
    pub metadata: HashMap<String, String>,
    /// Integer tensors (int64, int32 and the other integer dtypes) by name, as i64: a case
    /// file's `lengths`. Written back as int64.
    pub int_tensors: BTreeMap<String, IntTensor>,
}

/// An integer tensor of a safetensors file, its values widened to i64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntTensor {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The values.
    pub values: Vec<i64>,
    /// The dtype in the file (`I64`, `I32`, ...).
    pub dtype: String,
}

impl TensorFile {
    /// Reads `path`. f32, f16, bf16 and f64 tensors are converted to f32.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Safetensors`] when it is not
    /// safetensors, [`Error::Dtype`] for a tensor of another element type,
    /// [`Error::Overflow`] for a finite f64 value too large for f32.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Safetensors { message, .. } => Error::Safetensors {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses safetensors bytes (see [`TensorFile::read`]).
    ///
    /// # Errors
    /// As [`TensorFile::read`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |e: safetensors::SafeTensorError| Error::Safetensors {
            path: "<bytes>".into(),
            message: e.to_string(),
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        let st = SafeTensors::deserialize(bytes).map_err(bad)?;
        let mut tensors = BTreeMap::new();
        let mut int_tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            if let Some(values) = decode_int(view.dtype(), view.data()) {
                let t = IntTensor {
                    shape: view.shape().to_vec(),
                    values,
                    dtype: format!("{:?}", view.dtype()),
                };
                int_tensors.insert(name.to_string(), t);
                continue;
            }
            let data = decode(name, view.dtype(), view.data())?;
            let t = Tensor::new(view.shape().to_vec(), data)?;
            tensors.insert(name.to_string(), t);
        }
        Ok(TensorFile {
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
            int_tensors,
        })
    }

    /// Serialises to safetensors bytes (all tensors as f32, names sorted).
    ///
    /// # Errors
    /// [`Error::Safetensors`] if the header cannot be built.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let views = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let view = safetensors::tensor::TensorView::new(
                    Dtype::F32,
                    t.shape().to_vec(),
                    bytemuck::cast_slice(t.data()),
                )
                .map_err(|e| Error::Safetensors {
                    path: name.into(),
                    message: e.to_string(),
                })?;
                Ok((name.clone(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        let int_bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .int_tensors
            .iter()
            .map(|(n, t)| {
                let bytes = t.values.iter().flat_map(|x| x.to_le_bytes()).collect();
                (n.clone(), t.shape.clone(), bytes)
            })
            .collect();
        let mut views = views;
        for (name, shape, bytes) in &int_bytes {
            let view = safetensors::tensor::TensorView::new(Dtype::I64, shape.clone(), bytes)
                .map_err(|e| Error::Safetensors {
                    path: name.into(),
                    message: e.to_string(),
                })?;
            views.push((name.clone(), view));
        }
        let meta = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        safetensors::serialize(views, meta).map_err(|e| Error::Safetensors {
            path: "<bytes>".into(),
            message: e.to_string(),
        })
    }

    /// Writes `path` atomically: a temporary file beside it is written, synced and renamed,
    /// so a crash leaves either the old file or the new one, never half of one.
    ///
    /// # Errors
    /// [`Error::Io`] on any file-system failure.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.to_bytes()?)
    }

    /// Takes tensor `name` out of the file.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] naming `name` and `expected`.
    pub fn take(&mut self, name: &str, expected: &[usize], source: &str) -> Result<Tensor<f32>> {
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
                expected: expected.to_vec(),
                source_name: source.to_string(),
            })
            .and_then(|t| {
                t.expect_shape(name, expected)?;
                Ok(t)
            })
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
///
/// # Errors
/// [`Error::Io`] naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file path")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable; not every platform can open a directory.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// An integer tensor's values as i64, or `None` for a non-integer dtype.
fn decode_int(dtype: Dtype, bytes: &[u8]) -> Option<Vec<i64>> {
    fn le<const N: usize>(bytes: &[u8], f: fn([u8; N]) -> i64) -> Vec<i64> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N")))
            .collect()
    }
    Some(match dtype {
        Dtype::I64 => le::<8>(bytes, i64::from_le_bytes),
        Dtype::I32 => le::<4>(bytes, |b| i32::from_le_bytes(b).into()),
        Dtype::I16 => le::<2>(bytes, |b| i16::from_le_bytes(b).into()),
        Dtype::I8 => le::<1>(bytes, |b| i8::from_le_bytes(b).into()),
        Dtype::U8 => le::<1>(bytes, |b| u8::from_le_bytes(b).into()),
        Dtype::U16 => le::<2>(bytes, |b| u16::from_le_bytes(b).into()),
        Dtype::U32 => le::<4>(bytes, |b| u32::from_le_bytes(b).into()),
        _ => return None,
    })
}

fn decode(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    // Copy through aligned chunks: the file's data need not be aligned for the dtype.
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .enumerate()
            .map(|(index, c)| {
                let value = f64::from_le_bytes(c.try_into().expect("chunk of 8"));
                let v = value as f32;
                // NaN and infinities stay what they are (the finiteness checks name them);
                // a finite value that only the cast makes infinite is reported here.
                if value.is_finite() && !v.is_finite() {
                    return Err(Error::Overflow {
                        name: name.to_string(),
                        index,
                        value,
                    });
                }
                Ok(v)
            })
            .collect::<Result<_>>()?,
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::Dtype {
                name: name.to_string(),
                found: format!("{other:?}"),
            });
        }
    })
}
