//! What a study searches: each hyperparameter's name and the values it may take.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::TuneError;

/// The values one hyperparameter may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Distribution {
    /// A real number in `[low, high]`, uniform, or uniform in its logarithm when `log`.
    Float {
        /// The smallest value.
        low: f64,
        /// The largest value.
        high: f64,
        /// Uniform in the logarithm (a learning rate).
        log: bool,
    },
    /// A whole number in `[low, high]`, uniform, or uniform in its logarithm when `log`.
    Int {
        /// The smallest value.
        low: i64,
        /// The largest value.
        high: i64,
        /// Uniform in the logarithm (a layer width).
        log: bool,
    },
    /// One of these texts, each as likely.
    Choice {
        /// The values, as the command line spells them.
        choices: Vec<String>,
    },
}

impl Distribution {
    /// Checks the bounds: `low <= high`, finite, positive when `log`, at least one choice.
    pub fn check(&self, name: &str) -> Result<(), TuneError> {
        let bad = |reason: String| {
            Err(TuneError::Space {
                param: name.to_string(),
                reason,
            })
        };
        match self {
            Distribution::Float { low, high, log } => {
                if !(low.is_finite() && high.is_finite()) || low > high {
                    return bad(format!("the range {low}..{high} is empty or not finite"));
                }
                if *log && *low <= 0.0 {
                    return bad(format!("a log range needs a low end above 0, got {low}"));
                }
            }
            Distribution::Int { low, high, log } => {
                if low > high {
                    return bad(format!("the range {low}..{high} is empty"));
                }
                if *log && *low <= 0 {
                    return bad(format!("a log range needs a low end above 0, got {low}"));
                }
            }
            Distribution::Choice { choices } => {
                if choices.is_empty() || choices.iter().any(String::is_empty) {
                    return bad("every choice must be a non-empty text".into());
                }
            }
        }
        Ok(())
    }

    /// Reads the command line's range forms: `LOW..HIGH` (uniform), `LOW..HIGH:log`, and
    /// `A|B|C` (choices). `integer` says whether the flag takes whole numbers; a range whose
    /// ends are not numbers of that kind is an error. `None` for a text that is no range.
    pub fn parse(text: &str, integer: bool) -> Option<Result<Self, String>> {
        if text.contains('|') {
            let choices: Vec<String> = text.split('|').map(|c| c.trim().to_string()).collect();
            if choices.iter().any(String::is_empty) {
                return Some(Err(format!("`{text}`: an empty choice between `|`s")));
            }
            return Some(Ok(Distribution::Choice { choices }));
        }
        let (range, log) = match text.strip_suffix(":log") {
            Some(range) => (range, true),
            None => (text, false),
        };
        let (low, high) = range.split_once("..")?;
        let (low, high) = (low.trim(), high.trim());
        // `../data.csv` is a path, not a range: both ends must look like numbers.
        let numeric = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
        };
        if !numeric(low) || !numeric(high) {
            return if log {
                Some(Err(format!(
                    "`{text}`: a range is LOW..HIGH[:log] of numbers"
                )))
            } else {
                None
            };
        }
        let parsed = if integer {
            match (low.parse::<i64>(), high.parse::<i64>()) {
                (Ok(low), Ok(high)) => Ok(Distribution::Int { low, high, log }),
                _ => Err(format!(
                    "`{text}`: this flag takes whole numbers, as in 16..128"
                )),
            }
        } else {
            match (low.parse::<f64>(), high.parse::<f64>()) {
                (Ok(low), Ok(high)) => Ok(Distribution::Float { low, high, log }),
                _ => Err(format!("`{text}`: a range is LOW..HIGH[:log] of numbers")),
            }
        };
        Some(parsed)
    }

    /// The number of distinct values (`None`: a continuum).
    pub fn cardinality(&self) -> Option<u64> {
        match self {
            Distribution::Float { low, high, .. } => (low == high).then_some(1),
            Distribution::Int { low, high, .. } => Some((high - low) as u64 + 1),
            Distribution::Choice { choices } => Some(choices.len() as u64),
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = |log: bool| if log { ":log" } else { "" };
        match self {
            Distribution::Float { low, high, log: l } => write!(f, "{low}..{high}{}", log(*l)),
            Distribution::Int { low, high, log: l } => write!(f, "{low}..{high}{}", log(*l)),
            Distribution::Choice { choices } => f.write_str(&choices.join("|")),
        }
    }
}

/// One sampled value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A whole number.
    Int(i64),
    /// A real number.
    Float(f64),
    /// One of the choices.
    Choice(String),
}

impl ParamValue {
    /// The value as a number (a choice's text parsed, if it is one).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Int(v) => Some(*v as f64),
            ParamValue::Float(v) => Some(*v),
            ParamValue::Choice(c) => c.parse().ok(),
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            // The shortest text that reads back to the same number.
            ParamValue::Float(v) => write!(f, "{v:?}"),
            ParamValue::Choice(c) => f.write_str(c),
        }
    }
}

/// A trial's values, by hyperparameter name.
pub type Params = BTreeMap<String, ParamValue>;

/// The hyperparameters of a study, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    /// Each hyperparameter's name and values.
    pub params: Vec<(String, Distribution)>,
}

impl SearchSpace {
    /// An empty space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a real-valued hyperparameter in `[low, high]`.
    pub fn float(self, name: &str, low: f64, high: f64) -> Self {
        self.with(
            name,
            Distribution::Float {
                low,
                high,
                log: false,
            },
        )
    }

    /// Adds a real-valued hyperparameter in `[low, high]`, uniform in its logarithm (a
    /// learning rate, a weight decay).
    pub fn log_float(self, name: &str, low: f64, high: f64) -> Self {
        self.with(
            name,
            Distribution::Float {
                low,
                high,
                log: true,
            },
        )
    }

    /// Adds a whole-number hyperparameter in `[low, high]`.
    pub fn int(self, name: &str, low: i64, high: i64) -> Self {
        self.with(
            name,
            Distribution::Int {
                low,
                high,
                log: false,
            },
        )
    }

    /// Adds a hyperparameter taking one of `choices`.
    pub fn choice<S: ToString>(self, name: &str, choices: &[S]) -> Self {
        let choices = choices.iter().map(ToString::to_string).collect();
        self.with(name, Distribution::Choice { choices })
    }

    /// Adds (or replaces) `name`.
    pub fn with(mut self, name: &str, distribution: Distribution) -> Self {
        self.params.retain(|(n, _)| n != name);
        self.params.push((name.to_string(), distribution));
        self
    }

    /// Checks every hyperparameter, and that there is at least one.
    pub fn check(&self) -> Result<(), TuneError> {
        if self.params.is_empty() {
            return Err(TuneError::Space {
                param: "(none)".into(),
                reason: "the search space is empty: give at least one range".into(),
            });
        }
        self.params.iter().try_for_each(|(n, d)| d.check(n))
    }

    /// The distribution of `name`.
    pub fn get(&self, name: &str) -> Option<&Distribution> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_forms_parse() {
        assert_eq!(
            Distribution::parse("1e-4..1e-1:log", false),
            Some(Ok(Distribution::Float {
                low: 1e-4,
                high: 0.1,
                log: true
            }))
        );
        assert_eq!(
            Distribution::parse("16..128", true),
            Some(Ok(Distribution::Int {
                low: 16,
                high: 128,
                log: false
            }))
        );
        assert_eq!(
            Distribution::parse("64|128,64|256,128", false),
            Some(Ok(Distribution::Choice {
                choices: vec!["64".into(), "128,64".into(), "256,128".into()]
            }))
        );
        // Not ranges: a path and a plain value.
        assert_eq!(Distribution::parse("csv:../data.csv", false), None);
        assert_eq!(Distribution::parse("0.001", false), None);
        // Ranges that cannot parse.
        assert!(matches!(Distribution::parse("0.5..2", true), Some(Err(_))));
        assert!(matches!(Distribution::parse("a|", false), Some(Err(_))));
        assert!(matches!(
            Distribution::parse("x..y:log", false),
            Some(Err(_))
        ));
    }

    #[test]
    fn bad_bounds_are_named() {
        let space = SearchSpace::new().log_float("lr", 0.0, 1.0);
        let e = space.check().unwrap_err().to_string();
        assert!(e.contains("lr") && e.contains("above 0"), "{e}");
        let e = SearchSpace::new().int("n", 5, 1).check().unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        assert!(SearchSpace::new().check().is_err());
    }

    proptest::proptest! {
        /// Any text: a range, no range or a clear error, never a panic; and a range written
        /// out by Display reads back to itself.
        #[test]
        fn any_text_parses_without_panicking(text in ".{0,24}", integer: bool) {
            if let Some(Ok(d)) = Distribution::parse(&text, integer)
                && d.check("x").is_ok()
                && !matches!(d, Distribution::Choice { .. })
            {
                let again = Distribution::parse(&d.to_string(), integer);
                proptest::prop_assert_eq!(again, Some(Ok(d)));
            }
        }

        #[test]
        fn numeric_ranges_read_back(low in -1e6f64..1e6, span in 0f64..1e6, log: bool) {
            let low = if log { low.abs() + 1e-9 } else { low };
            let d = Distribution::Float { low, high: low + span, log };
            let text = format!("{low:?}..{:?}{}", low + span, if log { ":log" } else { "" });
            proptest::prop_assert_eq!(Distribution::parse(&text, false), Some(Ok(d)));
        }
    }

    #[test]
    fn values_round_trip_through_json() {
        let params: Params = [
            ("a".to_string(), ParamValue::Int(3)),
            ("b".to_string(), ParamValue::Float(1.0)),
            ("c".to_string(), ParamValue::Choice("adam".into())),
        ]
        .into();
        let text = serde_json::to_string(&params).unwrap();
        let back: Params = serde_json::from_str(&text).unwrap();
        assert_eq!(back, params);
    }
}
