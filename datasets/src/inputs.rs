//! New rows to predict on, read from a CSV by column name, and the predictions written back.

use std::path::Path;

use crate::csv_table::finite;
use crate::text::csv_error;
use crate::{Data, DataError, Targets};

/// Rows to predict on ([`load_inputs_csv`]): the features, in the order the model reads them,
/// and the file's own id column when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// The feature rows (unlabelled).
    pub data: Data,
    /// The id column (`id`, `Id`, `PassengerId`, ...), kept for the predictions file.
    pub ids: Option<IdColumn>,
    /// Whether the file had no header row (its first row was numbers, read as data).
    pub headerless: bool,
}

/// An input file's id column.
#[derive(Debug, Clone, PartialEq)]
pub struct IdColumn {
    /// Its name in the header.
    pub name: String,
    /// One id per row.
    pub values: Vec<String>,
}

/// What the model was trained on, to read a predict file by: the feature columns (in the
/// model's order; `None` when the training data had no names, as images) and the target
/// columns, which a file may carry (the training file itself) and are then skipped.
#[derive(Debug, Clone, Copy)]
pub struct InputColumns<'a> {
    /// The feature columns the model reads, in order.
    pub features: Option<&'a [String]>,
    /// Target columns, skipped when present.
    pub targets: &'a [String],
}

/// Whether a column name is an id: `id` in any case, or a name ending in `_id`, `Id` or `ID`
/// (`row_id`, `PassengerId`, `ImageID`).
fn is_id(name: &str) -> bool {
    name.eq_ignore_ascii_case("id")
        || name.to_ascii_lowercase().ends_with("_id")
        || (name.len() > 2 && (name.ends_with("Id") || name.ends_with("ID")))
}

/// Reads a CSV of rows to predict on.
///
/// The header names the columns: the model's features are taken by name (in any order), the
/// target columns are skipped, an id column is kept; a missing feature, or a column the model
/// does not know, is an error naming it and the columns the model reads. A file whose first row
/// is all numbers has no header: its columns are taken in the model's order, and their number
/// must match. Every cell must be a finite number (errors name row and column).
pub fn load_inputs_csv(path: &Path, columns: InputColumns<'_>) -> Result<Inputs, DataError> {
    if !path.exists() {
        return Err(DataError::MissingFile {
            path: path.into(),
            hint: "Check the path of the CSV file of rows to predict on.".into(),
        });
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let mut records = reader.records();
    let first: Vec<String> = match records.next() {
        Some(record) => record
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(str::to_string)
            .collect(),
        None => return Err(DataError::Empty(path.display().to_string())),
    };
    let headerless = first.iter().all(|c| finite::<f32>(c).is_some());
    let header: Vec<String> = if headerless {
        match columns.features {
            Some(names) if names.len() == first.len() => names.to_vec(),
            Some(names) => {
                return Err(DataError::WrongColumns {
                    path: path.into(),
                    reason: format!(
                        "no header row, and {} columns where the model reads {} ({}); add a \
                         header row naming the columns",
                        first.len(),
                        names.len(),
                        names.join(", ")
                    ),
                });
            }
            None => (0..first.len())
                .map(|j| format!("column {}", j + 1))
                .collect(),
        }
    } else {
        first.clone()
    };
    let layout = Layout::new(path, &header, columns)?;
    let mut x = Vec::new();
    let mut ids = Vec::new();
    let mut row_of = |record: &[String], row: usize| -> Result<(), DataError> {
        if record.len() != header.len() {
            return Err(DataError::Ragged {
                path: path.into(),
                row,
                expected: header.len(),
                got: record.len(),
            });
        }
        for &j in &layout.features {
            let cell = &record[j];
            x.push(finite(cell).ok_or_else(|| DataError::NotNumeric {
                path: path.into(),
                row,
                column: header[j].clone(),
                value: cell.clone(),
            })?);
        }
        if let Some(j) = layout.id {
            ids.push(record[j].clone());
        }
        Ok(())
    };
    let mut row = 0;
    if headerless {
        row += 1;
        row_of(&first, row)?;
    }
    for record in records {
        let record: Vec<String> = record
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(str::to_string)
            .collect();
        row += 1;
        row_of(&record, row)?;
    }
    let n = row;
    if n == 0 {
        return Err(DataError::Empty(path.display().to_string()));
    }
    let data = Data::new(x, vec![layout.features.len()], Targets::Unlabelled { n })?;
    Ok(Inputs {
        data,
        ids: layout.id.map(|j| IdColumn {
            name: header[j].clone(),
            values: ids,
        }),
        headerless,
    })
}

/// Which of a file's columns are the features (in the model's order) and which is the id.
struct Layout {
    features: Vec<usize>,
    id: Option<usize>,
}

impl Layout {
    fn new(path: &Path, header: &[String], columns: InputColumns<'_>) -> Result<Self, DataError> {
        let wrong = |reason: String| DataError::WrongColumns {
            path: path.into(),
            reason,
        };
        let id = header
            .iter()
            .position(|h| is_id(h) && !columns.features.is_some_and(|f| f.contains(h)));
        let Some(names) = columns.features else {
            let features = (0..header.len())
                .filter(|&j| Some(j) != id && !columns.targets.contains(&header[j]))
                .collect();
            return Ok(Self { features, id });
        };
        let reads = names.join(", ");
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !header.contains(n))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(wrong(format!(
                "no column{} {}; the model reads {reads}",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            )));
        }
        let unknown: Vec<&str> = header
            .iter()
            .enumerate()
            .filter(|&(j, h)| Some(j) != id && !names.contains(h) && !columns.targets.contains(h))
            .map(|(_, h)| h.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(wrong(format!(
                "column{} {} {} not one the model was trained on (it reads {reads}); drop {}",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join(", "),
                if unknown.len() == 1 { "is" } else { "are" },
                if unknown.len() == 1 { "it" } else { "them" },
            )));
        }
        let features = names
            .iter()
            .map(|n| header.iter().position(|h| h == n).expect("checked above"))
            .collect();
        Ok(Self { features, id })
    }
}

/// The id column of a CSV with a header row (texts to predict on), if it has one.
pub fn read_id_column(path: &Path) -> Result<Option<IdColumn>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let header = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let Some(at) = header.iter().position(is_id) else {
        return Ok(None);
    };
    let mut values = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        values.push(record.get(at).unwrap_or_default().to_string());
    }
    Ok(Some(IdColumn {
        name: header[at].to_string(),
        values,
    }))
}

/// A predictions file's text: a header row, then one row per sample (quoted as CSV needs).
pub fn predictions_csv(header: &[String], rows: &[Vec<String>]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for record in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        writer.write_record(record).expect("writing to memory");
    }
    String::from_utf8(writer.into_inner().expect("writing to memory")).expect("UTF-8 cells")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("kiln-inputs-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_are_taken_by_name_the_target_skipped_and_the_id_kept() {
        let features = names(&["area", "rooms"]);
        let targets = names(&["price"]);
        let columns = InputColumns {
            features: Some(&features),
            targets: &targets,
        };
        let path = write(
            "named.csv",
            "HouseId,rooms,price,area\nA7,3,100,50.5\nB2,4,200,80\n",
        );
        let inputs = load_inputs_csv(&path, columns).unwrap();
        assert_eq!(inputs.data.x, vec![50.5, 3., 80., 4.]);
        let ids = inputs.ids.unwrap();
        assert_eq!(
            (ids.name.as_str(), ids.values),
            ("HouseId", names(&["A7", "B2"]))
        );
        assert!(!inputs.headerless);

        // No header: both rows are data, in the model's column order.
        let path = write("bare.csv", "50.5,3\n80,4\n");
        let inputs = load_inputs_csv(&path, columns).unwrap();
        assert_eq!((inputs.data.len(), inputs.headerless), (2, true));
        assert_eq!(inputs.data.x, vec![50.5, 3., 80., 4.]);

        let err = |text: &str| {
            load_inputs_csv(&write("bad.csv", text), columns)
                .unwrap_err()
                .to_string()
        };
        let e = err("area,size\n1,2\n");
        assert!(
            e.contains("no column rooms; the model reads area, rooms"),
            "{e}"
        );
        let e = err("area,rooms,colour\n1,2,3\n");
        assert!(
            e.contains("column colour is not one the model was trained on"),
            "{e}"
        );
        let e = err("1,2,3\n");
        assert!(
            e.contains("no header row, and 3 columns where the model reads 2 (area, rooms)"),
            "{e}"
        );
        let e = err("area,rooms\n1,nan\n");
        assert!(
            e.contains("row 1, column `rooms`: `nan` is not a finite number"),
            "{e}"
        );
        let e = err("area,rooms\n1,2\n3\n");
        assert!(e.contains("row 2 has 1 fields, expected 2"), "{e}");
        let missing = load_inputs_csv(Path::new("/no/such/rows.csv"), columns).unwrap_err();
        assert!(
            missing.to_string().contains("rows to predict on"),
            "{missing}"
        );
    }

    #[test]
    fn without_names_every_column_but_the_id_is_a_feature() {
        let columns = InputColumns {
            features: None,
            targets: &[],
        };
        let inputs = load_inputs_csv(&write("any.csv", "id,a,b\n9,1,2\n"), columns).unwrap();
        assert_eq!(inputs.data.x, vec![1., 2.]);
        assert_eq!(inputs.ids.unwrap().values, names(&["9"]));
        let bare = load_inputs_csv(&write("any-bare.csv", "1,2\n3,4\n"), columns).unwrap();
        assert_eq!(bare.data.len(), 2, "the first row is data");
        assert!(is_id("PassengerId") && is_id("row_id") && is_id("ID") && !is_id("paid"));
    }

    #[test]
    fn predictions_are_quoted_as_csv_needs() {
        let text = predictions_csv(&names(&["id", "class"]), &[names(&["1", "a, b"])]);
        assert_eq!(text, "id,class\n1,\"a, b\"\n");
    }
}
