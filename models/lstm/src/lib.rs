//! Recurrent layers: [`Lstm`] and [`Gru`], fast and laid out like PyTorch's.
//!
//! On the CPU backends (flex, ndarray) the LSTM runs as one fused operation with a hand-written
//! backward pass ([`fused`]), as cuDNN and PyTorch do: every step's input projection in one
//! matrix product, one product per step for the recurrence, vectorised gate activations, and one
//! node in Burn's autodiff graph instead of about twenty per step (measured by
//! `cargo run --release -p kiln-bench -- lstm-layer`: about 4.7x burn-nn's `Lstm`). Elsewhere,
//! and for sequences of different lengths, each step computes all gates in one matrix product,
//! `[x_t, h] [W_ih | W_hh]^T` (two for the GRU, whose new gate needs the hidden projection on its
//! own), instead of one small product per gate and per input as burn-nn's layers do. Parameters
//! carry PyTorch's names and shapes (`weight_ih_l0` `[gates * H, I]`, `weight_hh_l0`,
//! `bias_ih_l0`, `bias_hh_l0`, and `*_reverse` for the backward direction), so PyTorch weights
//! load directly.

#![warn(missing_docs)]

mod cpu_kernel;
// burn-ndarray is deprecated upstream but remains one of kiln's CPU backends.
#[allow(deprecated)]
pub mod fused;
mod gru;
mod lstm;
mod recurrence;
mod sequence;

pub use gru::{Gru, GruConfig};
pub use lstm::{Lstm, LstmConfig};
pub use sequence::{Cell, Pooling, SequenceConfigError, SequenceModel, SequenceModelConfig};
