//! The key space as the index sees it.
//!
//! Keys are `i64`, ordered numerically. Inside the index they are mapped to `u64` by
//! flipping the sign bit ("offset binary"), which preserves order and turns every
//! distance between two keys into an exact unsigned integer. Inner nodes route with
//! integer arithmetic on these values, so no key, `i64::MIN` and `i64::MAX`
//! included, is ever subject to floating-point rounding on the routing path.

/// Maps a key to the unsigned, order-preserving space used for routing.
#[inline]
pub(crate) fn to_unsigned(key: i64) -> u64 {
    (key as u64) ^ (1 << 63)
}

/// Inverse of [`to_unsigned`].
#[inline]
pub(crate) fn from_unsigned(value: u64) -> i64 {
    (value ^ (1 << 63)) as i64
}

/// Number of significant bits of `value` (0 for 0, 64 for values with the top bit set).
#[inline]
pub(crate) fn bit_length(value: u64) -> u32 {
    64 - value.leading_zeros()
}

/// The largest offset inside a block of `2^bits` values, saturating at `u64::MAX`.
#[inline]
pub(crate) fn max_offset_for_bits(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// The start of the aligned block of `2^bits` values that contains `value`.
#[inline]
pub(crate) fn align_down(value: u64, bits: u32) -> u64 {
    if bits >= 64 {
        0
    } else {
        value & !((1u64 << bits) - 1)
    }
}

/// Width in bits of the smallest aligned block that contains both `a` and `b`.
#[inline]
pub(crate) fn common_block_bits(a: u64, b: u64) -> u32 {
    bit_length(a ^ b)
}

/// Signed distance `value - anchor` as an `f64`, exact in sign and correctly rounded
/// for every pair of `u64`s (no wrap-around for distances of 2^63 or more).
#[inline]
pub(crate) fn signed_distance(value: u64, anchor: u64) -> f64 {
    if value >= anchor {
        (value - anchor) as f64
    } else {
        -((anchor - value) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_preserves_order_at_the_extremes() {
        let keys = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        for pair in keys.windows(2) {
            assert!(to_unsigned(pair[0]) < to_unsigned(pair[1]));
        }
        for key in keys {
            assert_eq!(from_unsigned(to_unsigned(key)), key);
        }
        assert_eq!(to_unsigned(i64::MIN), 0);
        assert_eq!(to_unsigned(i64::MAX), u64::MAX);
    }

    #[test]
    fn block_helpers() {
        assert_eq!(bit_length(0), 0);
        assert_eq!(bit_length(1), 1);
        assert_eq!(bit_length(u64::MAX), 64);
        assert_eq!(max_offset_for_bits(0), 0);
        assert_eq!(max_offset_for_bits(64), u64::MAX);
        assert_eq!(align_down(0x1234, 8), 0x1200);
        assert_eq!(align_down(u64::MAX, 64), 0);
        assert_eq!(common_block_bits(0x1200, 0x12ff), 8);
        assert_eq!(common_block_bits(0, u64::MAX), 64);
        assert_eq!(signed_distance(5, 7), -2.0);
        assert_eq!(signed_distance(u64::MAX, 0), u64::MAX as f64);
        assert_eq!(signed_distance(0, u64::MAX), -(u64::MAX as f64));
    }
}
