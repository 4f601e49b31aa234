//! Deterministic key distributions shared by the tests and the benchmarks.
//!
//! Every generator is a pure function of its seed, so a failing test or a benchmark
//! row can be reproduced exactly. The random source is SplitMix64: tiny, fast, and good
//! enough for workload generation (it is not for cryptography).
//!
//! ```
//! use alexstorage::keygen::{generate, KeyPattern};
//!
//! let keys = generate(KeyPattern::Lognormal, 1000, 42);
//! assert_eq!(keys.len(), 1000);
//! assert_eq!(keys, generate(KeyPattern::Lognormal, 1000, 42));
//! ```

/// A SplitMix64 pseudo-random generator.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform value in `[0, bound)` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
        }
    }

    /// A standard normal value (Box-Muller).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            let other = self.below(index as u64 + 1) as usize;
            items.swap(index, other);
        }
    }
}

/// The key patterns the index and the engine are tested and measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPattern {
    /// `0, 1, 2, ...` in ascending order.
    Sequential,
    /// `n-1, ..., 1, 0`: descending inserts.
    ReverseSequential,
    /// Uniformly random over the whole `i64` range.
    Uniform,
    /// `exp(N(0, 2))` scaled by 10^6: dense near the bottom, a long sparse tail.
    Lognormal,
    /// Dense runs of consecutive keys at random places in the `i64` range, like
    /// map-cell ids.
    Clustered,
    /// Exponentially spaced: each key about 1.02 times the previous, with jitter.
    Exponential,
    /// Time-series appends: nanosecond timestamps from 2026 on, ascending, with jitter.
    RightEdgeAppend,
    /// Keys near `i64::MIN`, zero and `i64::MAX`, shuffled.
    Extremes,
}

impl KeyPattern {
    /// Every pattern.
    pub const ALL: [KeyPattern; 8] = [
        KeyPattern::Sequential,
        KeyPattern::ReverseSequential,
        KeyPattern::Uniform,
        KeyPattern::Lognormal,
        KeyPattern::Clustered,
        KeyPattern::Exponential,
        KeyPattern::RightEdgeAppend,
        KeyPattern::Extremes,
    ];

    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            KeyPattern::Sequential => "sequential",
            KeyPattern::ReverseSequential => "reverse",
            KeyPattern::Uniform => "uniform",
            KeyPattern::Lognormal => "lognormal",
            KeyPattern::Clustered => "clustered",
            KeyPattern::Exponential => "exponential",
            KeyPattern::RightEdgeAppend => "append",
            KeyPattern::Extremes => "extremes",
        }
    }

    /// The pattern called `name`.
    pub fn from_name(name: &str) -> Option<KeyPattern> {
        KeyPattern::ALL.into_iter().find(|pattern| pattern.name() == name)
    }
}

/// `count` distinct keys of `pattern`, in the pattern's natural insertion order
/// (ascending for sequential and appends, descending for reverse, random otherwise).
pub fn generate(pattern: KeyPattern, count: usize, seed: u64) -> Vec<i64> {
    let mut random = SplitMix64::new(seed ^ 0xA1E5_7040_0000_0000);
    let mut keys: Vec<i64> = match pattern {
        KeyPattern::Sequential => (0..count as i64).collect(),
        KeyPattern::ReverseSequential => (0..count as i64).rev().collect(),
        KeyPattern::Uniform => (0..count).map(|_| random.next_u64() as i64).collect(),
        KeyPattern::Lognormal => {
            (0..count).map(|_| ((2.0 * random.next_normal()).exp() * 1e6).min(9.0e18) as i64).collect()
        }
        KeyPattern::Clustered => {
            let mut keys = Vec::with_capacity(count);
            while keys.len() < count {
                let base = random.next_u64() as i64;
                let run = 1 + random.below(2000) as i64;
                let step = 1 + random.below(3) as i64;
                keys.extend((0..run).map(|offset| base.wrapping_add(offset * step)).take(count - keys.len()));
            }
            keys
        }
        KeyPattern::Exponential => {
            let mut value = 1.0f64;
            (0..count)
                .map(|_| {
                    value *= 1.02 + 0.01 * random.next_f64();
                    if value > 9.0e18 {
                        value = 1.0 + random.next_f64();
                    }
                    value as i64
                })
                .collect()
        }
        KeyPattern::RightEdgeAppend => {
            let mut time: i64 = 1_767_225_600_000_000_000;
            (0..count)
                .map(|_| {
                    time += 1 + random.below(2_000_000) as i64;
                    time
                })
                .collect()
        }
        KeyPattern::Extremes => {
            let mut keys: Vec<i64> = (0..count as i64)
                .map(|index| match index % 3 {
                    0 => i64::MIN + index / 3,
                    1 => i64::MAX - index / 3,
                    _ => (index / 3) * if index % 2 == 0 { 1 } else { -1 },
                })
                .collect();
            random.shuffle(&mut keys);
            keys
        }
    };
    dedup_keep_order(&mut keys);
    // Duplicates (rare, from random patterns) are replaced so the count is exact.
    while keys.len() < count {
        let extra = random.next_u64() as i64;
        keys.push(extra);
        dedup_keep_order(&mut keys);
    }
    keys
}

/// Removes repeated keys, keeping the first occurrence of each, in order.
fn dedup_keep_order(keys: &mut Vec<i64>) {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.retain(|key| seen.insert(*key));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_is_distinct_exact_and_deterministic() {
        for pattern in KeyPattern::ALL {
            let keys = generate(pattern, 5000, 7);
            assert_eq!(keys.len(), 5000, "{pattern:?}");
            let unique: std::collections::HashSet<_> = keys.iter().collect();
            assert_eq!(unique.len(), 5000, "{pattern:?}");
            assert_eq!(keys, generate(pattern, 5000, 7));
            assert_eq!(KeyPattern::from_name(pattern.name()), Some(pattern));
        }
        let appends = generate(KeyPattern::RightEdgeAppend, 100, 1);
        assert!(appends.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn random_helpers_stay_in_range() {
        let mut random = SplitMix64::new(3);
        for _ in 0..1000 {
            assert!(random.below(10) < 10);
            let value = random.next_f64();
            assert!((0.0..1.0).contains(&value));
        }
        assert_eq!(random.below(0), 0);
    }
}
