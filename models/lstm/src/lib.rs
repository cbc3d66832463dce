//! Recurrent layers: [`Lstm`] and [`Gru`], fast and laid out like PyTorch's.
//!
//! Each step computes all gates in one matrix product, `[x_t, h] [W_ih | W_hh]^T` for the LSTM
//! (two for the GRU, whose new gate needs the hidden projection on its own), instead of one small
//! product per gate and per input as burn-nn's layers do. The input projection is not computed
//! for the whole sequence up front (as cuDNN does): Burn's autodiff differentiates each step's
//! slice of that projection into a full-size gradient, which cost more than it saved (measured:
//! 0.66x burn-nn's speed that way, 1.07x fused per step). Parameters carry PyTorch's names and
//! shapes (`weight_ih_l0`
//! `[gates * H, I]`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, and `*_reverse` for the
//! backward direction), so PyTorch weights load directly.

mod gru;
mod lstm;
mod recurrence;
mod sequence;

pub use gru::{Gru, GruConfig};
pub use lstm::{Lstm, LstmConfig};
pub use sequence::{Cell, Pooling, SequenceConfigError, SequenceModel, SequenceModelConfig};
