//! Folders of image files (`--dataset images:DIR`, Keras's `image_dataset_from_directory`):
//! real MNIST digits written as PNG and JPEG files, one folder per class, trained on, resumed,
//! predicted on and refused when broken. Needs `datasets/fetch.sh mnist`.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_same_run, kiln, kiln_raw, metrics, resume, scratch};
use kiln::datasets::{MnistSplit, mnist};

/// Writes the first `per_class` MNIST training images of each digit into `dir/<digit>/`: most
/// as grey PNG, every third as JPEG, every fifth as RGB PNG; and a note that is no image.
fn mnist_folder(dir: &Path, per_class: usize) -> PathBuf {
    let train = mnist(None, MnistSplit::Train).unwrap();
    let labels = train.y.labels().unwrap();
    let mut written = [0usize; 10];
    for (i, &label) in labels.iter().enumerate() {
        if written[label] == per_class {
            continue;
        }
        let n = written[label];
        written[label] += 1;
        let pixels: Vec<u8> = train
            .sample(i)
            .iter()
            .map(|&v| (v * 255.0).round() as u8)
            .collect();
        let grey = image::GrayImage::from_raw(28, 28, pixels).unwrap();
        let folder = dir.join(label.to_string());
        std::fs::create_dir_all(&folder).unwrap();
        let image = image::DynamicImage::ImageLuma8(grey);
        let (image, ext) = match n {
            n if n % 5 == 0 => (image::DynamicImage::ImageRgb8(image.to_rgb8()), "png"),
            n if n % 3 == 0 => (image, "jpg"),
            _ => (image, "png"),
        };
        image.save(folder.join(format!("{n:04}.{ext}"))).unwrap();
    }
    std::fs::write(dir.join("3").join("README.txt"), "not an image").unwrap();
    dir.to_path_buf()
}

fn train_args<'a>(data: &'a str, out: &'a Path, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--quiet",
        "--model",
        "cnn",
        "--dataset",
        data,
        "--channels",
        "1",
        "--epochs",
        epochs,
        "--patience",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]
}

#[test]
fn a_cnn_learns_a_folder_of_pngs_and_jpegs_resumes_and_predicts_a_folder() {
    let dir = scratch("image-folder");
    let folder = mnist_folder(&dir.join("digits"), 150);
    let data = format!("images:{}", folder.display());
    let run = dir.join("run");
    let o = kiln(&train_args(&data, &run, "6"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("skipped 1 file that is not an image") && stderr.contains("README.txt"),
        "{stderr}"
    );
    let m = metrics(&run);
    let accuracy = m["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.85, "1,500 digits as files, 6 epochs: {m}");
    let columns: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("columns.json")).unwrap()).unwrap();
    assert_eq!(columns["classes"][7], "7");

    // Read as the same samples each time: 3 epochs resumed to 6 end as 6 at once, also with
    // a third of the decoded images cached in memory (1 MB of the 4.7 MB; kept on resume).
    let resumed = dir.join("resumed");
    let mut cached = train_args(&data, &resumed, "3");
    cached.extend(["--image-cache", "1M"]);
    kiln(&cached);
    let config = std::fs::read_to_string(resumed.join("config.json")).unwrap();
    assert!(config.contains("\"cache\": 1048576"), "{config}");
    resume(&resumed, "6");
    assert_same_run(&resumed, &run);

    // A folder of sevens: one row per image, its path, class and probability.
    let out = dir.join("sevens.csv");
    kiln(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--input",
        folder.join("7").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("path,class,probability"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 150);
    assert!(rows[0][0].ends_with("7/0000.png"), "{:?}", rows[0]);
    let sevens = rows.iter().filter(|r| r[1] == "7").count();
    assert!(sevens > 120, "{sevens} of 150 sevens called 7");
    // One file alone.
    kiln(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--input",
        folder.join("7").join("0001.png").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);

    // The same images listed in a CSV of path,label rows.
    let mut list = String::from("path,label\n");
    for digit in 0..10 {
        for entry in std::fs::read_dir(folder.join(digit.to_string())).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.ends_with(".txt") {
                list.push_str(&format!("{digit}/{name},{digit}\n"));
            }
        }
    }
    std::fs::write(folder.join("list.csv"), list).unwrap();
    let listed = dir.join("listed");
    let csv = format!("image-csv:{}", folder.join("list.csv").display());
    kiln(&train_args(&csv, &listed, "3"));
    let tested = |m: &serde_json::Value| -> u64 {
        m["confusion_matrix"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    let listed = metrics(&listed);
    assert_eq!(
        tested(&listed),
        tested(&m),
        "the same 1,500 images, split alike"
    );
    assert!(listed["test_accuracy"].as_f64().unwrap() > 0.5, "{listed}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn images_of_another_size_and_colour_train_through_global_pooling_normalised_and_augmented() {
    let dir = scratch("image-sizes");
    let folder = mnist_folder(&dir.join("digits"), 80);
    let data = format!("images:{}", folder.display());
    let run = dir.join("run");
    kiln(&[
        "train",
        "--quiet",
        "--model",
        "cnn",
        "--dataset",
        &data,
        "--image-size",
        "20x24",
        "--epochs",
        "12",
        "--patience",
        "0",
        "--normalize",
        "--augment",
        "translate=0.1",
        "--out",
        run.to_str().unwrap(),
    ]);
    let summary = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    assert!(summary.contains("GlobalAveragePooling2D"), "{summary}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    // Some images are RGB: every image is read with 3 channels.
    assert_eq!(config["model"]["cnn"]["in_channels"], 3);
    assert_eq!(
        config["model"]["cnn"]["image_size"],
        serde_json::json!([20, 24])
    );
    let accuracy = metrics(&run)["test_accuracy"].as_f64().unwrap();
    eprintln!("800 digits resized, 12 epochs: {accuracy}");
    assert!(accuracy > 0.5, "800 digits resized, 12 epochs: {accuracy}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn broken_image_folders_are_named_before_or_while_training() {
    let dir = scratch("image-errors");
    let folder = mnist_folder(&dir.join("digits"), 20);
    let data = format!("images:{}", folder.display());
    let out = dir.join("run");
    let refused = |args: &[&str], want: &str| {
        let o = kiln_raw(args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    };

    // A file that claims to be an image and is not: named before training starts.
    let fake = folder.join("4").join("0007.png");
    std::fs::write(&fake, b"\x89PNG\r\n\x1a\n not really a PNG").unwrap();
    refused(
        &train_args(&data, &out, "1"),
        "4/0007.png: not a readable image",
    );
    assert!(!out.exists(), "no run directory is left behind");

    // A PNG whose pixels are cut short: its header reads, its pixels do not; the run stops
    // with the file named when a batch reads it.
    let good = std::fs::read(folder.join("4").join("0002.png")).unwrap();
    std::fs::write(&fake, &good[..good.len() - 30]).unwrap();
    refused(&train_args(&data, &out, "2"), "4/0007.png");
    // Whether it fell in the training, validation or test part, no run was kept.
    assert!(!out.exists(), "no run directory is left behind");

    // Another size without --image-size.
    std::fs::remove_file(&fake).unwrap();
    image::GrayImage::new(32, 30)
        .save(folder.join("4").join("big.png"))
        .unwrap();
    refused(&train_args(&data, &out, "1"), "--image-size");

    // One class only; a class without images.
    std::fs::remove_file(folder.join("4").join("big.png")).unwrap();
    for digit in 1..10 {
        std::fs::remove_dir_all(folder.join(digit.to_string())).unwrap();
    }
    refused(&train_args(&data, &out, "1"), "1 class folder found");
    std::fs::create_dir_all(folder.join("empty")).unwrap();
    refused(
        &train_args(&data, &out, "1"),
        "class `empty` has no image file",
    );
    refused(
        &["train", "--dataset", &data, "--image-size", "0x3"],
        "expected HEIGHTxWIDTH",
    );
    std::fs::remove_dir_all(dir).unwrap();
}
