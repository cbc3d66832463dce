//! Kaggle's "Digit Recognizer" format: `train.csv` (label, pixel0..pixel783), `test.csv`
//! (pixels only) and the `submission.csv` it expects back.

use std::path::Path;

use crate::csv_table::parse_csv;
use crate::{CsvOptions, Data, DataError, InputColumns, Targets, load_inputs_csv};

fn read(path: &Path) -> Result<String, DataError> {
    if !path.exists() {
        return Err(DataError::MissingFile {
            path: path.into(),
            hint: "Check the path (Kaggle's digit-recognizer files come from \
                   kaggle.com/c/digit-recognizer)."
                .into(),
        });
    }
    std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))
}

fn as_images(mut data: Data, path: &Path) -> Result<Data, DataError> {
    if data.sample_len() != 784 {
        return Err(DataError::ShapeMismatch {
            what: format!("{} pixel columns", path.display()),
            expected: "784 (pixel0..pixel783)".into(),
            got: data.sample_len().to_string(),
        });
    }
    data.x.iter_mut().for_each(|p| *p /= 255.0);
    data.sample_shape = vec![1, 28, 28];
    Ok(data)
}

/// Reads a labelled digit-recognizer `train.csv`: `[1, 28, 28]` images in `[0, 1]`, digits 0-9.
pub fn digit_recognizer_train(path: &Path) -> Result<Data, DataError> {
    let options = CsvOptions {
        target: "label".into(),
        classification: Some(true),
    };
    let data = parse_csv(&read(path)?, path, &options)?;
    let Targets::Classes { labels, names } = data.y else {
        unreachable!("parsed as classes")
    };
    // Map the label text back to the digit it names, so class i is digit i.
    let digits: Vec<usize> = names
        .iter()
        .map(|n| n.parse().unwrap_or(usize::MAX))
        .collect();
    if let Some(bad) = names.iter().zip(&digits).find(|(_, d)| **d > 9) {
        return Err(DataError::ShapeMismatch {
            what: format!("{} column `label`", path.display()),
            expected: "digits 0-9".into(),
            got: bad.0.clone(),
        });
    }
    let labels = labels.iter().map(|&l| digits[l]).collect();
    let names = (0..10).map(|d| d.to_string()).collect();
    let data = Data::new(
        data.x,
        data.sample_shape,
        Targets::Classes { labels, names },
    )?;
    as_images(data, path)
}

/// Reads an unlabelled digit-recognizer `test.csv` (pixel columns only).
pub fn digit_recognizer_test(path: &Path) -> Result<Data, DataError> {
    as_images(load_features_csv(path)?, path)
}

/// Reads a CSV of numeric feature columns with a header row and no target: inputs to predict
/// on. Errors name the row and column of a bad cell, as [`load_csv`](crate::load_csv)'s do.
pub fn load_features_csv(path: &Path) -> Result<Data, DataError> {
    let columns = InputColumns {
        features: None,
        targets: &[],
    };
    Ok(load_inputs_csv(path, columns)?.data)
}

/// Writes Kaggle's `submission.csv` (`ImageId,Label`, ImageId counted from 1), atomically.
pub fn write_submission<L: std::fmt::Display>(path: &Path, labels: &[L]) -> Result<(), DataError> {
    let mut text = String::from("ImageId,Label\n");
    for (i, label) in labels.iter().enumerate() {
        text.push_str(&format!("{},{label}\n", i + 1));
    }
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, text).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(label: bool) -> String {
        let pixels: Vec<String> = (0..784).map(|i| format!("pixel{i}")).collect();
        if label {
            format!("label,{}", pixels.join(","))
        } else {
            pixels.join(",")
        }
    }

    fn row(first: u32) -> String {
        std::iter::once(first.to_string())
            .chain((1..784).map(|_| "0".to_string()))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn train_and_test_files_become_images_and_submissions_count_from_one() {
        let dir = std::env::temp_dir().join(format!("kiln-kaggle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let train = dir.join("train.csv");
        std::fs::write(
            &train,
            format!("{}\n7,{}\n2,{}\n", header(true), row(255), row(0)),
        )
        .unwrap();
        let d = digit_recognizer_train(&train).unwrap();
        assert_eq!(d.sample_shape, vec![1, 28, 28]);
        assert_eq!(d.y.labels().unwrap(), &[7, 2]);
        assert_eq!(d.sample(0)[0], 1.0);

        let test = dir.join("test.csv");
        std::fs::write(
            &test,
            format!("{}\n{}\n{}\n{}\n", header(false), row(51), row(0), row(0)),
        )
        .unwrap();
        let t = digit_recognizer_test(&test).unwrap();
        assert_eq!((t.len(), t.sample(0)[0]), (3, 0.2));
        assert!(t.y.labels().is_none());

        let out = dir.join("submission.csv");
        write_submission(&out, &[3, 0, 9]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "ImageId,Label\n1,3\n2,0\n3,9\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
