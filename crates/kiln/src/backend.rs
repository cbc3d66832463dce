//! Choosing the compute backend at run time.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// A compute backend kiln can be built with. Each is a cargo feature of the `kiln` crate (and
/// of `kiln-cli`): `flex` (default, CPU), `ndarray` (CPU), `wgpu` (GPU through Vulkan, Metal
/// or DirectX; software Vulkan where there is no GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (the default).
    Flex,
    /// Burn's ndarray CPU backend (deprecated upstream).
    Ndarray,
    /// The GPU through wgpu (Vulkan, Metal, DirectX).
    Wgpu,
}

/// Why a backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{0}` (valid: flex, ndarray, wgpu)")]
    /// A name that is no backend.
    Unknown(String),
    #[error(
        "the `{0}` backend was not compiled in; rebuild with `--features {0}` \
         (compiled in: {compiled})",
        compiled = compiled_names()
    )]
    /// A backend this binary was built without.
    NotCompiled(&'static str),
    /// A `--devices` list that cannot work.
    #[error("--devices `{list}`: {problem}")]
    Devices {
        /// The list as given.
        list: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl Backend {
    /// Every backend, in order of preference.
    pub const ALL: [Backend; 3] = [Backend::Flex, Backend::Ndarray, Backend::Wgpu];

    /// The backend's name, as `--device` takes it.
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

impl Backend {
    /// The device at `index`: the `index`-th discrete GPU for wgpu; on the CPU backends, the
    /// one CPU device.
    pub fn device_at(&self, index: usize) -> Result<Device, BackendError> {
        match self {
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(index))),
            _ => {
                let _ = index;
                self.device()
            }
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

/// The devices of a data-parallel run, from a list such as `flex:0,flex:1` or `wgpu:0,wgpu:1`:
/// one backend, each entry `BACKEND:INDEX` with distinct indices. For wgpu the index is the
/// discrete GPU's; CPU backends have one device, and each index is another worker on it (the
/// workers share the cores).
pub fn devices(list: &str) -> Result<(Backend, Vec<Device>), BackendError> {
    let problem = |problem: String| BackendError::Devices {
        list: list.to_string(),
        problem,
    };
    let mut backend = None;
    let mut indices = Vec::new();
    for entry in list.split(',').map(str::trim) {
        let (name, index) = entry
            .split_once(':')
            .ok_or_else(|| problem(format!("`{entry}` is not BACKEND:INDEX")))?;
        let this = name.parse::<Backend>()?;
        let index: usize = index
            .parse()
            .map_err(|_| problem(format!("`{index}` in `{entry}` is not a device index")))?;
        if backend.is_some_and(|b| b != this) {
            return Err(problem("all devices must be of one backend".into()));
        }
        if indices.contains(&index) {
            return Err(problem(format!("`{entry}` is listed twice")));
        }
        backend = Some(this);
        indices.push(index);
    }
    let backend = backend.ok_or_else(|| problem("no devices".into()))?;
    // A CPU backend has one device; its "devices" are replicas on the same cores, numbered
    // from 0 (`flex:9` would name nothing).
    if backend != Backend::Wgpu
        && let Some(&index) = indices.iter().find(|&&i| i >= indices.len())
    {
        return Err(problem(format!(
            "{backend} has one CPU device, replicated: number {} replicas {backend}:0 to \
             {backend}:{} (got {backend}:{index})",
            indices.len(),
            indices.len() - 1
        )));
    }
    let devices = indices
        .into_iter()
        .map(|index| backend.device_at(index))
        .collect::<Result<_, _>>()?;
    Ok((backend, devices))
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
    fn device_lists_name_one_backend_with_distinct_indices() {
        let (backend, list) = devices("flex:0, flex:1").unwrap();
        assert_eq!((backend, list.len()), (Backend::Flex, 2));
        for (list, expected) in [
            ("flex:0,flex:0", "`flex:0` is listed twice"),
            ("flex", "`flex` is not BACKEND:INDEX"),
            ("flex:x", "`x` in `flex:x` is not a device index"),
            ("flex:0,wgpu:1", "all devices must be of one backend"),
            (
                "flex:0,flex:9",
                "flex has one CPU device, replicated: number 2 replicas flex:0 to flex:1 (got flex:9)",
            ),
            ("cuda:0", "unknown backend `cuda`"),
        ] {
            let e = devices(list).unwrap_err().to_string();
            assert!(e.contains(expected), "{list}: {e}");
        }
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
