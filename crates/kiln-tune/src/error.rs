//! What can go wrong in a study.

/// A study's errors.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// A hyperparameter whose range cannot be searched.
    #[error("search space: `{param}`: {reason}")]
    Space {
        /// The hyperparameter.
        param: String,
        /// What is wrong with its range.
        reason: String,
    },
    /// A tuner option out of range (named as the field is).
    #[error("invalid tuning option `{option}`: {reason}")]
    InvalidOption {
        /// The option's field name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The study's database could not be opened, read or written.
    #[error("study storage {url}: {reason}")]
    Storage {
        /// The database (without its password).
        url: String,
        /// The database's own message.
        reason: String,
    },
    /// A study of this name exists with another search space or objective.
    #[error(
        "study `{name}` exists with another configuration ({what} differs): give a new study \
         name or directory, or resume it as it was"
    )]
    Mismatch {
        /// The study's name.
        name: String,
        /// The part that differs.
        what: String,
    },
    /// A study that was never created.
    #[error("no study `{name}` in {url}")]
    NoStudy {
        /// The name asked for.
        name: String,
        /// The database.
        url: String,
    },
    /// The objective of a trial failed; the study records it and goes on.
    #[error("trial {number} failed: {reason}")]
    Trial {
        /// The trial's number in its study.
        number: u64,
        /// Why it failed.
        reason: String,
    },
}
