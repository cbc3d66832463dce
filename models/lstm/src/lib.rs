//! Recurrent layers: [`Lstm`] and [`Gru`], fast and laid out like PyTorch's.
//!
//! Each layer computes the input projection of every time step in one matrix product, and the
//! hidden projection of all gates in one product per step (as cuDNN and PyTorch do), instead of
//! one small product per gate. Parameters carry PyTorch's names and shapes (`weight_ih_l0`
//! `[gates * H, I]`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, and `*_reverse` for the
//! backward direction), so PyTorch weights load directly.

mod gru;
mod lstm;
mod recurrence;

pub use gru::{Gru, GruConfig};
pub use lstm::{Lstm, LstmConfig};
