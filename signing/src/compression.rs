//! zlib (RFC 1950) streams as Python's `zlib.compress`/`zlib.decompress`
//! make and read them.
//!
//! Backend: C zlib through flate2's `zlib` feature, built from the source
//! that libz-sys bundles (its `static` feature; no system package needed).
//! Django's compressed vectors (made with zlib 1.2.13) are reproduced byte
//! for byte by that bundled zlib; flate2's default miniz_oxide backend and
//! zlib-rs both emit different, equally valid streams for some of them (the
//! `unicode_nested` and `django_auth` vectors), which Django would read but
//! which would not match Django's own `session_data`.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// `zlib.compress`'s default level (`Z_DEFAULT_COMPRESSION` is level 6).
const DJANGO_LEVEL: u32 = 6;

/// Why a compressed payload could not be inflated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// zlib rejected the stream (bad header, checksum or block).
    #[error("compressed payload is not a valid zlib stream")]
    Invalid(#[source] flate2::DecompressError),
    /// The stream stops before its end marker and checksum.
    #[error("compressed payload is a truncated zlib stream")]
    Truncated,
    /// The stream inflates to more than the limit.
    #[error("compressed payload inflates to more than {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
}

/// `zlib.compress(data)`: zlib wrapper, level 6, window 15, memory level 8.
/// `None` only if zlib fails, which it does not for in-memory input; the
/// caller then stores the payload uncompressed, which Django also reads.
pub(crate) fn compress(data: &[u8]) -> Option<Vec<u8>> {
    let mut deflater = Compress::new(Compression::new(DJANGO_LEVEL), true);
    // zlib's deflateBound is about len + len/1000 + 18; growing handles the rest.
    let mut out = Vec::with_capacity(data.len() + data.len() / 512 + 64);
    loop {
        let consumed = usize::try_from(deflater.total_in()).ok()?;
        let rest = data.get(consumed..)?;
        match deflater.compress_vec(rest, &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => return Some(out),
            Ok(Status::Ok | Status::BufError) => out.reserve(out.capacity().max(64)),
            Err(_) => return None,
        }
    }
}

/// `zlib.decompress(data)`, but refusing to produce more than `limit` bytes.
/// Bytes after the end of the stream are ignored, as Python does.
pub(crate) fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut inflater = Decompress::new(true);
    // At most `limit + 1` bytes are ever allocated: one byte past the limit
    // is how an oversized stream is told apart from one that ends exactly
    // at the limit.
    let ceiling = limit.saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).max(64).min(ceiling));
    loop {
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let rest = usize::try_from(in_before)
            .ok()
            .and_then(|consumed| data.get(consumed..))
            .unwrap_or_default();
        let status = inflater
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .map_err(InflateError::Invalid)?;
        if out.len() > limit {
            return Err(InflateError::TooLarge { limit });
        }
        match status {
            Status::StreamEnd => return Ok(out),
            Status::Ok | Status::BufError if out.len() == out.capacity() => {
                let room = ceiling - out.len();
                out.reserve_exact(out.len().max(64).min(room));
            }
            Status::Ok | Status::BufError => {
                let stalled =
                    inflater.total_in() == in_before && inflater.total_out() == out_before;
                if stalled {
                    return Err(InflateError::Truncated);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let data = b"abcdefghij".repeat(1000);
        let compressed = compress(&data).unwrap();
        assert!(compressed.len() < 100);
        assert_eq!(decompress(&compressed, data.len()).unwrap(), data);
    }

    #[test]
    fn empty_input_is_a_valid_stream() {
        let compressed = compress(b"").unwrap();
        assert_eq!(compressed, [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        assert_eq!(decompress(&compressed, 0).unwrap(), b"");
    }

    #[test]
    fn output_exactly_at_the_limit_is_accepted() {
        let data = vec![b'x'; 100_000];
        let compressed = compress(&data).unwrap();
        assert_eq!(decompress(&compressed, 100_000).unwrap().len(), 100_000);
        assert!(matches!(
            decompress(&compressed, 99_999),
            Err(InflateError::TooLarge { limit: 99_999 })
        ));
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 64 MiB of zeros compress to about 64 KiB.
        let data = vec![0u8; 64 << 20];
        let compressed = compress(&data).unwrap();
        assert!(compressed.len() < 100 << 10);
        assert!(matches!(
            decompress(&compressed, 1 << 20),
            Err(InflateError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_and_corrupt_streams_are_errors() {
        let compressed = compress(&b"hello world ".repeat(50)).unwrap();
        for cut in 0..compressed.len() {
            assert!(
                decompress(&compressed[..cut], 1 << 20).is_err(),
                "cut {cut}"
            );
        }
        let mut corrupt = compressed.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1; // adler32 checksum
        assert!(matches!(
            decompress(&corrupt, 1 << 20),
            Err(InflateError::Invalid(_))
        ));
        assert!(decompress(b"not zlib", 1 << 20).is_err());
    }

    #[test]
    fn trailing_bytes_are_ignored_like_python() {
        let mut compressed = compress(b"{}").unwrap();
        compressed.extend_from_slice(b"garbage");
        assert_eq!(decompress(&compressed, 1024).unwrap(), b"{}");
    }
}
