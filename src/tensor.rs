//! Host tensors and the float trait the CPU path is generic over.

use crate::error::{Error, Result};

/// The element types of the CPU path: `f32` (the engine's arithmetic) and `f64` (for
/// checking gradients against finite differences).
///
/// [`Float::gemm`] is `C ← α·A·B + β·C` on strided row/column layouts, through the
/// `matrixmultiply` crate.
pub trait Float:
    num_traits::Float + num_traits::FromPrimitive + Default + std::fmt::Debug + Send + Sync + 'static
{
    /// `C[m×n] ← α·A[m×k]·B[k×n] + β·C`, where element `(i, j)` of `A` lives at
    /// `a[i·rsa + j·csa]` (likewise `B`, `C`). When `β = 0`, `C` is not read.
    ///
    /// # Panics
    /// When a slice is too short for the given dimensions and strides.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: usize,
        csa: usize,
        b: &[Self],
        rsb: usize,
        csb: usize,
        beta: Self,
        c: &mut [Self],
        rsc: usize,
        csc: usize,
    );

    /// Converts from f64 (exact for f64, rounded for f32).
    fn from_f64_lossy(v: f64) -> Self {
        <Self as num_traits::FromPrimitive>::from_f64(v).unwrap_or_else(Self::nan)
    }

    /// Converts to f64.
    fn to_f64_lossy(self) -> f64 {
        num_traits::ToPrimitive::to_f64(&self).unwrap_or(f64::NAN)
    }
}

fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

macro_rules! impl_float {
    ($t:ty, $f:path) => {
        impl Float for $t {
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                rsa: usize,
                csa: usize,
                b: &[Self],
                rsb: usize,
                csb: usize,
                beta: Self,
                c: &mut [Self],
                rsc: usize,
                csc: usize,
            ) {
                assert!(a.len() >= span(m, k, rsa, csa), "gemm: a too short");
                assert!(b.len() >= span(k, n, rsb, csb), "gemm: b too short");
                assert!(c.len() >= span(m, n, rsc, csc), "gemm: c too short");
                if m == 0 || n == 0 {
                    return;
                }
                // SAFETY: the asserts above bound every index the kernel touches.
                unsafe {
                    $f(
                        m,
                        k,
                        n,
                        alpha,
                        a.as_ptr(),
                        rsa as isize,
                        csa as isize,
                        b.as_ptr(),
                        rsb as isize,
                        csb as isize,
                        beta,
                        c.as_mut_ptr(),
                        rsc as isize,
                        csc as isize,
                    )
                }
            }
        }
    };
}
impl_float!(f32, matrixmultiply::sgemm);
impl_float!(f64, matrixmultiply::dgemm);

/// A dense row-major tensor on the host.
///
/// # Example
/// ```
/// use wgpu_rnn::Tensor;
/// let x = Tensor::new(vec![2, 3], vec![0.0f32; 6]).unwrap();
/// assert_eq!(x.shape(), &[2, 3]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T = f32> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Copy> Tensor<T> {
    /// Wraps `data` with `shape`.
    ///
    /// # Errors
    /// [`Error::Config`] when `data.len()` is not the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::config(format!(
                "tensor of shape {shape:?} needs {n} elements, found {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: T) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![value; shape.iter().product()],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// Mutable access to the elements.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Elementwise conversion to another element type.
    pub fn map<U: Copy>(&self, f: impl Fn(T) -> U) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    /// Checks the shape against `expected`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `name`.
    pub fn expect_shape(&self, name: &str, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::shape(name, expected, &self.shape));
        }
        Ok(())
    }
}

impl<T: Float> Tensor<T> {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::zero())
    }

    /// Checks that every element is finite.
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming `name` and the first bad index.
    pub fn expect_finite(&self, name: &str) -> Result<()> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(index) => Err(Error::NonFinite {
                name: name.to_string(),
                index,
                value: self.data[index].to_f64_lossy(),
            }),
        }
    }

    /// Converts to another float type.
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        self.map(|v| U::from_f64_lossy(v.to_f64_lossy()))
    }
}
