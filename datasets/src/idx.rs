use std::io::Read;
use std::path::Path;

use crate::DataError;

/// An array read from an IDX file (the format of MNIST and Fashion-MNIST): unsigned bytes and
/// their dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Size of each dimension.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (type code 0x08), plain or gzip-compressed (`.gz`).
///
/// The header is checked (magic number, type, dimensions) and so is the length of the data, so
/// a corrupt or truncated file is an error that says which, not a panic.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray, DataError> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::io(path, e))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes, path)
}

pub(crate) fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    let bad = |reason: String| DataError::BadIdxHeader {
        path: path.into(),
        reason,
    };
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes is too short for a header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "magic number starts {:#04x} {:#04x}, expected 0x00 0x00",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "element type {:#04x}, only unsigned bytes (0x08) are supported",
            bytes[2]
        )));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 || ndims > 4 {
        return Err(bad(format!("{ndims} dimensions, expected 1 to 4")));
    }
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(bad(format!(
            "header needs {header_len} bytes, file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected: usize = dims.iter().product();
    let got = bytes.len() - header_len;
    if got < expected {
        return Err(DataError::Truncated {
            path: path.into(),
            expected,
            got,
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..header_len + expected].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        dims.iter()
            .for_each(|d| b.extend_from_slice(&d.to_be_bytes()));
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_dims_and_data() {
        let a = parse_idx(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6]), Path::new("x")).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn truncated_data_is_reported_with_sizes() {
        let e = parse_idx(&idx(&[2, 3], &[1, 2, 3]), Path::new("x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x: truncated: expected 6 bytes of data, found 3"
        );
    }

    #[test]
    fn corrupt_headers_are_errors() {
        assert!(parse_idx(&[1, 0, 8, 1], Path::new("x")).is_err());
        assert!(parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0], Path::new("x")).is_err());
        assert!(parse_idx(&[0, 0, 8, 2, 0, 0], Path::new("x")).is_err());
        assert!(parse_idx(&[0, 0], Path::new("x")).is_err());
    }

    #[test]
    fn gzip_files_are_read_transparently() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("kiln-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&idx(&[2], &[7, 9])).unwrap();
        std::fs::write(&path, enc.finish().unwrap()).unwrap();
        assert_eq!(read_idx(&path).unwrap().data, vec![7, 9]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
