//! Time series: one real value per step, cut into (input window, horizon) samples, split by
//! time, with forecast metrics and the naive baselines a model must beat.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Data, DataError, Targets};

static AIRLINE_CSV: &str = include_str!("../data/airline.csv");

/// A univariate time series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' name.
    pub name: String,
    /// Its values, oldest first.
    pub values: Vec<f64>,
    /// Season length in steps (12 for monthly data with a yearly cycle), when known.
    pub period: Option<usize>,
}

/// The airline passengers series (Box & Jenkins): monthly totals of international airline
/// passengers in thousands, January 1949 to December 1960, 144 values; embedded, period 12.
pub fn airline() -> Series {
    let values = AIRLINE_CSV
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(',')
                .nth(1)
                .and_then(|v| v.trim().parse().ok())
                .expect("embedded airline.csv is well formed")
        })
        .collect();
    Series {
        name: "airline passengers".into(),
        values,
        period: Some(12),
    }
}

/// A series from the column `column` of a CSV file with a header, in row order (rows are
/// numbered from 1 after the header in errors).
pub fn load_series_csv(path: &Path, column: &str) -> Result<Series, DataError> {
    if !path.exists() {
        return Err(DataError::MissingFile {
            path: path.into(),
            hint: "Check the path given to --dataset series-csv:PATH.".into(),
        });
    }
    let csv_err = |e: csv::Error| DataError::Csv {
        path: path.into(),
        reason: e.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(csv_err)?;
    let header = reader.headers().map_err(csv_err)?.clone();
    let at = header
        .iter()
        .position(|h| h == column)
        .ok_or_else(|| DataError::MissingColumn {
            path: path.into(),
            column: column.into(),
            available: header.iter().collect::<Vec<_>>().join(", "),
        })?;
    let mut values = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(csv_err)?;
        let cell = record.get(at).ok_or_else(|| DataError::Ragged {
            path: path.into(),
            row: i + 1,
            expected: header.len(),
            got: record.len(),
        })?;
        values.push(
            crate::csv_table::finite(cell).ok_or_else(|| DataError::NotNumeric {
                path: path.into(),
                row: i + 1,
                column: column.into(),
                value: cell.into(),
            })?,
        );
    }
    if values.is_empty() {
        return Err(DataError::Empty(path.display().to_string()));
    }
    Ok(Series {
        name: column.into(),
        values,
        period: None,
    })
}

/// How a series becomes samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowConfig {
    /// Steps the model sees. Default: 12.
    pub input_len: usize,
    /// Steps ahead it forecasts (one output per step). Default: 1.
    pub horizon: usize,
    /// Fraction of the series at its end whose values are forecast in the test set; training
    /// windows end before it. Default: 0.2.
    pub test_fraction: f64,
    /// Fraction of the steps before the test part whose values are forecast by the validation
    /// windows, the last ones in time; training windows end before the first validation
    /// window's first input, so that the two share no value (overlapping windows split at
    /// random would make validation nearly in-sample). Default: 0.2.
    pub validation_fraction: f64,
    /// Season length for the seasonal naive baseline; detected from the autocorrelation of the
    /// training part when `None` and the series has no known period.
    pub season: Option<usize>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            input_len: 12,
            horizon: 1,
            test_fraction: 0.2,
            validation_fraction: 0.2,
            season: None,
        }
    }
}

/// What is fitted on the training part and undone on forecasts: the series is taken in logs
/// (when every value is positive, so growth is multiplicative), each window is expressed
/// relative to its last input value, and the differences are divided by `scale` (their
/// standard deviation over the training windows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesScaler {
    /// Whether the series is taken in logs.
    pub log: bool,
    /// Standard deviation of the training windows' differences.
    pub scale: f64,
    /// Steps of each window's input.
    pub input_len: usize,
    /// Steps each window forecasts.
    pub horizon: usize,
}

impl SeriesScaler {
    fn forward(&self, v: f64) -> f64 {
        if self.log { v.ln() } else { v }
    }

    fn inverse(&self, z: f64) -> f64 {
        if self.log { z.exp() } else { z }
    }

    /// One window's model input, `[input_len, 1]` values.
    pub fn input(&self, window: &[f64]) -> Vec<f32> {
        let last = self.forward(window[window.len() - 1]);
        window
            .iter()
            .map(|&v| ((self.forward(v) - last) / self.scale) as f32)
            .collect()
    }

    /// The forecasts, in the series' units, of a model output for a window whose last input
    /// value is `last`.
    pub fn forecast(&self, last: f64, output: &[f32]) -> Vec<f64> {
        let z = self.forward(last);
        output
            .iter()
            .map(|&d| self.inverse(z + d as f64 * self.scale))
            .collect()
    }
}

/// A series ready for a model: training, validation and test windows, in that order in time,
/// and what the forecast metrics need.
#[derive(Debug, Clone)]
pub struct Windows {
    /// Samples `[input_len, 1]`, targets `horizon` values.
    pub train: Data,
    /// Validation windows, after the training ones in time and sharing no value with them:
    /// give them to kiln-train's `Trainer::fit_with_validation`, never to a random split.
    pub valid: Data,
    /// Test windows, after the training ones in time.
    pub test: Data,
    /// The scaling (logs or not, and the scale), fitted on the values the training windows
    /// read.
    pub scaler: SeriesScaler,
    /// Last input value of each test window.
    pub test_last: Vec<f64>,
    /// The true values each test window forecasts, `horizon` per window.
    pub test_actual: Vec<f64>,
    /// The seasonal baseline's forecasts (the value one season earlier), when a season is known.
    pub test_seasonal: Option<Vec<f64>>,
    /// The season's length in steps (12 for monthly data), when known.
    pub season: Option<usize>,
}

/// Root mean squared error and mean absolute error of forecasts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForecastError {
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
}

impl ForecastError {
    /// The errors of `forecast` against `actual`.
    pub fn of(forecast: &[f64], actual: &[f64]) -> Self {
        let n = actual.len().max(1) as f64;
        let se: f64 = forecast
            .iter()
            .zip(actual)
            .map(|(f, a)| (f - a).powi(2))
            .sum();
        let ae: f64 = forecast
            .iter()
            .zip(actual)
            .map(|(f, a)| (f - a).abs())
            .sum();
        Self {
            rmse: (se / n).sqrt(),
            mae: ae / n,
        }
    }
}

/// A model's test forecast errors beside the naive baselines'.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForecastReport {
    /// The model's errors.
    pub model: ForecastError,
    /// Forecasting the last seen value.
    pub naive_last: ForecastError,
    /// Forecasting the value one season before.
    pub naive_seasonal: Option<ForecastError>,
    /// The season's length in steps, when known.
    pub season: Option<usize>,
}

impl Windows {
    /// Cuts `series` into windows, split by time: test windows forecast the last
    /// `test_fraction` of the steps, validation windows the last `validation_fraction` of the
    /// steps before them; training windows read only steps before the first validation
    /// window's first input. Logs, the scale and the season are decided on those steps alone.
    pub fn new(series: &Series, config: &WindowConfig) -> Result<Self, DataError> {
        let (len, horizon) = (config.input_len, config.horizon);
        let n = series.values.len();
        if len == 0 || horizon == 0 {
            return Err(DataError::ShapeMismatch {
                what: "window".into(),
                expected: "input_len and horizon of at least 1".into(),
                got: format!("input_len {len}, horizon {horizon}"),
            });
        }
        for fraction in [config.test_fraction, config.validation_fraction] {
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(DataError::InvalidFraction(fraction));
            }
        }
        let held_out = |steps: usize, fraction: f64| {
            steps.saturating_sub(((steps as f64 * fraction).round() as usize).max(1))
        };
        let first_test = held_out(n, config.test_fraction);
        let first_valid = held_out(first_test, config.validation_fraction);
        // Steps the training windows may read: those before the first validation input.
        let train_end = first_valid.saturating_sub(len);
        // Window i reads values[i .. i+len] and forecasts values[i+len .. i+len+horizon].
        let windows = (n + 1).saturating_sub(len + horizon);
        let train_windows: Vec<usize> = (0..windows)
            .filter(|i| i + len + horizon <= train_end)
            .collect();
        let valid_windows: Vec<usize> = (0..windows)
            .filter(|i| i + len >= first_valid && i + len + horizon <= first_test)
            .collect();
        let test_windows: Vec<usize> = (0..windows).filter(|i| i + len >= first_test).collect();
        if train_windows.len() < 2 || valid_windows.is_empty() || test_windows.is_empty() {
            return Err(DataError::ShapeMismatch {
                what: format!("{} ({n} steps)", series.name),
                expected: format!(
                    "enough steps for windows of {len} + {horizon} in the training, validation \
                     and test parts"
                ),
                got: format!(
                    "{} training, {} validation and {} test windows",
                    train_windows.len(),
                    valid_windows.len(),
                    test_windows.len()
                ),
            });
        }
        let values = &series.values;
        // Logs when the training part is positive; a later step that is not cannot be logged.
        let log = values[..train_end].iter().all(|&v| v > 0.0);
        if log && let Some((step, value)) = values.iter().enumerate().find(|(_, v)| **v <= 0.0) {
            return Err(DataError::ShapeMismatch {
                what: format!("{}, step {} (from 1)", series.name, step + 1),
                expected: "a positive value: the training part is positive, so the series is \
                           taken in logs"
                    .into(),
                got: value.to_string(),
            });
        }
        let mut scaler = SeriesScaler {
            log,
            scale: 1.0,
            input_len: len,
            horizon,
        };
        // The scale: the standard deviation of training differences from each window's last value.
        let diffs: Vec<f64> = train_windows
            .iter()
            .flat_map(|&i| {
                let z = |v: f64| scaler.forward(v);
                let last = z(values[i + len - 1]);
                (i..i + len + horizon).map(move |t| z(values[t]) - last)
            })
            .collect();
        let var = diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64;
        scaler.scale = if var > 0.0 { var.sqrt() } else { 1.0 };

        let data = |indices: &[usize]| {
            let mut x = Vec::with_capacity(indices.len() * len);
            let mut y = Vec::with_capacity(indices.len() * horizon);
            for &i in indices {
                x.extend(scaler.input(&values[i..i + len]));
                let last = scaler.forward(values[i + len - 1]);
                y.extend(
                    values[i + len..i + len + horizon]
                        .iter()
                        .map(|&v| ((scaler.forward(v) - last) / scaler.scale) as f32),
                );
            }
            Data {
                x,
                sample_shape: vec![len, 1],
                y: Targets::Values {
                    values: y,
                    names: (1..=horizon).map(|h| format!("t+{h}")).collect(),
                },
                files: None,
            }
        };
        let season = config
            .season
            .or(series.period)
            .or_else(|| detect_season(&values[..train_end]));
        let test_actual: Vec<f64> = test_windows
            .iter()
            .flat_map(|&i| values[i + len..i + len + horizon].iter().copied())
            .collect();
        let test_seasonal = season.filter(|&s| s >= horizon).map(|s| {
            test_windows
                .iter()
                .flat_map(|&i| (i + len..i + len + horizon).map(move |t| values[t - s]))
                .collect()
        });
        Ok(Windows {
            train: data(&train_windows),
            valid: data(&valid_windows),
            test: data(&test_windows),
            test_last: test_windows.iter().map(|&i| values[i + len - 1]).collect(),
            test_actual,
            test_seasonal,
            season,
            scaler,
        })
    }

    /// Test errors of a model's outputs (one row of `horizon` values per test window, in the
    /// order of [`Windows::test`]) and of the naive baselines.
    pub fn report(&self, outputs: &[Vec<f32>]) -> ForecastReport {
        let forecast: Vec<f64> = outputs
            .iter()
            .zip(&self.test_last)
            .flat_map(|(row, &last)| self.scaler.forecast(last, row))
            .collect();
        let horizon = self.scaler.horizon;
        let naive_last: Vec<f64> = self
            .test_last
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, horizon))
            .collect();
        ForecastReport {
            model: ForecastError::of(&forecast, &self.test_actual),
            naive_last: ForecastError::of(&naive_last, &self.test_actual),
            naive_seasonal: self
                .test_seasonal
                .as_ref()
                .map(|s| ForecastError::of(s, &self.test_actual)),
            season: self.season,
        }
    }
}

/// The season length: the lag (2 to a third of the series, at most 60) where the
/// autocorrelation of the first differences peaks, when that peak exceeds 0.3.
pub fn detect_season(values: &[f64]) -> Option<usize> {
    let d: Vec<f64> = values.windows(2).map(|w| w[1] - w[0]).collect();
    let n = d.len();
    let mean = d.iter().sum::<f64>() / n.max(1) as f64;
    let var: f64 = d.iter().map(|v| (v - mean).powi(2)).sum();
    if n < 6 || var == 0.0 {
        return None;
    }
    let acf = |lag: usize| {
        (0..n - lag)
            .map(|t| (d[t] - mean) * (d[t + lag] - mean))
            .sum::<f64>()
            / var
    };
    (2..=(n / 3).min(60))
        .map(|lag| (lag, acf(lag)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|&(_, r)| r > 0.3)
        .map(|(lag, _)| lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airline_is_the_box_jenkins_series() {
        let s = airline();
        assert_eq!(s.values.len(), 144);
        assert_eq!(s.values[0], 112.0);
        assert_eq!(s.values[143], 432.0);
        assert_eq!(detect_season(&s.values[..115]), Some(12));
    }

    #[test]
    fn windows_split_by_time_and_invert_exactly() {
        let s = airline();
        let w = Windows::new(&s, &WindowConfig::default()).unwrap();
        // 29 test steps (20% of 144), 23 validation steps (20% of the 115 before them);
        // training windows read only the 92 - 12 steps before the first validation input.
        assert_eq!(w.test.len(), 29);
        assert_eq!(w.valid.len(), 23);
        assert_eq!(w.train.len(), 80 - 12);
        assert_eq!(w.train.sample_shape, [12, 1]);
        assert_eq!(w.test_actual[0], s.values[115]);
        assert_eq!(*w.test_actual.last().unwrap(), 432.0);
        // The true targets, fed back through the scaler, give the true values.
        let Targets::Values { values, .. } = &w.test.y else {
            panic!("values")
        };
        let outputs: Vec<Vec<f32>> = values.iter().map(|&v| vec![v]).collect();
        assert!(w.report(&outputs).model.rmse < 1e-3);
        // The naive baseline: the last value.
        let last = w.report(&vec![vec![0.0]; 29]);
        assert!((last.model.rmse - last.naive_last.rmse).abs() < 1e-9);
        assert_eq!(last.season, Some(12));
        assert!(last.naive_seasonal.is_some());
    }

    #[test]
    fn forecast_errors_match_hand_computed_values() {
        let e = ForecastError::of(&[1.0, 2.0, 5.0], &[1.0, 4.0, 1.0]);
        assert!((e.rmse - (20.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((e.mae - 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_series_too_short_for_its_windows_is_an_error() {
        let s = Series {
            name: "short".into(),
            values: vec![1.0; 10],
            period: None,
        };
        let e = Windows::new(&s, &WindowConfig::default()).unwrap_err();
        assert!(e.to_string().contains("short (10 steps)"), "{e}");
    }

    /// The series 1, 2, 3, ...: each window's first input tells which steps it reads.
    fn counting(n: usize) -> Series {
        Series {
            name: "counting".into(),
            values: (1..=n).map(|v| v as f64).collect(),
            period: None,
        }
    }

    /// The step (from 0) each window of `data` starts at, read back from its inputs.
    fn starts(w: &Windows, data: &Data) -> Vec<usize> {
        (0..data.len())
            .map(|i| {
                // Window i reads i+1 ..= i+len; its first input is ln((i+1) / (i+len)) / scale.
                let len = w.scaler.input_len as f64;
                let ratio = (data.sample(i)[0] as f64 * w.scaler.scale).exp();
                ((ratio * len - 1.0) / (1.0 - ratio)).round() as usize
            })
            .collect()
    }

    /// Validation windows come after the training ones in time, and no value read by a
    /// training window (input or target) is read by a validation window.
    #[test]
    fn validation_windows_follow_training_and_share_no_value() {
        let config = WindowConfig {
            input_len: 5,
            horizon: 2,
            ..WindowConfig::default()
        };
        let w = Windows::new(&counting(100), &config).unwrap();
        // 20 test steps, 16 validation steps: first_valid 64, training reads steps < 59.
        let (train, valid) = (starts(&w, &w.train), starts(&w, &w.valid));
        assert_eq!(train, (0..=52).collect::<Vec<_>>());
        assert_eq!(valid, (59..=73).collect::<Vec<_>>());
        let last_read_by_training = train.iter().max().unwrap() + 5 + 2 - 1;
        let first_read_by_validation = *valid.iter().min().unwrap();
        assert!(last_read_by_training < first_read_by_validation);
        // And the test windows forecast steps after every validation target.
        assert_eq!(w.test_actual[0], 81.0);
    }

    /// Logs are decided on the training part only: a series positive there but not later is
    /// an error naming the step, not a NaN in the test inputs.
    #[test]
    fn logs_are_decided_on_the_training_part() {
        let mut s = counting(100);
        s.values[95] = -1.0;
        let e = Windows::new(&s, &WindowConfig::default()).unwrap_err();
        assert!(e.to_string().contains("step 96"), "{e}");
        // Non-positive in the training part: no logs, and the windows are fine.
        s.values[3] = 0.0;
        assert!(
            !Windows::new(&s, &WindowConfig::default())
                .unwrap()
                .scaler
                .log
        );
    }
}
