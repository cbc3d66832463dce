//! `kiln tune`'s command line: its own flags, and `kiln train`'s, any of them a range.

use anyhow::{Result, bail};
use clap::{ArgAction, CommandFactory, Parser};
use kiln::tune::{Distribution, SearchSpace};

use crate::args::Cli;

/// `kiln train` flags that fix where and how a trial runs, not what it computes: `kiln tune`
/// sets them itself, or they cannot differ between trials.
const NOT_SEARCHABLE: [&str; 12] = [
    "out",
    "overwrite",
    "resume",
    "quiet",
    "device",
    "devices",
    "auto-fix",
    "config",
    "tune-trial",
    "dataset",
    "init-from",
    "save-best",
];

/// Flags `kiln tune` sets on every trial: they may not come with its train flags.
const SET_BY_TUNE: [&str; 6] = [
    "out",
    "overwrite",
    "resume",
    "quiet",
    "config",
    "tune-trial",
];

/// Puts `kiln tune`'s own flags first and `kiln train`'s after a `--`, so that the two may be
/// given in any order (`kiln tune --lr 1e-4..1e-1:log --trials 20 --epochs 10`). Any other
/// command line is returned as it is.
pub fn reorder(argv: Vec<String>) -> Vec<String> {
    if argv.get(1).map(String::as_str) != Some("tune") || argv.iter().any(|a| a == "--") {
        return argv;
    }
    let cli = Cli::command();
    let takes_value = |command: &str, name: &str| -> Option<bool> {
        let sub = cli.find_subcommand(command)?;
        let arg = sub.get_arguments().find(|a| a.get_long() == Some(name))?;
        Some(!matches!(
            arg.get_action(),
            ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Help | ArgAction::Version
        ))
    };
    let (mut own, mut train) = (Vec::new(), Vec::new());
    let mut tokens = argv[2..].iter().cloned().peekable();
    while let Some(token) = tokens.next() {
        let Some(flag) = token.strip_prefix("--") else {
            // -h, or a stray value: clap judges it with kiln tune's flags.
            own.push(token);
            continue;
        };
        let (name, inline_value) = match flag.split_once('=') {
            Some((name, _)) => (name.to_string(), true),
            None => (flag.to_string(), false),
        };
        let (target, value) = match takes_value("tune", &name) {
            Some(value) => (&mut own, value),
            None if name == "help" => (&mut own, false),
            // A train flag, or an unknown one (clap names it when the trials' flags are
            // checked): a value follows unless the next token is a flag.
            None => (
                &mut train,
                takes_value("train", &name)
                    .unwrap_or_else(|| tokens.peek().is_some_and(|t| !t.starts_with("--"))),
            ),
        };
        target.push(token);
        if value && !inline_value {
            target.extend(tokens.next());
        }
    }
    let mut out = argv[..2].to_vec();
    out.extend(own);
    if !train.is_empty() {
        out.push("--".into());
        out.extend(train);
    }
    out
}

/// The trials' `kiln train` flags, split into those every trial shares and the search space
/// (each range's hyperparameter named by its flag, without the dashes).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainFlags {
    pub fixed: Vec<String>,
    pub space: SearchSpace,
}

/// Reads `tokens` (`--flag value` or `--flag=value`, and flags without values), checks that
/// every flag is a `kiln train` flag that may be set, every range parses and every end of
/// every range is a value `kiln train` accepts.
pub fn train_flags(tokens: &[String]) -> Result<TrainFlags> {
    let cli = Cli::command();
    let train = cli
        .find_subcommand("train")
        .expect("kiln has a train command");
    let mut fixed = Vec::new();
    let mut space = SearchSpace::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let Some(flag) = token.strip_prefix("--") else {
            bail!("`{token}`: expected a kiln train flag such as --lr");
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        let Some(arg) = train.get_arguments().find(|a| a.get_long() == Some(name)) else {
            bail!("--{name}: kiln train has no such flag (see kiln train --help)");
        };
        if SET_BY_TUNE.contains(&name) {
            bail!("--{name}: kiln tune sets it for each trial (the study directory is --dir)");
        }
        let takes_value = !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let value = match (takes_value, inline) {
            (false, Some(_)) => bail!("--{name} takes no value, so it cannot be searched"),
            (false, None) => None,
            (true, Some(v)) => Some(v),
            (true, None) => {
                i += 1;
                match tokens.get(i) {
                    Some(v) => Some(v.clone()),
                    None => bail!("--{name}: a value or a range must follow"),
                }
            }
        };
        i += 1;
        let Some(value) = value else {
            fixed.push(token.clone());
            continue;
        };
        match Distribution::parse(&value, !accepts(name, "0.5")) {
            None => fixed.extend([format!("--{name}"), value]),
            Some(Err(reason)) => bail!("--{name}: {reason}"),
            Some(Ok(_)) if NOT_SEARCHABLE.contains(&name) => {
                bail!("--{name} cannot be searched: give it one value")
            }
            Some(Ok(distribution)) => {
                distribution
                    .check(name)
                    .map_err(|e| anyhow::anyhow!("--{name}: {e}"))?;
                space = space.with(name, distribution);
            }
        }
    }
    let flags = TrainFlags { fixed, space };
    flags.check_ends()?;
    Ok(flags)
}

/// Whether `kiln train --NAME VALUE` parses.
fn accepts(name: &str, value: &str) -> bool {
    parse_train(&[format!("--{name}"), value.to_string()]).is_ok()
}

/// `kiln train` with `flags`, parsed as the command line would be.
fn parse_train(flags: &[String]) -> Result<(), clap::Error> {
    let argv = ["kiln", "train"]
        .into_iter()
        .map(String::from)
        .chain(flags.iter().cloned());
    Cli::try_parse_from(argv).map(|_| ())
}

impl TrainFlags {
    /// Every end of every range (each choice), with the other flags, as kiln train reads them.
    fn check_ends(&self) -> Result<()> {
        parse_train(&self.fixed).map_err(|e| anyhow::anyhow!("{}", first_line(&e)))?;
        for (name, d) in &self.space.params {
            let ends: Vec<String> = match d {
                Distribution::Float { low, high, .. } => {
                    vec![format!("{low:?}"), format!("{high:?}")]
                }
                Distribution::Int { low, high, .. } => vec![low.to_string(), high.to_string()],
                Distribution::Choice { choices } => choices.clone(),
            };
            for end in ends {
                let mut flags = self.fixed.clone();
                flags.extend([format!("--{name}"), end.clone()]);
                parse_train(&flags).map_err(|e| {
                    anyhow::anyhow!(
                        "--{name} {d}: `{end}` is not a value kiln train takes: {}",
                        first_line(&e)
                    )
                })?;
            }
        }
        Ok(())
    }

    /// A trial's flags: the fixed ones, then each hyperparameter's value.
    pub fn trial(&self, params: &kiln::tune::Params) -> Vec<String> {
        let mut flags = self.fixed.clone();
        for (name, value) in params {
            flags.extend([format!("--{name}"), value.to_string()]);
        }
        flags
    }
}

/// A clap error's message without its usage lines.
fn first_line(e: &clap::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn tune_and_train_flags_may_come_in_any_order() {
        let argv = strings(
            "kiln tune --lr 1e-4..1e-1:log --trials 20 --batch-norm --epochs 5 --pruner=asha \
             --hidden 64|128,64 --quiet",
        );
        assert_eq!(
            reorder(argv).join(" "),
            "kiln tune --trials 20 --pruner=asha --quiet -- --lr 1e-4..1e-1:log --batch-norm \
             --epochs 5 --hidden 64|128,64"
        );
        // Not tune, or split already: as given.
        let train = strings("kiln train --lr 0.1");
        assert_eq!(reorder(train.clone()), train);
        let split = strings("kiln tune --trials 2 -- --lr 0.1..0.2");
        assert_eq!(reorder(split.clone()), split);
    }

    #[test]
    fn ranges_become_the_search_space_and_the_rest_stays_fixed() {
        let flags = train_flags(&strings(
            "--dataset digits --lr 1e-4..1e-1:log --batch-size 16|32|64 --epochs 5..20 \
             --dropout 0..0.5 --batch-norm --hidden 64|128,64",
        ))
        .unwrap();
        assert_eq!(flags.fixed, strings("--dataset digits --batch-norm"));
        let names: Vec<&str> = flags.space.params.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["lr", "batch-size", "epochs", "dropout", "hidden"]);
        assert_eq!(
            flags.space.get("epochs"),
            Some(&Distribution::Int {
                low: 5,
                high: 20,
                log: false
            })
        );
        // 0..0.5 on a real-valued flag; 0..1 would be real too.
        assert!(matches!(
            flags.space.get("dropout"),
            Some(Distribution::Float { .. })
        ));
    }

    #[test]
    fn bad_ranges_and_flags_are_named() {
        let error = |s: &str| train_flags(&strings(s)).unwrap_err().to_string();
        let e = error("--epochs 5.5..20");
        assert!(e.contains("--epochs") && e.contains("whole numbers"), "{e}");
        let e = error("--no-such-flag 1..2");
        assert!(
            e.contains("--no-such-flag") && e.contains("no such flag"),
            "{e}"
        );
        let e = error("--out a|b");
        assert!(e.contains("--out") && e.contains("sets it"), "{e}");
        let e = error("--dataset digits|iris");
        assert!(e.contains("cannot be searched"), "{e}");
        let e = error("--optimizer adam|lion");
        assert!(e.contains("--optimizer") && e.contains("lion"), "{e}");
        let e = error("--lr 0..1:log");
        assert!(e.contains("--lr") && e.contains("above 0"), "{e}");
        let e = error("--batch-norm=on|off");
        assert!(e.contains("takes no value"), "{e}");
    }
}
