//! Datasets for kiln: real data embedded or fetched into a local cache, loaders for your own
//! files, and seeded synthetic sets.
//!
//! Every loader returns a [`Data`]: samples as one flat `f32` buffer with the shape of one
//! sample, and their [`Targets`] (class labels or regression values).

mod csv_table;
mod data;
mod embedded;
mod error;
mod idx;
mod mnist;
mod scale;
mod split;
pub mod synthetic;

pub use csv_table::{CsvOptions, load_csv};
pub use data::{Data, Targets};
pub use embedded::{digits, iris};
pub use error::DataError;
pub use idx::{IdxArray, read_idx};
pub use mnist::{MnistSplit, data_dir, fetch_hint, mnist};
pub use scale::Standardizer;
pub use split::{Split, split};
