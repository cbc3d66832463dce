//! What the `kiln` subcommands do, one file per group.

use anyhow::Result;

/// Builds the model `$spec` describes as `$m` and evaluates `$body` with it; the perceptron,
/// which is no trainer model, goes to `$perceptron` with its config as `$cfg`.
macro_rules! with_model {
    ($spec:expr, $device:expr, |$m:ident| $body:expr, perceptron |$cfg:ident| $perceptron:expr) => {
        match $spec {
            $crate::commands::ModelSpec::Mlp(c) => {
                let $m = c.init($device);
                $body
            }
            $crate::commands::ModelSpec::Cnn(c) => {
                let $m = c.init($device);
                $body
            }
            $crate::commands::ModelSpec::Sequence(c) => {
                let $m = c.init($device);
                $body
            }
            $crate::commands::ModelSpec::Transformer(t) => match t.input {
                $crate::commands::TransformerInput::Tokens { .. } => {
                    let $m = t.tokens($device);
                    $body
                }
                $crate::commands::TransformerInput::Features { .. } => {
                    let $m = t.features($device);
                    $body
                }
                $crate::commands::TransformerInput::MaskedTokens { .. } => {
                    let $m = t.masked_lm($device);
                    $body
                }
            },
            $crate::commands::ModelSpec::Perceptron($cfg) => $perceptron,
        }
    };
}

mod diagnose;
mod distill;
mod evaluate;
pub mod job;
mod perceptron;
mod predict;
mod pretrain;
mod repair;
mod report;
mod spec;
mod tools;
mod train;
mod tune;

pub use diagnose::diagnose_run;
pub use distill::distill;
pub use evaluate::eval;
pub use predict::predict;
pub use pretrain::pretrain;
use spec::{ModelSpec, TransformerInput};
pub use tools::{export, import, lr_find, plot, summary};
pub use train::train;
pub use tune::{reorder as reorder_tune_args, tune};

const EVAL_BATCH: usize = 256;

/// Writes `text` to standard output; a closed output (`kiln ... | head`) is an
/// [`std::io::ErrorKind::BrokenPipe`] error, which `main` ends on quietly.
pub fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Writes a line to standard error, as [`out`] does to standard output.
pub fn err_line(text: &str) -> Result<()> {
    use std::io::Write;
    writeln!(std::io::stderr(), "{text}")?;
    Ok(())
}
