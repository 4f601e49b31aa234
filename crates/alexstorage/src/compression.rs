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
//! zstd keeps its (de)compression contexts in thread-locals, made once per thread and
//! reused for every value.

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
/// Flag: the value is stored as a zstd frame compressed with the dictionary of its
/// segment (compacted segments only: the segment's first record holds it).
pub const ZSTD_DICTIONARY: u8 = 3;

/// Largest dictionary compaction trains (zstd's own default size); never more than a
/// sixteenth of a segment.
pub const DICTIONARY_SIZE: usize = 110 << 10;
/// Smallest dictionary worth training.
pub const MIN_DICTIONARY_SIZE: usize = 1 << 10;
/// Largest dictionary a store accepts when reading one: a larger record is damage.
pub const MAX_DICTIONARY_LEN: usize = 1 << 20;
/// Fewest sample values a dictionary is trained on.
pub const MIN_DICTIONARY_SAMPLES: usize = 64;

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
    match compression {
        Compression::None => RAW,
        Compression::Lz4 => framed(value, out, lz4_flex::block::get_maximum_output_size(value.len()), LZ4, |room| {
            lz4_flex::block::compress_into(value, room).ok()
        }),
        Compression::Zstd(level) => framed(value, out, zstd::zstd_safe::compress_bound(value.len()), ZSTD, |room| {
            ZSTD_COMPRESSOR.with(|cell| {
                let mut cell = cell.try_borrow_mut().ok()?;
                if cell.as_ref().is_none_or(|(at, _)| *at != level) {
                    *cell = Some((level, zstd::bulk::Compressor::new(level).ok()?));
                }
                let (_, compressor) = cell.as_mut()?;
                compressor.compress_to_buffer(value, room).ok()
            })
        }),
    }
}

/// Stores `value` into `out` (cleared first) as its length prefix and what `codec`
/// writes into the `bound` bytes of room after it (returning how many it wrote), and
/// returns `flag`; or returns [`RAW`] (leaving `out` unspecified) for a value to store
/// as given: too short, too long, not shrunk by an eighth, or a codec error.
fn framed(
    value: &[u8],
    out: &mut Vec<u8>,
    bound: usize,
    flag: u8,
    codec: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> u8 {
    if value.len() < MIN_COMPRESSED_LEN || value.len() as u64 > MAX_VALUE_LEN {
        return RAW;
    }
    out.clear();
    push_varint(out, value.len() as u64);
    let prefix = out.len();
    out.resize(prefix + bound, 0);
    let Some(written) = out.get_mut(prefix..).and_then(codec) else { return RAW };
    out.truncate(prefix + written);
    if out.len() > value.len() - value.len() / 8 {
        return RAW;
    }
    flag
}

/// A zstd dictionary, ready to decompress with: what the values of a compacted
/// segment with flag [`ZSTD_DICTIONARY`] were compressed with.
pub struct Dictionary {
    id: u32,
    bytes: Box<[u8]>,
    decoder: zstd::zstd_safe::DDict<'static>,
}

impl Dictionary {
    /// The dictionary in `bytes` (a trained zstd dictionary: magic number and id, at
    /// most [`MAX_DICTIONARY_LEN`] bytes).
    pub fn new(bytes: &[u8]) -> Result<Dictionary, String> {
        if bytes.len() > MAX_DICTIONARY_LEN {
            return Err(format!("a dictionary of {} bytes", bytes.len()));
        }
        let id = zstd::zstd_safe::get_dict_id_from_dict(bytes).ok_or("not a zstd dictionary (no dictionary id)")?;
        let decoder = zstd::zstd_safe::DDict::try_create(bytes).ok_or("zstd refused the dictionary")?;
        Ok(Dictionary { id: id.get(), bytes: bytes.into(), decoder })
    }

    /// The dictionary's id (zstd frames compressed with it carry it).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The dictionary's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Dictionary").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Compresses values with one dictionary, on one thread (a compaction's).
pub struct DictionaryCompressor {
    encoder: zstd::zstd_safe::CDict<'static>,
    context: zstd::zstd_safe::CCtx<'static>,
}

impl DictionaryCompressor {
    /// A compressor at zstd `level` with the dictionary in `bytes`.
    pub fn new(bytes: &[u8], level: i32) -> Option<DictionaryCompressor> {
        zstd::zstd_safe::get_dict_id_from_dict(bytes)?;
        let encoder = zstd::zstd_safe::CDict::try_create(bytes, level)?;
        let context = zstd::zstd_safe::CCtx::try_create()?;
        Some(DictionaryCompressor { encoder, context })
    }

    /// As [`compress`], with the dictionary: returns [`ZSTD_DICTIONARY`], or [`RAW`]
    /// for a value to store as given.
    pub fn compress(&mut self, value: &[u8], out: &mut Vec<u8>) -> u8 {
        let (context, encoder) = (&mut self.context, &self.encoder);
        framed(value, out, zstd::zstd_safe::compress_bound(value.len()), ZSTD_DICTIONARY, |room| {
            context.compress_using_cdict(room, value, encoder).ok()
        })
    }
}

/// A dictionary of at most `size` bytes trained on half of `samples`
/// (values), if zstd at `level` with it stores the other half in at most nine tenths
/// of what it takes without one; `None` otherwise (too few samples, values that share
/// nothing).
pub fn train(samples: &[&[u8]], size: usize, level: i32) -> Option<Vec<u8>> {
    if samples.len() < MIN_DICTIONARY_SAMPLES || size < MIN_DICTIONARY_SIZE {
        return None;
    }
    // Trained on the even samples, judged on (up to 2,000 of) the odd ones: a
    // dictionary holds pieces of what it was trained on, so judging it on those would
    // flatter it (random values would seem to compress).
    let training: Vec<&[u8]> = samples.iter().step_by(2).copied().collect();
    let dictionary = zstd::dict::from_samples(&training, size.min(DICTIONARY_SIZE)).ok()?;
    let mut with = DictionaryCompressor::new(&dictionary, level)?;
    let mut out = Vec::new();
    let (mut plain, mut trained) = (0u64, 0u64);
    let judged = samples.len() / 2;
    for sample in samples.iter().skip(1).step_by(2).step_by((judged / 2000).max(1)) {
        let stored = |flag: u8, out: &[u8]| (if flag == RAW { sample.len() } else { out.len() }) as u64;
        let flag = compress(Compression::Zstd(level), sample, &mut out);
        plain += stored(flag, &out);
        let flag = with.compress(sample, &mut out);
        trained += stored(flag, &out);
    }
    (trained.saturating_mul(10) <= plain.saturating_mul(9)).then_some(dictionary)
}

/// The length of the original of the compressed value `stored` (what its prefix
/// claims), if the prefix reads.
pub fn original_len(stored: &[u8]) -> Option<u64> {
    read_varint(stored).map(|(len, _)| len)
}

/// The value stored as `stored` with compression flag `flag` (not [`RAW`]),
/// decompressed into bytes of its own (with `dictionary`, its segment's, for
/// [`ZSTD_DICTIONARY`]); the error says what is wrong with it.
pub fn decompress(flag: u8, stored: &[u8], dictionary: Option<&Dictionary>) -> Result<Arc<[u8]>, String> {
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
    if flag == ZSTD_DICTIONARY {
        let wanted = dictionary.ok_or("a value compressed with a dictionary in a segment without one")?.id();
        let used = zstd::zstd_safe::get_dict_id_from_frame(payload).map_or(0, |id| id.get());
        if used != wanted {
            return Err(format!("zstd frame names dictionary {used}, its segment holds {wanted}"));
        }
    }
    if flag == ZSTD || flag == ZSTD_DICTIONARY {
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
        ZSTD_DICTIONARY => ZSTD_DICTIONARY_CONTEXT.with(|cell| {
            let dictionary = dictionary.ok_or("no dictionary")?;
            let mut cell = cell.try_borrow_mut().map_err(|_| "zstd decompressor in use".to_owned())?;
            if cell.is_none() {
                *cell = Some(zstd::zstd_safe::DCtx::try_create().ok_or("zstd: no decompression context")?);
            }
            let context = cell.as_mut().ok_or("zstd decompressor missing")?;
            context
                .decompress_using_ddict(out, payload, &dictionary.decoder)
                .map_err(|code| format!("zstd value is damaged: {}", zstd::zstd_safe::get_error_name(code)))
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
    /// This thread's zstd context for values compressed with a dictionary (kept apart
    /// from the one above, so that no dictionary stays attached to plain frames).
    static ZSTD_DICTIONARY_CONTEXT: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
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
                assert_eq!(&*decompress(flag, &out, None).unwrap(), &value[..]);
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
                if let Ok(bytes) = decompress(flag, &good[..cut], None) {
                    assert_eq!(&*bytes, &value[..]);
                }
            }
            for at in 0..good.len() {
                let mut bad = good.clone();
                bad[at] ^= 0x5a;
                let _ = decompress(flag, &bad, None);
            }
            // A length claim past what the payload can hold.
            let mut huge = Vec::new();
            push_varint(&mut huge, MAX_VALUE_LEN);
            huge.extend_from_slice(&good[2..]);
            assert!(decompress(flag, &huge, None).is_err());
            let mut beyond = Vec::new();
            push_varint(&mut beyond, MAX_VALUE_LEN + 1);
            assert!(decompress(flag, &beyond, None).is_err());
        }
        assert!(decompress(4, &[0], None).is_err());
        assert!(decompress(ZSTD_DICTIONARY, &[0], None).is_err());
        assert!(decompress(LZ4, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], None).is_err());
    }

    /// Small documents that share their structure and vocabulary, not their values.
    fn record(index: u64) -> Vec<u8> {
        let pick = |salt: u64, of: u64| {
            ((index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 40) % of
        };
        let cities = ["Lisbon", "Berlin", "Osaka", "Denver", "Nairobi"];
        format!(
            "{{\"id\":{index},\"city\":\"{}\",\"plan\":\"{}\",\"verified\":{},\"logins\":{},\"theme\":\"{}\"}}",
            cities[(pick(1, 5) % 5) as usize],
            ["free", "pro", "team"][(pick(2, 3) % 3) as usize],
            pick(3, 2) % 2 == 0,
            pick(4, 9999) % 9999,
            ["dark", "light"][(pick(5, 2) % 2) as usize],
        )
        .into_bytes()
    }

    #[test]
    fn a_trained_dictionary_shrinks_similar_values_and_is_checked_on_reads() {
        let values: Vec<Vec<u8>> = (0..5000).map(record).collect();
        let samples: Vec<&[u8]> = values.iter().map(|value| &value[..]).collect();
        let bytes = train(&samples, DICTIONARY_SIZE, 3).expect("similar documents train a dictionary");
        let dictionary = Dictionary::new(&bytes).unwrap();
        let mut compressor = DictionaryCompressor::new(&bytes, 3).unwrap();
        let (mut plain, mut trained, mut out) = (0, 0, Vec::new());
        for value in &values {
            let flag = compress(Compression::Zstd(3), value, &mut out);
            plain += if flag == RAW { value.len() } else { out.len() };
            assert_eq!(compressor.compress(value, &mut out), ZSTD_DICTIONARY);
            trained += out.len();
            assert_eq!(&*decompress(ZSTD_DICTIONARY, &out, Some(&dictionary)).unwrap(), &value[..]);
        }
        assert!(trained * 2 < plain, "with the dictionary {trained} bytes, without {plain}");
        // Without it, or with another dictionary: an error, not wrong bytes.
        assert!(decompress(ZSTD_DICTIONARY, &out, None).is_err());
        let other: Vec<Vec<u8>> = (10_000..15_000).map(record).collect();
        let other: Vec<&[u8]> = other.iter().map(|value| &value[..]).collect();
        let other = Dictionary::new(&train(&other, DICTIONARY_SIZE, 3).unwrap()).unwrap();
        assert_ne!(other.id(), dictionary.id());
        assert!(decompress(ZSTD_DICTIONARY, &out, Some(&other)).is_err());
        // Damage: every single-byte change fails or decodes the exact value.
        for at in 0..out.len() {
            let mut bad = out.clone();
            bad[at] ^= 0x21;
            if let Ok(bytes) = decompress(ZSTD_DICTIONARY, &bad, Some(&dictionary)) {
                assert_eq!(bytes.len(), values[4999].len());
            }
        }
        assert!(Dictionary::new(b"not a dictionary at all").is_err());
    }

    #[test]
    fn no_dictionary_for_values_that_share_nothing_or_too_few_samples() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let noise: Vec<Vec<u8>> = (0..2000)
            .map(|_| {
                (0..200)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect()
            })
            .collect();
        let samples: Vec<&[u8]> = noise.iter().map(|value| &value[..]).collect();
        assert!(train(&samples, DICTIONARY_SIZE, 3).is_none());
        let few: Vec<Vec<u8>> = (0..MIN_DICTIONARY_SAMPLES as u64 - 1).map(record).collect();
        let few: Vec<&[u8]> = few.iter().map(|value| &value[..]).collect();
        assert!(train(&few, DICTIONARY_SIZE, 3).is_none());
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
