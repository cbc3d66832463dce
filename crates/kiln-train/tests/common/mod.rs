//! Helpers shared by kiln-train's test binaries.

use kiln_datasets::{Data, Standardizer, digits, split};

/// The embedded digits split 80/20 into train and test parts, standardised with the training
/// part's statistics.
pub fn digits_split() -> (Data, Data) {
    let parts = split(&digits(), 0.2, 0).unwrap();
    let (mut train, mut test) = (parts.first, parts.second);
    let scaler = Standardizer::fit(&train);
    scaler.transform(&mut train).unwrap();
    scaler.transform(&mut test).unwrap();
    (train, test)
}
