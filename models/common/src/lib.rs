//! What every kiln model crate shares: the [`Activation`] that hidden layers apply, the
//! [`Dropout`] they regularise with, the [`dense`] layer (linear map, bias, activation and
//! dropout, one fused operation on the CPU backends), the [`kernel`] pieces of kiln's fused CPU
//! kernels, and the [`Model`] trait through which kiln's trainer fits any of them.

#![warn(missing_docs)]

mod activation;
pub mod amx;
pub mod autocast;
// burn-ndarray is deprecated upstream but remains one of kiln's CPU backends; without a CPU
// backend the generated dispatch routes nowhere and leaves its arguments unread.
#[allow(deprecated)]
#[cfg_attr(
    not(any(feature = "flex", feature = "ndarray")),
    allow(unused_variables)
)]
pub mod bf16_round;
// burn-ndarray is deprecated upstream but remains one of kiln's CPU backends.
pub mod denormals;
#[allow(deprecated)]
// Without a CPU backend the generated dispatch routes nowhere and leaves its arguments unread.
#[cfg_attr(
    not(any(feature = "flex", feature = "ndarray")),
    allow(unused_variables)
)]
pub mod dense;
mod dense_kernel;
mod dropout;
pub mod kernel;
mod model;
pub mod precision;
mod summary;
mod units;

pub use activation::{Activation, UnknownActivation};
pub use denormals::{FlushDenormals, flush_denormals_on_this_thread};
pub use dropout::{Dropout, DropoutConfig, DropoutDraw};
pub use model::{BatchInput, Model};
pub use precision::{Precision, PrecisionScope, UnknownPrecision, precision, set_precision};
pub use summary::{Layer, Summary, summary, thousands};
pub use units::LayerActivations;
