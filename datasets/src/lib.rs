//! Datasets for kiln: real data embedded or fetched into a local cache, loaders for your own
//! files, and seeded synthetic sets.
//!
//! Every loader returns a [`Data`]: samples as one flat `f32` buffer with the shape of one
//! sample, and their [`Targets`] (class labels or regression values).

#![warn(missing_docs)]

mod cifar;
mod csv_table;
mod data;
mod embedded;
mod error;
mod idx;
mod image_cache;
mod images;
mod inputs;
mod kaggle;
mod mnist;
mod scale;
mod series;
mod split;
mod subset;
pub mod synthetic;
mod text;

pub use cifar::{CIFAR10_CLASSES, cifar10, cifar10_hint};
pub use csv_table::{CsvOptions, csv_header, load_csv};
pub use data::{Data, Targets};
pub use embedded::{digit_images, digits, iris};
pub use error::DataError;
pub use idx::{IdxArray, read_idx};
pub use image_cache::DecodedCache;
pub use images::{
    IMAGE_EXTENSIONS, ImageFiles, ImageOptions, ImageSet, image_folder, image_inputs, image_list,
};
pub use inputs::{
    IdColumn, InputColumns, Inputs, load_inputs_csv, predictions_csv, read_id_column,
};
pub use kaggle::{
    digit_recognizer_test, digit_recognizer_train, load_features_csv, write_submission,
};
pub use mnist::{FASHION_MNIST_CLASSES, MnistSplit, data_dir, fashion_mnist, fetch_hint, mnist};
pub use scale::{ChannelNormalizer, Standardizer, TargetScaler};
pub use series::{
    ForecastError, ForecastReport, Series, SeriesScaler, WindowConfig, Windows, airline,
    detect_season, load_series_csv,
};
pub use split::{Split, split};
pub use subset::LabelSubset;
pub use text::{
    MASK_TOKEN, PAD, TextEncoder, TextSet, Tokenizer, UNK, load_text_csv, load_texts_csv, spam,
};
