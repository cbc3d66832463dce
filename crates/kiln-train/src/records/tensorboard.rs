//! TensorBoard event files: every epoch's scalars (losses, accuracies, the learning rate,
//! users' metrics, per-layer gradient norms) and histograms (each parameter tensor's weights
//! and gradients), so that `tensorboard --logdir runs/` shows every run side by side.
//!
//! A file is a sequence of records, each `length (u64 LE)`, `masked CRC-32C of the length`,
//! `data` (a protobuf `Event`), `masked CRC-32C of the data`, as TensorFlow's `RecordWriter`
//! writes them. The messages are TensorFlow's `Event`, `Summary` and `HistogramProto`, encoded
//! with prost. An epoch's records are written with one call and flushed to disk, so that a run
//! killed mid-epoch leaves a file that ends at a record boundary.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::{EpochGradients, EpochRecord, Histogram, ParamHistograms, TrainError};

/// TensorFlow's `Event` (`tensorflow/core/util/event.proto`), the fields kiln writes.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// TensorFlow's `Summary`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// TensorFlow's `Summary.Value`: a scalar or a histogram under a tag.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "5")]
    pub histo: Option<HistogramProto>,
}

/// TensorFlow's `HistogramProto`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct HistogramProto {
    #[prost(double, tag = "1")]
    pub min: f64,
    #[prost(double, tag = "2")]
    pub max: f64,
    #[prost(double, tag = "3")]
    pub num: f64,
    #[prost(double, tag = "4")]
    pub sum: f64,
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

impl From<&Histogram> for HistogramProto {
    fn from(h: &Histogram) -> Self {
        Self {
            min: h.min,
            max: h.max,
            num: h.num,
            sum: h.sum,
            sum_squares: h.sum_squares,
            bucket_limit: h.bucket_limit.clone(),
            bucket: h.bucket.clone(),
        }
    }
}

/// TensorFlow's masked CRC-32C: the checksum rotated right by 15 bits plus a constant, so
/// that a CRC of data holding CRCs stays well distributed.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One record: length, its masked CRC, the data, its masked CRC.
fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Reads back the records of an event file, checking both CRCs of each: the events' bytes, or
/// an error naming the record (TensorBoard's own reader stops silently at a bad one).
pub fn read_records(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = records.len() + 1;
        let header = bytes
            .get(at..at + 12)
            .ok_or(format!("record {n}: truncated header"))?;
        let length: [u8; 8] = header[..8].try_into().expect("8 bytes");
        let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if crc != masked_crc32c(&length) {
            return Err(format!("record {n}: the length's CRC does not match"));
        }
        let length = usize::try_from(u64::from_le_bytes(length))
            .map_err(|_| format!("record {n}: length too large"))?;
        let end = at
            .checked_add(12 + length + 4)
            .filter(|&e| e <= bytes.len())
            .ok_or(format!("record {n}: truncated data"))?;
        let data = &bytes[at + 12..at + 12 + length];
        let crc = u32::from_le_bytes(bytes[end - 4..end].try_into().expect("4 bytes"));
        if crc != masked_crc32c(data) {
            return Err(format!("record {n}: the data's CRC does not match"));
        }
        records.push(data.to_vec());
        at = end;
    }
    Ok(records)
}

/// An event file being written (`events.out.tfevents.<seconds>.kiln` in its directory).
pub struct TensorBoardWriter {
    path: PathBuf,
    file: File,
}

impl TensorBoardWriter {
    /// Starts a new event file in `dir` (created if needed): a resumed run adds a file, and
    /// TensorBoard reads them all.
    pub fn create(dir: &Path) -> Result<Self, TrainError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut path = dir.join(format!("events.out.tfevents.{}.kiln", now.as_secs()));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = dir.join(format!("events.out.tfevents.{}.kiln.{n}", now.as_secs()));
        }
        let file = File::create(&path).map_err(io(&path))?;
        let mut writer = Self { path, file };
        let version = Event {
            wall_time: now.as_secs_f64(),
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        };
        writer.write(&[version])?;
        Ok(writer)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one epoch: its scalars, and the gradient norms and histograms when measured.
    pub fn write_epoch(
        &mut self,
        record: &EpochRecord,
        gradients: Option<&EpochGradients>,
        histograms: &[ParamHistograms],
    ) -> Result<(), TrainError> {
        let mut values = Vec::new();
        let mut scalar = |tag: String, value: f64| {
            if value.is_finite() {
                values.push(SummaryValue {
                    tag,
                    simple_value: Some(value as f32),
                    histo: None,
                });
            }
        };
        scalar("loss/train".into(), record.train_loss);
        scalar("loss/validation".into(), record.val_loss);
        if let Some(a) = record.train_accuracy {
            scalar("accuracy/train".into(), a);
        }
        if let Some(a) = record.val_accuracy {
            scalar("accuracy/validation".into(), a);
        }
        scalar("learning_rate".into(), record.lr);
        for (name, value) in &record.metrics {
            scalar(format!("metrics/{name}"), *value);
        }
        for p in gradients.map(|g| g.params.as_slice()).unwrap_or_default() {
            scalar(format!("gradient_norm/{}", p.name), p.grad_norm);
            if let Some(r) = p.update_ratio {
                scalar(format!("update_ratio/{}", p.name), r);
            }
        }
        for h in histograms {
            values.push(SummaryValue {
                tag: format!("weights/{}", h.name),
                simple_value: None,
                histo: Some((&h.weights).into()),
            });
            if let Some(g) = &h.gradients {
                values.push(SummaryValue {
                    tag: format!("gradients/{}", h.name),
                    simple_value: None,
                    histo: Some(g.into()),
                });
            }
        }
        let event = Event {
            wall_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            step: record.epoch as i64,
            file_version: None,
            summary: Some(Summary { value: values }),
        };
        self.write(&[event])
    }

    fn write(&mut self, events: &[Event]) -> Result<(), TrainError> {
        let bytes: Vec<u8> = events
            .iter()
            .flat_map(|e| record(&e.encode_to_vec()))
            .collect();
        let path = self.path.clone();
        let io = move |source| TrainError::Io { path, source };
        self.file.write_all(&bytes).map_err(io.clone())?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TensorFlow's `MaskedCrc` of known inputs (crc32c of "123456789" is 0xe3069283,
    /// the CRC-32C check value).
    #[test]
    fn masked_crcs_follow_tensorflow() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // Rotated right by 15 bits (0x2507c60d), plus 0xa282ead8: worked by hand.
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn records_read_back_and_a_flipped_bit_is_named() {
        let event = Event {
            wall_time: 1.5,
            step: 3,
            file_version: None,
            summary: Some(Summary {
                value: vec![SummaryValue {
                    tag: "loss/train".into(),
                    simple_value: Some(0.25),
                    histo: None,
                }],
            }),
        };
        let mut bytes = record(&event.encode_to_vec());
        bytes.extend(record(b"second"));
        let records = read_records(&bytes).unwrap();
        assert_eq!(Event::decode(&records[0][..]).unwrap(), event);
        assert_eq!(records[1], b"second");
        let mut bad = bytes.clone();
        let last = bad.len() - 6;
        bad[last] ^= 1;
        assert_eq!(
            read_records(&bad).unwrap_err(),
            "record 2: the data's CRC does not match"
        );
        assert!(
            read_records(&bytes[..bytes.len() - 3])
                .unwrap_err()
                .contains("truncated")
        );
    }
}
