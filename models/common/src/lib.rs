//! What every kiln model crate shares: the [`Activation`] that hidden layers apply, the
//! [`Dropout`] they regularise with, and the [`Model`] trait through which kiln's trainer fits
//! any of them.

#![warn(missing_docs)]

mod activation;
mod dropout;
pub mod kernel;
mod model;
mod summary;

pub use activation::{Activation, UnknownActivation};
pub use dropout::{Dropout, DropoutConfig};
pub use model::{BatchInput, Model};
pub use summary::{Layer, Summary, summary};
