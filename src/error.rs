//! The crate's error type.
//!
//! Every fault a caller can cause (a missing or misshapen tensor, an unreadable file, a size
//! over a device limit, no adapter) is an [`Error`] whose message names the tensor or limit and
//! the expected and found values. Nothing in the library panics on bad input.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `wgpu-rnn`.
///
/// Messages are lower case and carry the numbers that matter, for example
/// `weight_hh_l1: expected shape [24, 8], found [24, 6]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor has the wrong shape.
    #[error("{name}: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// Tensor name (PyTorch name for parameters, contract name for inputs).
        name: String,
        /// The shape the model requires.
        expected: Vec<usize>,
        /// The shape that was given.
        found: Vec<usize>,
    },
    /// A required tensor is absent.
    #[error("{name}: missing tensor (expected shape {expected:?}) in {source_name}")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// The shape it should have had (empty when unknown).
        expected: Vec<usize>,
        /// Where it was looked for (a file name or `"parameters"`).
        source_name: String,
    },
    /// A tensor name that the model does not know.
    #[error("{name}: unknown tensor in {source_name} (expected names: {expected})")]
    UnknownTensor {
        /// Tensor name.
        name: String,
        /// Where it was found.
        source_name: String,
        /// A short description of the names that are accepted.
        expected: String,
    },
    /// A tensor's element type cannot be converted to f32.
    #[error("{name}: unsupported dtype {found}, expected one of f32, f16, bf16, f64")]
    Dtype {
        /// Tensor name.
        name: String,
        /// The dtype found in the file.
        found: String,
    },
    /// A tensor holds NaN or infinity where finite values are required.
    #[error("{name}: non-finite value {value} at flat index {index}")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// Flat (row-major) index of the first bad element.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// A finite f64 value in a file is too large in magnitude for f32 (files may store f64;
    /// the engine computes in f32, so the value would become infinite).
    #[error("{name}: value {value:e} at flat index {index} overflows float32")]
    Overflow {
        /// Tensor name.
        name: String,
        /// Flat (row-major) index of the first such element.
        index: usize,
        /// The value in the file.
        value: f64,
    },
    /// A model configuration that cannot be built.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A text file (a training text, a CSV file) is not valid UTF-8.
    #[error(
        "{path}: not valid UTF-8: the first invalid byte sequence is at byte offset {offset} \
         (line {line})"
    )]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence ([`std::str::Utf8Error::valid_up_to`]).
        offset: usize,
        /// The 1-based line it is on.
        line: usize,
    },
    /// A data file (a CSV file) has content that cannot be used: an unknown column, a
    /// missing or non-numeric cell. The message names the line and column.
    #[error("{path}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong and where, for example
        /// `line 4, column 3 "humidity" (counting from 1): "20,37" is not a number`.
        message: String,
    },
    /// A file is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// No GPU adapter matched the request.
    #[error(
        "no GPU adapter found for backends {backends}{name}; install a driver: on headless Linux \
         the software Vulkan driver (`apt-get install mesa-vulkan-drivers`), or select the GL \
         backend (`WGPU_BACKEND=gl`); `wgpu-rnn info` lists what is available"
    )]
    NoAdapter {
        /// The backends that were searched.
        backends: String,
        /// `", name containing \"...\""` when a name filter was given, else empty.
        name: String,
    },
    /// The adapter refused to create a device.
    #[error("could not open a device on adapter {adapter}: {message}")]
    Device {
        /// The adapter's name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// A size exceeds a device limit, or the largest size a kernel supports within its loop
    /// budget (`gpu::kernels::budget`). Checked before anything is allocated or dispatched.
    #[error("{what}: needs {limit} = {needed}, but at most {max} is supported")]
    Limit {
        /// What was being sized (for example `"buffer output"`).
        what: String,
        /// The limit's name (a wgpu limit such as `max_storage_buffer_binding_size`, or the
        /// kernel limit).
        limit: &'static str,
        /// The amount needed.
        needed: u64,
        /// The largest amount allowed.
        max: u64,
    },
    /// The GPU reported an error while running (validation, out of memory, lost device).
    #[error("gpu error in {context}: {message}")]
    Gpu {
        /// What was running.
        context: String,
        /// wgpu's message.
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(name: impl Into<String>, expected: &[usize], found: &[usize]) -> Self {
        Error::Shape {
            name: name.into(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        }
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    /// [`Error::NotUtf8`] for `bytes` read from `path`, from the decoder's error.
    pub(crate) fn not_utf8(path: impl Into<PathBuf>, bytes: &[u8], e: std::str::Utf8Error) -> Self {
        let offset = e.valid_up_to();
        Error::NotUtf8 {
            path: path.into(),
            offset,
            line: 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
