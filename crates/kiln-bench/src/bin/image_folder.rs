//! Figures for `--dataset images:DIR`: writes MNIST training digits as a folder of PNG files
//! (one sub-folder per class, optionally enlarged), and measures how fast kiln's reader decodes
//! them on this machine's cores, as a training run's loader does (batches of 64, in parallel).
//!
//! `cargo run --release -p kiln-bench --bin image_folder -- write DIR --count 10000 [--size 224] [--format jpg]`
//! `cargo run --release -p kiln-bench --bin image_folder -- decode DIR [--size 224]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use kiln::datasets::{ImageOptions, MnistSplit, image_folder, mnist};

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes the first COUNT MNIST training digits into `DIR/<digit>/NNNNN.png`.
    Write {
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Enlarge each 28x28 digit to SIZExSIZE (bilinear) before writing it.
        #[arg(long)]
        size: Option<u32>,
        /// The files' format: png or jpg (the `image` crate's encoders, JPEG at quality 75).
        #[arg(long, default_value = "png")]
        format: String,
    },
    /// Reads every image in DIR as the trainer's loader does, twice; prints images per second.
    Decode {
        dir: PathBuf,
        /// Resize to SIZExSIZE while reading (as --image-size).
        #[arg(long)]
        size: Option<usize>,
        /// Keep up to this many MB of decoded images in memory (as --image-cache): the second
        /// pass reads those from it.
        #[arg(long)]
        cache_mb: Option<usize>,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Write {
            dir,
            count,
            size,
            format,
        } => {
            let train = mnist(None, MnistSplit::Train)?;
            let labels = train.y.labels().expect("classes");
            for (i, &label) in labels.iter().enumerate().take(count) {
                let pixels = train.sample(i).iter().map(|&v| (v * 255.0).round() as u8);
                let digit = image::GrayImage::from_raw(28, 28, pixels.collect()).expect("28x28");
                let digit = match size {
                    Some(s) => {
                        image::imageops::resize(&digit, s, s, image::imageops::FilterType::Triangle)
                    }
                    None => digit,
                };
                let folder = dir.join(label.to_string());
                std::fs::create_dir_all(&folder)?;
                digit.save(folder.join(format!("{i:05}.{format}")))?;
            }
        }
        Command::Decode {
            dir,
            size,
            cache_mb,
        } => {
            let options = ImageOptions {
                size: size.map(|s| [s, s]),
                channels: Some(1),
                cache_bytes: cache_mb.map(|mb| mb << 20),
            };
            let start = Instant::now();
            let set = image_folder(&dir, &options)?;
            let scan = start.elapsed().as_secs_f64();
            let n = set.data.len();
            let all: Vec<usize> = (0..n).collect();
            let mut batch = Vec::new();
            for pass in 1..=2 {
                let start = Instant::now();
                for indices in all.chunks(64) {
                    set.data.read_samples(indices, &mut batch)?;
                }
                let seconds = start.elapsed().as_secs_f64();
                println!(
                    "{}",
                    serde_json::json!({
                        "images": n,
                        "shape": set.data.sample_shape,
                        "pass": pass,
                        "cache_mb": cache_mb,
                        "headers_seconds": scan,
                        "decode_seconds": seconds,
                        "images_per_sec": n as f64 / seconds,
                        "threads": rayon_threads(),
                    })
                );
            }
        }
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
