//! The data every engine gets: keys, values that prove which key they belong to, and
//! request streams (uniform and YCSB's zipfian), all drawn from fixed seeds before any
//! timing starts.

use alexstorage_keygen::{generate, KeyPattern, SplitMix64};
use anyhow::{bail, ensure, Result};

/// The smallest value size: 8 bytes of key and 4 of generation, then at least 4 of filler.
pub const MIN_VALUE_SIZE: usize = 16;

/// Keys as other engines store them: big-endian with the sign bit flipped, so that
/// byte order equals `i64` order.
#[inline]
pub fn key_bytes(key: i64) -> [u8; 8] {
    ((key as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`key_bytes`]. Fails on a key that is not 8 bytes long.
#[inline]
pub fn key_from_bytes(bytes: &[u8]) -> Result<i64> {
    let Ok(raw) = <[u8; 8]>::try_from(bytes) else { bail!("stored key has {} bytes, expected 8", bytes.len()) };
    Ok((u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
}

/// Filler word `index` of the value of `key` at `generation`.
#[inline]
fn filler_word(key: i64, generation: u32, index: usize) -> u64 {
    let mut z = (key as u64) ^ (u64::from(generation) << 32) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes the value of `key` at `generation` into `out` (its length is the value size):
/// the key, the generation, then filler derived from both: the first half of the
/// filler pseudo-random, the second half a copy of it, so that values compress to
/// about half, like `db_bench`'s default (compression ratio 0.5).
pub fn fill_value(out: &mut [u8], key: i64, generation: u32) {
    out[..8].copy_from_slice(&key.to_le_bytes());
    out[8..12].copy_from_slice(&generation.to_le_bytes());
    let filler = &mut out[12..];
    let half = filler.len().div_ceil(2);
    let (first, second) = filler.split_at_mut(half);
    for (index, chunk) in first.chunks_mut(8).enumerate() {
        let word = filler_word(key, generation, index).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    let copied = second.len();
    second.copy_from_slice(&first[..copied]);
}

/// Checks every byte of a value read for `key`: right size, right key, and the filler of
/// the generation it carries (any generation: overwrites bump it).
#[inline]
pub fn check_value(key: i64, value: &[u8], size: usize) -> Result<()> {
    ensure!(value.len() == size, "key {key}: value has {} bytes, expected {size}", value.len());
    let stored_key = value.get(..8).and_then(|bytes| bytes.try_into().ok()).map(i64::from_le_bytes);
    ensure!(stored_key == Some(key), "key {key}: got the value of key {stored_key:?}");
    let generation = value.get(8..12).and_then(|bytes| bytes.try_into().ok()).map(u32::from_le_bytes).unwrap_or(0);
    let filler = &value[12..];
    let half = filler.len().div_ceil(2);
    // The first half word by word; the second half must repeat it.
    let (first, second) = filler.split_at(half);
    let mut ok = first.chunks(8).enumerate().all(|(index, chunk)| {
        let word = filler_word(key, generation, index).to_le_bytes();
        chunk == &word[..chunk.len()]
    });
    ok &= second == &first[..second.len()];
    ensure!(ok, "key {key}: value bytes differ from what was written (generation {generation})");
    Ok(())
}

/// Keys and request streams for one run.
pub struct DataSet {
    /// The loaded keys, in load order (random for every distribution).
    pub keys: Vec<i64>,
    /// Keys of the same distribution that are not loaded: misses, then new inserts.
    pub fresh: Vec<i64>,
    /// The loaded keys, sorted (scans check what they return against this).
    pub sorted: Vec<i64>,
    /// Value size in bytes.
    pub value_size: usize,
}

impl DataSet {
    /// Draws `count` keys to load and as many fresh ones from `pattern`.
    pub fn new(pattern: KeyPattern, count: usize, value_size: usize, seed: u64) -> Result<DataSet> {
        ensure!(value_size >= MIN_VALUE_SIZE, "--value-size must be at least {MIN_VALUE_SIZE} bytes");
        ensure!(count >= 100, "--keys must be at least 100");
        let mut all = generate(pattern, count * 2, seed);
        let fresh = all.split_off(count);
        let mut keys = all;
        SplitMix64::new(seed ^ 0x10AD).shuffle(&mut keys);
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        Ok(DataSet { keys, fresh, sorted, value_size })
    }

    /// `count` indices into `keys`, uniform with replacement.
    pub fn uniform_indices(&self, count: usize, seed: u64) -> Vec<u32> {
        let mut random = SplitMix64::new(seed);
        (0..count).map(|_| random.below(self.keys.len() as u64) as u32).collect()
    }
}

/// YCSB's zipfian generator (Gray et al., "Quickly generating billion-record synthetic
/// databases"), constant 0.99, over `0..items`; ranks are scrambled by a hash so that the
/// popular items are spread over the key space, as YCSB's `ScrambledZipfianGenerator`.
pub struct Zipfian {
    items: u64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
    half_pow_theta: f64,
}

impl Zipfian {
    /// YCSB's default constant.
    pub const THETA: f64 = 0.99;

    /// A generator over `0..items`.
    pub fn new(items: u64) -> Zipfian {
        let theta = Self::THETA;
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zeta_n = zeta(items);
        let zeta_2 = zeta(2);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Zipfian { items, alpha, zeta_n, eta, half_pow_theta: 1.0 + 0.5f64.powf(theta) }
    }

    /// The next rank: 0 is the most popular.
    pub fn next_rank(&self, random: &mut SplitMix64) -> u64 {
        let u = random.next_f64();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.half_pow_theta {
            return 1.min(self.items - 1);
        }
        let rank = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.items - 1)
    }

    /// The next item, scrambled over `0..items`.
    pub fn next_scrambled(&self, random: &mut SplitMix64) -> u64 {
        fnv64(self.next_rank(random)) % self.items
    }
}

fn fnv64(value: u64) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in value.to_le_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_preserve_order() {
        let keys = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for pair in keys.windows(2) {
            assert!(key_bytes(pair[0]) < key_bytes(pair[1]));
        }
        for key in keys {
            assert_eq!(key_from_bytes(&key_bytes(key)).ok(), Some(key));
        }
    }

    #[test]
    fn values_check_every_byte() {
        for size in [16, 17, 100, 1024] {
            let mut value = vec![0; size];
            fill_value(&mut value, -42, 3);
            assert!(check_value(-42, &value, size).is_ok());
            assert!(check_value(-41, &value, size).is_err());
            assert!(check_value(-42, &value[..size - 1], size).is_err());
            for at in 0..size {
                let mut bad = value.clone();
                bad[at] ^= 1;
                assert!(check_value(-42, &bad, size).is_err(), "size {size}: flipped byte {at} not caught");
            }
        }
    }

    #[test]
    fn zipfian_is_skewed_and_in_range() {
        let zipf = Zipfian::new(1000);
        let mut random = SplitMix64::new(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[zipf.next_rank(&mut random) as usize] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[500]);
        assert!(counts[0] > 5_000, "rank 0 drew {}", counts[0]);
        for _ in 0..10_000 {
            assert!(zipf.next_scrambled(&mut random) < 1000);
        }
    }
}
