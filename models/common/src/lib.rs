//! What every kiln model crate shares: the [`Activation`] that hidden layers apply, and the
//! [`Model`] trait through which kiln's trainer fits any of them.

mod activation;
mod model;

pub use activation::{Activation, UnknownActivation};
pub use model::{BatchInput, Model};
