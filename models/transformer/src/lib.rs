//! Transformer encoders: [`MultiHeadAttention`], [`EncoderBlock`] (post-norm or pre-norm, with a
//! padding mask), [`PositionalEncoding`] (sinusoidal or learned), [`Encoder`], and
//! [`SequenceClassifier`] for token ids ([`Tokens`]) or real-valued sequences ([`Features`]), and
//! [`MaskedLanguageModel`], the same encoder pre-trained on text without labels (BERT).
//!
//! Parameters follow PyTorch's `TransformerEncoderLayer` names (`self_attn.in_proj_weight`,
//! `linear1`, `norm1`, ...), and the block matches it to 1e-4 (see `tests/pytorch.rs`).

#![warn(missing_docs)]

mod attention;
mod block;
mod classifier;
mod encoder;
// burn-ndarray is deprecated upstream but remains one of kiln's CPU backends.
#[allow(deprecated)]
// Without a CPU backend the generated dispatch routes nowhere and leaves its arguments unread.
#[cfg_attr(
    not(any(feature = "flex", feature = "ndarray")),
    allow(unused_variables)
)]
pub mod flash;
mod flash_kernel;
mod masked_lm;
mod positional;
// burn-ndarray is deprecated upstream but remains one of kiln's CPU backends.
#[allow(deprecated)]
// Without a CPU backend the generated dispatch routes nowhere and leaves `scale` unread.
#[cfg_attr(
    not(any(feature = "flex", feature = "ndarray")),
    allow(unused_variables)
)]
pub mod softmax;

pub use attention::{MultiHeadAttention, MultiHeadAttentionConfig};
pub use block::{EncoderBlock, EncoderBlockConfig};
pub use classifier::{
    Embed, Features, PAD_ID, Pooling, SequenceClassifier, SequenceClassifierConfig, Tokens,
    TransformerConfigError,
};
pub use encoder::{Encoder, EncoderConfig};
pub use masked_lm::{MaskedLanguageModel, MaskedLmHead, MaskedTokens};
pub use positional::{PositionalEncoding, PositionalEncodingConfig, Positions};
