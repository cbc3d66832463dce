//! `kiln`: train and evaluate kiln models from the command line.

mod args;
mod commands;
mod dataset;

use clap::{CommandFactory, FromArgMatches};

use crate::args::{Cli, Command};

/// mimalloc reuses freed tensor buffers; see the README's note on allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let result = run();
    if result.is_ok() {
        commands::job::finish();
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of our output went away (`kiln train | head`): end quietly, with the
        // status a shell gives a process that SIGPIPE ended. The run directory holds the
        // epochs done (its checkpoint and history).
        Err(e) if output_closed(&e) => std::process::ExitCode::from(141),
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "error: {}{e:#}",
                commands::job::rank_prefix()
            );
            commands::job::abort(1);
            std::process::ExitCode::FAILURE
        }
    }
}

fn output_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref(),
            Some(kiln::train::TrainError::OutputClosed { .. })
        ) || cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // `kiln tune` takes kiln train's flags among its own, in any order.
    let argv = commands::reorder_tune_args(std::env::args().collect());
    let matches = Cli::command().get_matches_from(argv);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match &mut cli.command {
        None => {
            cli.train.note_given(&matches);
            commands::train(&cli.train)
        }
        Some(Command::Train(args)) => {
            args.note_given(matches.subcommand_matches("train").expect("train matches"));
            commands::train(args)
        }
        Some(Command::Eval(args)) => commands::eval(args),
        Some(Command::Predict(args)) => commands::predict(args),
        Some(Command::Summary(args)) => {
            args.note_given(
                matches
                    .subcommand_matches("summary")
                    .expect("summary matches"),
            );
            commands::summary(args)
        }
        Some(Command::Plot(args)) => commands::plot(args),
        Some(Command::Diagnose(args)) => commands::diagnose_run(args),
        Some(Command::Export(args)) => commands::export(args),
        Some(Command::LrFind(args)) => {
            let lr_find = matches
                .subcommand_matches("lr-find")
                .expect("lr-find matches");
            args.train.note_given(lr_find);
            commands::lr_find(args)
        }
        Some(Command::Import(args)) => commands::import(args),
        Some(Command::Distill(args)) => {
            args.train.note_given(
                matches
                    .subcommand_matches("distill")
                    .expect("distill matches"),
            );
            commands::distill(args)
        }
        Some(Command::Pretrain(args)) => {
            args.train.note_given(
                matches
                    .subcommand_matches("pretrain")
                    .expect("pretrain matches"),
            );
            commands::pretrain(args)
        }
        Some(Command::Tune(args)) => {
            args.given = args::given::<args::TuneArgs>(
                matches.subcommand_matches("tune").expect("tune matches"),
            );
            commands::tune(args)
        }
    }
}
