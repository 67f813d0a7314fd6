//! The SIMD kernels under the encoder, as a leaf module: it imports nothing
//! from `model` (or anything else in the crate), so the encoder can be
//! rebuilt around new architectures without touching the hot loops, and the
//! loops can be benchmarked and tested on their own.
//!
//! This file owns what every kernel shares: run-time CPU detection
//! ([`Kernel`], [`detected_kernel`]), the `dispatch!` macro that compiles one
//! loop for AVX-512, AVX2+FMA and the baseline target, and [`NR`], the panel
//! width the products and their epilogues agree on.
//!
//! - [`gemm`]: products against weights packed once (f32, f16);
//! - [`int8`]: the 8-bit weights × 7-bit activations products (the default);
//! - [`attention`]: per-sequence attention over packed QKV rows;
//! - [`math`]: branch-free `exp`/`erf`/GELU and the products' epilogues;
//! - [`norm`]: layer normalisation of rows;
//! - [`team`]: one parallel region per short forward pass, for the
//!   products, attention and norms' `_team` forms;
//! - [`placement`]: each thread of a full-width pool on its own CPU; bulk
//!   threads at a lower priority.

pub(crate) mod attention;
pub(crate) mod gemm;
pub(crate) mod int8;
pub(crate) mod math;
pub(crate) mod norm;
pub(crate) mod placement;
pub(crate) mod team;

pub use gemm::Precision;

/// Columns per packed panel (two 8-lane registers), shared by the f32/f16
/// and int8 products and by [`math::finish_panel`].
pub(crate) const NR: usize = 16;

/// Which microkernel the products and loops run (see [`gemm::PackedLinear`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// AVX2/FMA/F16C plus AVX-512 VNNI (`vpdpbusd`) for the int8 products;
    /// the f32/f16 products are the AVX2 ones.
    Avx512Vnni,
    Avx2Fma,
    Portable,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512Vnni => "avx512-vnni",
            Kernel::Avx2Fma => "avx2+fma",
            Kernel::Portable => "portable",
        }
    }

    /// Whether the AVX2/FMA/F16C instructions are available to this kernel.
    pub fn has_avx2(self) -> bool {
        matches!(self, Kernel::Avx2Fma | Kernel::Avx512Vnni)
    }

    /// Every kernel this CPU can run, the portable one first (for tests and
    /// benchmarks that compare them).
    pub fn supported() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Portable];
        if cpu_kernel().has_avx2() {
            kernels.push(Kernel::Avx2Fma);
        }
        if cpu_kernel() == Kernel::Avx512Vnni {
            kernels.push(Kernel::Avx512Vnni);
        }
        kernels
    }
}

/// The fastest kernel this CPU supports, whatever `PAREIL_KERNEL` says.
fn cpu_kernel() -> Kernel {
    static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                    return Kernel::Avx512Vnni;
                }
                return Kernel::Avx2Fma;
            }
        }
        Kernel::Portable
    })
}

/// The values `PAREIL_KERNEL` accepts: `auto` (the default: the fastest
/// kernel this CPU has), `avx2` (leave AVX-512 VNNI unused) and `portable`.
pub const KERNEL_CHOICES: [&str; 3] = ["auto", "avx2", "portable"];

/// A `PAREIL_KERNEL` value that names no kernel. Plain data (this module
/// imports nothing from the crate): the model layer turns it into its error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKernel(pub String);

impl std::fmt::Display for UnknownKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown kernel {:?} (expected one of: {})",
            self.0,
            KERNEL_CHOICES.join(", ")
        )
    }
}

impl std::error::Error for UnknownKernel {}

/// The kernel `choice` (a [`KERNEL_CHOICES`] value; `None` or empty:
/// `auto`) selects on this CPU. `avx2` on a CPU without AVX2 runs the
/// portable kernel, the fastest it has.
pub fn kernel_for(choice: Option<&str>) -> Result<Kernel, UnknownKernel> {
    let best = cpu_kernel();
    match choice.map(str::trim).unwrap_or("") {
        "" | "auto" => Ok(best),
        "portable" => Ok(Kernel::Portable),
        "avx2" if best.has_avx2() => Ok(Kernel::Avx2Fma),
        "avx2" => Ok(best),
        other => Err(UnknownKernel(other.to_string())),
    }
}

/// The kernel `PAREIL_KERNEL` asks for ([`kernel_for`]); an unknown (or
/// non-UTF-8) value is an error, not silently the default.
pub fn requested_kernel() -> Result<Kernel, UnknownKernel> {
    match std::env::var("PAREIL_KERNEL") {
        Ok(v) => kernel_for(Some(&v)),
        Err(std::env::VarError::NotPresent) => kernel_for(None),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(UnknownKernel(v.to_string_lossy().into_owned()))
        }
    }
}

/// The fastest kernel this CPU supports, unless `PAREIL_KERNEL` names a
/// slower one (`portable`, or `avx2` to leave VNNI unused). An unknown value
/// falls back to the fastest here; callers that must refuse it (the command
/// line) check [`requested_kernel`].
pub fn detected_kernel() -> Kernel {
    requested_kernel().unwrap_or_else(|_| cpu_kernel())
}

/// Defines `$name(kernel, args…)`, which runs the `#[inline(always)]`
/// function `$inner(args…)` compiled for AVX-512 (F/BW/VL/VNNI) when
/// `kernel` is [`Kernel::Avx512Vnni`], for AVX2+FMA when it has them
/// ([`Kernel::has_avx2`]) and for the baseline target otherwise. Each
/// version does the same IEEE operations per value (wider vectors, no
/// reassociation), so they agree bit for bit. (A closure
/// would not do: it is a function of its own, compiled without the feature.)
macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis unsafe fn $name:ident => $inner:path, ($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name(kernel: $crate::kernels::Kernel, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma,f16c")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                if kernel == $crate::kernels::Kernel::Avx512Vnni {
                    return avx512($($arg),*);
                }
                if kernel.has_avx2() {
                    return avx2($($arg),*);
                }
            }
            let _ = kernel;
            $inner($($arg),*)
        }
    };
}
pub(crate) use dispatch;

/// What `benches/gemm.rs` needs to time the products on their own: not part
/// of the library's API.
#[doc(hidden)]
pub mod bench {
    pub use super::attention::packed_attention;
    pub use super::detected_kernel;
    pub use super::gemm::{Activation, PackedLinear, Precision};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed choice selects a kernel; anything else is refused with
    /// the list (issue 13: `PAREIL_KERNEL=bogus` used to be ignored).
    #[test]
    fn kernel_choices_are_checked() {
        for choice in KERNEL_CHOICES {
            assert!(kernel_for(Some(choice)).is_ok(), "{choice}");
        }
        assert_eq!(kernel_for(None), Ok(cpu_kernel()));
        assert_eq!(kernel_for(Some("")), Ok(cpu_kernel()));
        assert_eq!(kernel_for(Some("portable")), Ok(Kernel::Portable));
        let err = kernel_for(Some("bogus")).unwrap_err();
        assert_eq!(err, UnknownKernel("bogus".into()));
        let msg = err.to_string();
        assert!(
            msg.contains("\"bogus\"") && KERNEL_CHOICES.iter().all(|c| msg.contains(c)),
            "{msg}"
        );
    }
}
