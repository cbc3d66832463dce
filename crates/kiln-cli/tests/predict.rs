//! Regression targets scaled and mapped back, and `kiln predict` writing what the task is:
//! an id column and the predicted value, or the class and its probability.

mod common;

use std::path::Path;

use common::{kiln, kiln_raw, metrics, scratch};

/// Integer prices near 100,000 from two features, nearly linear (noise of about 1,700).
fn prices(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from("size,rooms,price\n");
    for i in 0..400u32 {
        let size = 40 + (i * 37) % 120;
        let rooms = 1 + i % 5;
        let noise = ((i * 7919) % 6001) as i64 - 3000;
        let price = 60_000 + 350 * i64::from(size) + 4_000 * i64::from(rooms) + noise;
        text.push_str(&format!("{size},{rooms},{price}\n"));
    }
    let path = dir.join("prices.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn prices_near_100000_train_with_the_defaults_and_predict_in_their_units() {
    let dir = scratch("prices");
    let csv = prices(&dir);
    let run = dir.join("run");
    let dataset = format!("csv:{}", csv.display());
    let (run_s, dataset_s) = (run.to_str().unwrap(), dataset.as_str());
    kiln(&[
        "train",
        "--quiet",
        "--dataset",
        dataset_s,
        "--target",
        "price",
        "--out",
        run_s,
    ]);
    let m = metrics(&run);
    // Unscaled, these defaults gave R² of -61 (the network's outputs start near 0).
    let r2 = m["test_r2"].as_f64().unwrap();
    assert!(r2 > 0.9, "{m}");
    // MAE in the prices' units: the noise is uniform in ±3,000, so about 1,500.
    let mae = m["test_mae"].as_f64().unwrap();
    assert!((1_000.0..4_000.0).contains(&mae), "{m}");
    let scaler: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("target_scaler.json")).unwrap())
            .unwrap();
    let mean = scaler["mean"][0].as_f64().unwrap();
    assert!((90_000.0..120_000.0).contains(&mean), "{scaler}");

    // eval maps back the same way.
    let o = kiln(&["eval", "--run", run_s]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("test_r2: {r2:.4}")));

    // predict: columns by name in any order, the target column skipped, the id kept, values in
    // the prices' units.
    let input = dir.join("new.csv");
    std::fs::write(&input, "HouseId,rooms,price,size\nh1,3,0,100\nh2,1,0,50\n").unwrap();
    let output = dir.join("predictions.csv");
    let (input_s, output_s) = (input.to_str().unwrap(), output.to_str().unwrap());
    kiln(&[
        "predict", "--run", run_s, "--input", input_s, "--output", output_s,
    ]);
    let text = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "HouseId,price", "{text}");
    let value = |line: &str| -> f64 { line.split(',').nth(1).unwrap().parse().unwrap() };
    // 60,000 + 350 size + 4,000 rooms: 107,000 and 81,500.
    assert_eq!((&lines[1][..3], &lines[2][..3]), ("h1,", "h2,"));
    assert!((value(lines[1]) - 107_000.0).abs() < 5_000.0, "{text}");
    assert!((value(lines[2]) - 81_500.0).abs() < 5_000.0, "{text}");

    // No header: both rows are data (the first used to be taken as a header and lost).
    std::fs::write(&input, "100,3\n50,1\n").unwrap();
    let o = kiln(&[
        "predict", "--run", run_s, "--input", input_s, "--output", output_s,
    ]);
    assert!(stderr(&o).contains("no header row"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "row,price");
    assert!((value(lines[1]) - 107_000.0).abs() < 5_000.0, "{text}");

    // A missing column is named, with the ones the model reads; the old predictions stay.
    std::fs::write(&input, "size,bedrooms\n100,3\n").unwrap();
    let o = kiln_raw(&[
        "predict", "--run", run_s, "--input", input_s, "--output", output_s,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no column rooms; the model reads size, rooms"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap(), text);
    // A missing input file says so, without Kaggle's hint.
    let o = kiln_raw(&["predict", "--run", run_s, "--input", "/no/such.csv"]);
    assert!(
        stderr(&o).contains("/no/such.csv: file not found"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("kaggle"), "{}", stderr(&o));
}

#[test]
fn a_classifier_writes_the_class_name_and_its_probability() {
    let dir = scratch("iris-predict");
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    kiln(&[
        "train",
        "--quiet",
        "--dataset",
        "iris",
        "--epochs",
        "40",
        "--out",
        run_s,
    ]);
    let input = dir.join("flowers.csv");
    std::fs::write(
        &input,
        "id,sepal_length,sepal_width,petal_length,petal_width\n\
         17,5.1,3.5,1.4,0.2\n18,6.7,3.0,5.2,2.3\n",
    )
    .unwrap();
    let output = dir.join("species.csv");
    kiln(&[
        "predict",
        "--run",
        run_s,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&output).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["id", "species", "probability"], "{text}");
    assert_eq!(rows[1][..2], ["17", "setosa"], "{text}");
    assert_eq!(rows[2][..2], ["18", "virginica"], "{text}");
    for row in &rows[1..] {
        let p: f64 = row[2].parse().unwrap();
        assert!((0.5..=1.0).contains(&p), "{text}");
    }
}
