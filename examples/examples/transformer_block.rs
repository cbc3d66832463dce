//! The Transformer encoder block of the seeds, in a dozen lines: multi-head self-attention, add &
//! norm, feed-forward, add & norm; with the shapes printed at each stage.
//!
//! `cargo run --release -p kiln-examples --example transformer_block`

use kiln::prelude::*;
use kiln::transformer::{EncoderBlockConfig, PositionalEncodingConfig};

fn main() -> anyhow::Result<()> {
    let (backend, device) = device(None)?;
    let (batch, seq, d_model) = (2, 10, 32);
    let x = Tensor::<3>::random([batch, seq, d_model], Default::default(), &device);
    let positions = PositionalEncodingConfig::new(seq, d_model).init(&device);
    let block = EncoderBlockConfig::new(d_model, 4, 64)
        .init(&device)
        .valid();

    let x = positions.forward(x);
    println!("backend {backend}");
    println!("input + positions:        {:?}", x.dims());
    let attended = block.self_attn.forward(x.clone(), None);
    println!("multi-head attention:     {:?}", attended.dims());
    let x = block.norm1.forward(x + attended);
    println!("add & norm:               {:?}", x.dims());
    let hidden = block.linear1.forward(x.clone()).clamp_min(0.0);
    println!("feed-forward hidden:      {:?}", hidden.dims());
    let x = block.norm2.forward(x + block.linear2.forward(hidden));
    println!("add & norm (block output): {:?}", x.dims());
    println!("parameters in the block:  {}", block.num_params());
    Ok(())
}
