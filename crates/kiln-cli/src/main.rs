//! `kiln`: train and evaluate kiln models from the command line.

mod args;
mod commands;
mod dataset;

use clap::Parser;

use crate::args::{Cli, Command};

/// mimalloc reuses freed tensor buffers; see the README's note on allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None => commands::train(&cli.train),
        Some(Command::Train(args)) => commands::train(&args),
        Some(Command::Eval(args)) => commands::eval(&args),
        Some(Command::Predict(args)) => commands::predict(&args),
    }
}
