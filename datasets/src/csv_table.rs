use std::collections::BTreeMap;
use std::path::Path;

use crate::{Data, DataError, Targets};

/// How to read a CSV table: which column is the target and whether it holds classes.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// The target column's name, as in the header row.
    pub target: String,
    /// `Some(true)`: the target is a class label (any text); `Some(false)`: a real value
    /// (regression). `None` (default): classes if any target cell is not a number, or if every
    /// one is a whole number with at most 20 distinct values. An empty, `nan` or infinite
    /// cell, feature or target, is an error naming its row and column.
    pub classification: Option<bool>,
}

impl CsvOptions {
    /// Reads `target` as the target column, guessing the task.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            classification: None,
        }
    }
}

/// The column names of a CSV file's header row.
pub fn csv_header(path: impl AsRef<Path>) -> Result<Vec<String>, DataError> {
    let path = path.as_ref();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| match e.kind() {
            csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                DataError::MissingFile {
                    path: path.into(),
                    hint: "Check the path given after `csv:`.".into(),
                }
            }
            _ => DataError::Csv {
                path: path.into(),
                reason: e.to_string(),
            },
        })?;
    let header = reader.headers().map_err(|e| DataError::Csv {
        path: path.into(),
        reason: e.to_string(),
    })?;
    Ok(header.iter().map(str::to_string).collect())
}

/// Loads a CSV file with a header row: every column but the target is a numeric feature.
///
/// Class labels are mapped to class indices in sorted order of their text (numeric labels in
/// numeric order). Errors name the file, and the row and column of a bad cell; rows are
/// numbered from 1 for the first data row after the header.
pub fn load_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Data, DataError> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(DataError::MissingFile {
            path: path.into(),
            hint: "Check the path given after `csv:`.".into(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    parse_csv(&text, path, options)
}

pub(crate) fn parse_csv(text: &str, path: &Path, options: &CsvOptions) -> Result<Data, DataError> {
    let csv_err = |e: csv::Error| DataError::Csv {
        path: path.into(),
        reason: e.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(str::to_string)
        .collect();
    let target = header
        .iter()
        .position(|h| *h == options.target)
        .ok_or_else(|| DataError::MissingColumn {
            path: path.into(),
            column: options.target.clone(),
            available: header.join(", "),
        })?;

    let mut x = Vec::new();
    let mut raw_targets = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = record.map_err(csv_err)?;
        if record.len() != header.len() {
            return Err(DataError::Ragged {
                path: path.into(),
                row,
                expected: header.len(),
                got: record.len(),
            });
        }
        for (j, cell) in record.iter().enumerate() {
            if j == target {
                raw_targets.push(cell.to_string());
                continue;
            }
            let v: f32 = finite(cell).ok_or_else(|| DataError::NotNumeric {
                path: path.into(),
                row,
                column: header[j].clone(),
                value: cell.to_string(),
            })?;
            x.push(v);
        }
    }
    if raw_targets.is_empty() {
        return Err(DataError::Empty(path.display().to_string()));
    }

    // An empty, NaN or infinite target is a missing value, never a class of its own.
    if let Some((i, t)) = raw_targets
        .iter()
        .enumerate()
        .find(|(_, t)| t.is_empty() || t.parse::<f64>().is_ok_and(|v| !v.is_finite()))
    {
        return Err(DataError::NotNumeric {
            path: path.into(),
            row: i + 1,
            column: options.target.clone(),
            value: t.clone(),
        });
    }
    let numeric: Option<Vec<f64>> = raw_targets.iter().map(|t| finite(t)).collect();
    let classification = options.classification.unwrap_or_else(|| match &numeric {
        None => true,
        Some(values) => {
            let whole = values.iter().all(|v| v.fract() == 0.0);
            let mut distinct: Vec<i64> = values.iter().map(|&v| v as i64).collect();
            distinct.sort_unstable();
            distinct.dedup();
            whole && distinct.len() <= 20
        }
    });

    let y = if classification {
        class_targets(&raw_targets, numeric.as_deref())
    } else {
        let values = numeric.ok_or_else(|| {
            let (row, value) = raw_targets
                .iter()
                .enumerate()
                .find(|(_, t)| finite::<f64>(t).is_none())
                .map(|(i, t)| (i + 1, t.clone()))
                .unwrap_or_default();
            DataError::NotNumeric {
                path: path.into(),
                row,
                column: options.target.clone(),
                value,
            }
        })?;
        Targets::Values {
            values: values.into_iter().map(|v| v as f32).collect(),
            names: vec![options.target.clone()],
        }
    };
    Data::new(x, vec![header.len() - 1], y)
}

fn class_targets(raw: &[String], numeric: Option<&[f64]>) -> Targets {
    // Order classes numerically when every label is a number, else by text.
    let mut keyed: BTreeMap<(i64, String), usize> = BTreeMap::new();
    let key = |i: usize| match numeric {
        Some(values) => ((values[i] * 1e6) as i64, String::new()),
        None => (0, raw[i].clone()),
    };
    for i in 0..raw.len() {
        keyed.entry(key(i)).or_insert(i);
    }
    let names: Vec<String> = keyed.values().map(|&i| raw[i].clone()).collect();
    let index: BTreeMap<(i64, String), usize> = keyed
        .keys()
        .cloned()
        .enumerate()
        .map(|(c, k)| (k, c))
        .collect();
    let labels = (0..raw.len()).map(|i| index[&key(i)]).collect();
    Targets::Classes { labels, names }
}

/// A cell's number, when it is a finite one: Rust's parser also reads `nan` and `inf`, which
/// would silently turn a standardised column into NaN.
pub(crate) fn finite<T: std::str::FromStr + Into<f64> + Copy>(cell: &str) -> Option<T> {
    cell.parse::<T>().ok().filter(|v| (*v).into().is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, target: &str) -> Result<Data, DataError> {
        parse_csv(text, Path::new("t.csv"), &CsvOptions::new(target))
    }

    #[test]
    fn reads_features_and_text_classes() {
        let d = parse("a,b,kind\n1,2,dog\n3,4,cat\n5,6,dog\n", "kind").unwrap();
        assert_eq!(d.x, vec![1., 2., 3., 4., 5., 6.]);
        assert_eq!(d.sample_shape, vec![2]);
        assert_eq!(
            d.y,
            Targets::Classes {
                labels: vec![1, 0, 1],
                names: vec!["cat".into(), "dog".into()]
            }
        );
    }

    #[test]
    fn target_may_sit_in_any_column_and_reals_mean_regression() {
        let d = parse("price,area\n10.5,1\n20.25,2\n", "price").unwrap();
        assert_eq!(d.x, vec![1., 2.]);
        assert!(!d.is_classification());
    }

    #[test]
    fn numeric_classes_sort_numerically() {
        let d = parse("x,y\n0,10\n0,2\n0,10\n", "y").unwrap();
        assert_eq!(
            d.y,
            Targets::Classes {
                labels: vec![1, 0, 1],
                names: vec!["2".into(), "10".into()]
            }
        );
    }

    #[test]
    fn missing_column_lists_the_columns() {
        let e = parse("a,b\n1,2\n", "c").unwrap_err().to_string();
        assert!(e.contains("`c`") && e.contains("a, b"), "{e}");
    }

    #[test]
    fn non_numeric_cell_names_row_and_column() {
        let e = parse("a,b,y\n1,2,0\n3,oops,1\n", "y")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 2") && e.contains("`b`") && e.contains("oops"),
            "{e}"
        );
    }

    #[test]
    fn nan_and_infinite_cells_name_row_and_column() {
        for cell in ["nan", "NaN", "inf", "-inf", "infinity", "1e40"] {
            let e = parse(&format!("a,b,y\n1,2,0\n3,{cell},1\n"), "y")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("row 2") && e.contains("`b`") && e.contains("not a finite number"),
                "{cell}: {e}"
            );
        }
        // A regression target too.
        let e = parse("a,price\n1,10.5\n2,nan\n3,2.5\n", "price");
        let e = match e {
            Ok(d) => panic!("read as {:?}", d.y),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("row 2") && e.contains("`price`"), "{e}");
        // An empty class cell is not a class of its own.
        let e = parse("a,kind\n1,dog\n2,\n3,cat\n", "kind").unwrap_err();
        assert!(e.to_string().contains("row 2"), "{e}");
    }

    #[test]
    fn ragged_row_is_an_error() {
        let e = parse("a,b,y\n1,2,0\n3,1\n", "y").unwrap_err().to_string();
        assert!(e.contains("row 2 has 2 fields, expected 3"), "{e}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = load_csv("/nonexistent/x.csv", &CsvOptions::new("y")).unwrap_err();
        assert!(matches!(e, DataError::MissingFile { .. }));
    }
}
