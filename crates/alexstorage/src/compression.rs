//! Value compression, the codecs behind `Options::compression`: how a put record's
//! value is stored, told by bits 0-1 of the record's flags.
//!
//! A compressed value is stored as the length of the original value (an unsigned
//! LEB128 varint, 1 to 5 bytes) followed by the compressed bytes: an LZ4 block (flag
//! [`LZ4`]) or one zstd frame (flag [`ZSTD`]). A value is stored compressed only if
//! that saves at least an eighth of its bytes (and it is at least
//! [`MIN_COMPRESSED_LEN`] long): otherwise it is stored as given, flag [`RAW`], and
//! read with zero copies.
//!
//! zstd keeps its (de)compression contexts in thread-locals: making one costs more
//! than compressing a small value.

use std::cell::RefCell;
use std::sync::Arc;

use crate::options::{Compression, MAX_VALUE_SIZE_LIMIT};

/// Bits of a record's flags that give its value's compression.
pub const COMPRESSION_BITS: u8 = 0b11;
/// Flag: the value is stored as given.
pub const RAW: u8 = 0;
/// Flag: the value is stored as an LZ4 block.
pub const LZ4: u8 = 1;
/// Flag: the value is stored as a zstd frame.
pub const ZSTD: u8 = 2;

/// Values shorter than this are always stored as given: compressing them saves a
/// few bytes at best and costs every read a copy.
pub const MIN_COMPRESSED_LEN: usize = 32;

/// The largest value length a compressed value may claim: no store accepts a larger
/// value (`max_value_size` is at most this), so a larger claim is damage, and must not
/// make a read allocate it.
const MAX_VALUE_LEN: u64 = MAX_VALUE_SIZE_LIMIT as u64;

/// How far a zstd frame can expand: a 128 KiB block is at least a 3-byte header and
/// one byte (an RLE block), so at most 32 KiB per byte, plus one block.
fn zstd_can_hold(payload: usize) -> u64 {
    (payload as u64).saturating_mul(32 << 10).saturating_add(128 << 10)
}

/// How far an LZ4 block can expand: 255 bytes per byte of a match length, plus a
/// little.
fn lz4_can_hold(payload: usize) -> u64 {
    (payload as u64).saturating_mul(255).saturating_add(16)
}

/// The flag of the values `compression` stores compressed.
pub fn flag_of(compression: Compression) -> u8 {
    match compression {
        Compression::None => RAW,
        Compression::Lz4 => LZ4,
        Compression::Zstd(_) => ZSTD,
    }
}

/// The zstd levels the linked library accepts.
pub fn zstd_levels() -> std::ops::RangeInclusive<i32> {
    zstd::compression_level_range()
}

/// Compresses `value` as `compression` asks into `out` (cleared first) and returns
/// the record flag that says so, or returns [`RAW`] (and leaves `out` unspecified)
/// when the value is to be stored as given: compression off, a short value, one that
/// does not shrink by an eighth, or a compressor error.
pub fn compress(compression: Compression, value: &[u8], out: &mut Vec<u8>) -> u8 {
    if compression == Compression::None || value.len() < MIN_COMPRESSED_LEN || value.len() as u64 > MAX_VALUE_LEN {
        return RAW;
    }
    out.clear();
    push_varint(out, value.len() as u64);
    let prefix = out.len();
    let flag = match compression {
        Compression::None => return RAW,
        Compression::Lz4 => {
            out.resize(prefix + lz4_flex::block::get_maximum_output_size(value.len()), 0);
            match out.get_mut(prefix..).map(|room| lz4_flex::block::compress_into(value, room)) {
                Some(Ok(written)) => out.truncate(prefix + written),
                _ => return RAW,
            }
            LZ4
        }
        Compression::Zstd(level) => {
            out.resize(prefix + zstd::zstd_safe::compress_bound(value.len()), 0);
            let done = ZSTD_COMPRESSOR.with(|cell| {
                let mut cell = cell.try_borrow_mut().ok()?;
                if cell.as_ref().is_none_or(|(at, _)| *at != level) {
                    *cell = Some((level, zstd::bulk::Compressor::new(level).ok()?));
                }
                let (_, compressor) = cell.as_mut()?;
                compressor.compress_to_buffer(value, out.get_mut(prefix..)?).ok()
            });
            match done {
                Some(written) => out.truncate(prefix + written),
                None => return RAW,
            }
            ZSTD
        }
    };
    if out.len() > value.len() - value.len() / 8 {
        return RAW;
    }
    flag
}

/// The value stored as `stored` with compression flag `flag` (not [`RAW`]),
/// decompressed into bytes of its own; the error says what is wrong with it.
pub fn decompress(flag: u8, stored: &[u8]) -> Result<Arc<[u8]>, String> {
    let (len, payload) = read_varint(stored).ok_or("compressed value's length is malformed")?;
    if len > MAX_VALUE_LEN {
        return Err(format!("compressed value claims {len} bytes"));
    }
    // A claim the payload cannot hold is damage, and must not make the read allocate.
    let can_hold = if flag == LZ4 { lz4_can_hold(payload.len()) } else { zstd_can_hold(payload.len()) };
    if len > can_hold {
        return Err(format!("a compressed value of {} bytes claims {len} bytes", payload.len()));
    }
    let len = len as usize;
    if flag == ZSTD {
        match zstd::zstd_safe::get_frame_content_size(payload) {
            Ok(Some(claimed)) if claimed == len as u64 => {}
            _ => return Err(format!("zstd frame's content size does not match the value's length {len}")),
        }
        // Exactly one frame: nothing after it.
        if zstd::zstd_safe::find_frame_compressed_size(payload) != Ok(payload.len()) {
            return Err("zstd value is not exactly one frame".into());
        }
    }
    // One allocation, straight into the shared buffer the value will hold.
    let mut bytes: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
    let Some(out) = Arc::get_mut(&mut bytes) else { return Err("decompression buffer is shared".into()) };
    let written = match flag {
        LZ4 => {
            lz4_flex::block::decompress_into(payload, out).map_err(|error| format!("LZ4 value is damaged: {error}"))?
        }
        ZSTD => ZSTD_DECOMPRESSOR.with(|cell| {
            let mut cell = cell.try_borrow_mut().map_err(|_| "zstd decompressor in use".to_owned())?;
            if cell.is_none() {
                *cell = Some(zstd::bulk::Decompressor::new().map_err(|error| format!("zstd: {error}"))?);
            }
            let decompressor = cell.as_mut().ok_or("zstd decompressor missing")?;
            decompressor.decompress_to_buffer(payload, out).map_err(|error| format!("zstd value is damaged: {error}"))
        })?,
        other => return Err(format!("unknown value compression {other}")),
    };
    if written != len {
        return Err(format!("compressed value holds {written} bytes, its length says {len}"));
    }
    Ok(bytes)
}

thread_local! {
    /// This thread's zstd compressor and the level it is set to.
    static ZSTD_COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    /// This thread's zstd decompressor.
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at the start of `bytes` and the bytes after it; `None` if it is cut
/// short or longer than 5 bytes.
fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (at, &byte) in bytes.iter().enumerate().take(5) {
        value |= u64::from(byte & 0x7f) << (7 * at);
        if byte & 0x80 == 0 {
            return Some((value, bytes.get(at + 1..)?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressible(len: usize) -> Vec<u8> {
        (0..len).map(|at| b"session-token:abcdef;"[at % 21]).collect()
    }

    #[test]
    fn each_codec_round_trips_and_shrinks_repetitive_values() {
        for (compression, flag) in
            [(Compression::Lz4, LZ4), (Compression::Zstd(3), ZSTD), (Compression::Zstd(-5), ZSTD)]
        {
            for len in [128, 4096, 1 << 20] {
                let value = compressible(len);
                let mut out = Vec::new();
                assert_eq!(compress(compression, &value, &mut out), flag, "{compression:?} {len}");
                assert!(out.len() <= len - len / 8);
                assert_eq!(&*decompress(flag, &out).unwrap(), &value[..]);
            }
        }
    }

    #[test]
    fn values_that_do_not_shrink_or_are_short_stay_raw() {
        // Pseudo-random bytes: no codec shrinks them by an eighth.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut out = Vec::new();
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd(3)] {
            assert_eq!(compress(compression, &noise, &mut out), RAW);
            assert_eq!(compress(compression, &[0u8; MIN_COMPRESSED_LEN - 1], &mut out), RAW);
        }
        assert_eq!(compress(Compression::None, &[0u8; 1000], &mut out), RAW);
    }

    #[test]
    fn damaged_compressed_values_are_errors_not_panics() {
        let value = compressible(10_000);
        for (compression, flag) in [(Compression::Lz4, LZ4), (Compression::Zstd(3), ZSTD)] {
            let mut good = Vec::new();
            assert_eq!(compress(compression, &value, &mut good), flag);
            // Every truncation, and every single-byte change, either decodes to the
            // exact value or fails; none panics.
            for cut in 0..good.len() {
                if let Ok(bytes) = decompress(flag, &good[..cut]) {
                    assert_eq!(&*bytes, &value[..]);
                }
            }
            for at in 0..good.len() {
                let mut bad = good.clone();
                bad[at] ^= 0x5a;
                let _ = decompress(flag, &bad);
            }
            // A length claim past what the payload can hold.
            let mut huge = Vec::new();
            push_varint(&mut huge, MAX_VALUE_LEN);
            huge.extend_from_slice(&good[2..]);
            assert!(decompress(flag, &huge).is_err());
            let mut beyond = Vec::new();
            push_varint(&mut beyond, MAX_VALUE_LEN + 1);
            assert!(decompress(flag, &beyond).is_err());
        }
        assert!(decompress(3, &[0]).is_err());
        assert!(decompress(LZ4, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
    }

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX)] {
            let mut out = Vec::new();
            push_varint(&mut out, value);
            out.push(0xee);
            assert_eq!(read_varint(&out), Some((value, &[0xee][..])));
        }
    }
}
