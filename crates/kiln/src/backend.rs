//! Choosing the compute backend at run time.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// A compute backend kiln can be built with. Each is a cargo feature of the `kiln` crate (and
/// of `kiln-cli`): `flex` (default, CPU), `ndarray` (CPU), `wgpu` (GPU through Vulkan, Metal
/// or DirectX; software Vulkan where there is no GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Flex,
    Ndarray,
    Wgpu,
}

/// Why a backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{0}` (valid: flex, ndarray, wgpu)")]
    Unknown(String),
    #[error(
        "the `{0}` backend was not compiled in; rebuild with `--features {0}` \
         (compiled in: {compiled})",
        compiled = compiled_names()
    )]
    NotCompiled(&'static str),
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Flex, Backend::Ndarray, Backend::Wgpu];

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }

    /// Whether this binary was built with the backend's feature.
    pub fn is_compiled(&self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The backends this binary was built with, in order of preference.
    pub fn compiled() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(Backend::is_compiled)
            .collect()
    }

    /// The device of this backend (the default adapter for wgpu).
    pub fn device(&self) -> Result<Device, BackendError> {
        match self {
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            // burn-ndarray is deprecated upstream; kiln still offers it
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[allow(unreachable_patterns)]
            other => Err(BackendError::NotCompiled(other.name())),
        }
    }
}

fn compiled_names() -> String {
    let names: Vec<&str> = Backend::compiled().iter().map(Backend::name).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s.to_ascii_lowercase())
            .ok_or_else(|| BackendError::Unknown(s.to_string()))
    }
}

/// The backend and device to run on: `requested` (the `--device` flag) if given, else the
/// `BURN_DEVICE` environment variable, else the first compiled backend (flex by default).
pub fn device(requested: Option<&str>) -> Result<(Backend, Device), BackendError> {
    let env = std::env::var("BURN_DEVICE").ok();
    let backend = match requested.or(env.as_deref()) {
        Some(name) => name.parse::<Backend>()?,
        None => *Backend::compiled()
            .first()
            .ok_or(BackendError::NotCompiled("flex"))?,
    };
    Ok((backend, backend.device()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_compiled_by_default_and_gives_a_device() {
        let (backend, _device) = device(Some("flex")).unwrap();
        assert_eq!(backend, Backend::Flex);
    }

    #[test]
    fn unknown_and_missing_backends_are_clear_errors() {
        let e = device(Some("cuda")).unwrap_err().to_string();
        assert_eq!(e, "unknown backend `cuda` (valid: flex, ndarray, wgpu)");
        if !Backend::Wgpu.is_compiled() {
            let e = device(Some("wgpu")).unwrap_err().to_string();
            assert!(e.contains("rebuild with `--features wgpu`"), "{e}");
        }
    }
}
