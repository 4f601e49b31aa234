//! Deterministic key distributions shared by AlexStorage's tests and benchmarks. A
//! workspace crate of its own, so that the store's public API does not carry them.
//!
//! Every generator is a pure function of its seed, so a failing test or a benchmark
//! row can be reproduced exactly. The random source is SplitMix64: tiny, fast, and good
//! enough for workload generation (it is not for cryptography).
//!
//! ```
//! use alexstorage_keygen::{generate, KeyPattern};
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
    /// `exp(N(0, 2))` scaled by 10^9: dense near the bottom, a long sparse tail.
    Lognormal,
    /// Dense runs of consecutive keys at random places in the `i64` range, like
    /// map-cell ids.
    Clustered,
    /// Exponentially spaced: `e^(i * g) + i` for `i < count`, with `g` such that the
    /// largest key is about 9e18; shuffled.
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
/// A drawn key that repeats an earlier one is skipped and drawn again.
pub fn generate(pattern: KeyPattern, count: usize, seed: u64) -> Vec<i64> {
    let mut random = SplitMix64::new(seed ^ 0xA1E5_7040_0000_0000);
    let mut draw = Drawer { pattern, index: 0, time: 1_767_225_600_000_000_000, run_left: 0, run_next: 0, run_step: 1 };
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut keys = Vec::with_capacity(count);
    // Bounded: past this many draws the rest come uniformly at random.
    let patient_draws = count.saturating_mul(20).saturating_add(1000);
    let mut draws = 0usize;
    while keys.len() < count {
        let key = if draws < patient_draws { draw.next(&mut random, count) } else { random.next_u64() as i64 };
        draws += 1;
        if seen.insert(key) {
            keys.push(key);
        }
    }
    if matches!(pattern, KeyPattern::Extremes | KeyPattern::Exponential) {
        random.shuffle(&mut keys);
    }
    keys
}

/// The state of one pattern's key stream.
struct Drawer {
    pattern: KeyPattern,
    index: i64,
    time: i64,
    run_left: u64,
    run_next: i64,
    run_step: i64,
}

impl Drawer {
    fn next(&mut self, random: &mut SplitMix64, count: usize) -> i64 {
        let index = self.index;
        self.index += 1;
        match self.pattern {
            KeyPattern::Sequential => index,
            KeyPattern::ReverseSequential => count as i64 - 1 - index,
            KeyPattern::Uniform => random.next_u64() as i64,
            KeyPattern::Lognormal => ((2.0 * random.next_normal()).exp() * 1e9).min(9.0e18) as i64,
            KeyPattern::Clustered => {
                if self.run_left == 0 {
                    self.run_next = random.next_u64() as i64;
                    self.run_left = 1 + random.below(2000);
                    self.run_step = 1 + random.below(3) as i64;
                }
                self.run_left -= 1;
                let key = self.run_next;
                self.run_next = self.run_next.wrapping_add(self.run_step);
                key
            }
            KeyPattern::Exponential => {
                // Gaps grow geometrically: dense at the bottom, 2^62-wide at the top.
                let growth = (9.0e18f64).ln() / count.max(1) as f64;
                ((index as f64 * growth).exp() as i64).saturating_add(index)
            }
            KeyPattern::RightEdgeAppend => {
                self.time += 1 + random.below(2_000_000) as i64;
                self.time
            }
            KeyPattern::Extremes => match index % 3 {
                0 => i64::MIN + index / 3,
                1 => i64::MAX - index / 3,
                _ => (index / 3) * if index % 2 == 0 { 1 } else { -1 },
            },
        }
    }
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
