//! Real datasets compiled into the binary, so that the default run needs no download. Their
//! provenance and licences are in `datasets/data/README.md`.

use std::io::Read;
use std::path::Path;

use crate::csv_table::parse_csv;
use crate::{CsvOptions, Data, Targets};

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");
static IRIS_CSV: &str = include_str!("../data/iris.csv");

/// The 8x8 handwritten digits (UCI optical recognition set, as shipped by scikit-learn):
/// 1,797 samples of 64 features (pixel intensities 0-16), classes 0-9.
pub fn digits() -> Data {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .expect("the embedded digits are valid gzip");
    let header: Vec<String> = (0..64)
        .map(|i| format!("pixel{i}"))
        .chain(["digit".to_string()])
        .collect();
    let text = format!("{}\n{text}", header.join(","));
    let options = CsvOptions {
        target: "digit".into(),
        classification: Some(true),
    };
    parse_csv(&text, Path::new("embedded digits.csv"), &options).expect("the embedded digits parse")
}

/// The same digits as `[1, 8, 8]` grey images with pixels in [0, 1] (intensity / 16), for
/// convolutional networks and image augmentation.
pub fn digit_images() -> Data {
    let digits = digits();
    let x = digits.x.iter().map(|v| v / 16.0).collect();
    Data::new(x, vec![1, 8, 8], digits.y).expect("64 pixels make an 8x8 image")
}

/// Fisher's iris: 150 samples of 4 measurements (cm), 3 species.
pub fn iris() -> Data {
    // scikit-learn's first line is `150,4,setosa,versicolor,virginica`; classes are 0, 1, 2.
    let mut lines = IRIS_CSV.lines();
    let names: Vec<String> = lines
        .next()
        .expect("iris header")
        .split(',')
        .skip(2)
        .map(str::to_string)
        .collect();
    let body: String = lines.map(|l| format!("{l}\n")).collect();
    let text = format!("sepal_length,sepal_width,petal_length,petal_width,species\n{body}");
    let options = CsvOptions {
        target: "species".into(),
        classification: Some(true),
    };
    let data = parse_csv(&text, Path::new("embedded iris.csv"), &options).expect("iris parses");
    match data.y {
        Targets::Classes { labels, .. } => Data::new(
            data.x,
            data.sample_shape,
            Targets::Classes { labels, names },
        )
        .expect("iris is consistent"),
        _ => unreachable!("iris targets are classes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_has_1797_samples_of_64_features_and_10_classes() {
        let d = digits();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.sample_shape, vec![64]);
        assert_eq!(d.class_counts().len(), 10);
        assert!(d.class_counts().iter().all(|&c| (174..=183).contains(&c)));
        assert!(d.x.iter().all(|&v| (0.0..=16.0).contains(&v)));
        let images = digit_images();
        assert_eq!(images.sample_shape, vec![1, 8, 8]);
        assert_eq!(images.y, d.y);
        // Row-major: pixel (row 2, column 3) of image 5 is feature 2 * 8 + 3 of sample 5.
        assert_eq!(images.sample(5)[2 * 8 + 3], d.sample(5)[19] / 16.0);
        assert!(images.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn iris_has_three_balanced_species() {
        let d = iris();
        assert_eq!(d.len(), 150);
        assert_eq!(d.class_counts(), vec![50, 50, 50]);
        assert_eq!(d.sample(0), &[5.1, 3.5, 1.4, 0.2]);
        match d.y {
            Targets::Classes { names, .. } => {
                assert_eq!(names, ["setosa", "versicolor", "virginica"])
            }
            _ => panic!("iris is classification"),
        }
    }
}
