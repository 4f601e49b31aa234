//! The linear model of a data node: predicted slot = `slope * (key - anchor) + intercept`.
//!
//! The distance to the anchor is taken in exact integer arithmetic (see
//! [`signed_distance`]) before it becomes a float, so models of nodes whose keys sit
//! near `i64::MAX` or span the whole key space stay as precise as those near zero. A
//! model only ever steers where a search starts: correctness never depends on it.

use super::key::{signed_distance, to_unsigned};

/// A linear map from a key to a fractional slot position.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct LinearModel {
    /// Slots per unit of key distance.
    pub(crate) slope: f64,
    /// Predicted slot of the anchor.
    pub(crate) intercept: f64,
    /// The key (in unsigned space) distances are measured from.
    pub(crate) anchor: u64,
}

impl LinearModel {
    /// Least-squares fit of rank against key over `keys` (ascending), scaled so that
    /// ranks `0..n` spread over `0..capacity` slots.
    ///
    /// `keys` yields the keys in order; `n` is how many it yields.
    pub(crate) fn fit<I>(keys: I, n: usize, capacity: usize) -> LinearModel
    where
        I: Iterator<Item = i64> + Clone,
    {
        let mut first = keys.clone();
        let anchor = match first.next() {
            Some(key) => to_unsigned(key),
            None => return LinearModel::default(),
        };
        let scale = capacity as f64 / n.max(1) as f64;
        if n == 1 {
            return LinearModel { slope: 0.0, intercept: capacity as f64 / 2.0, anchor };
        }
        // Two passes (mean, then centred co-moments) keep the fit stable when the
        // distances are large and close together.
        let count = n as f64;
        let mean_x = keys.clone().map(|key| signed_distance(to_unsigned(key), anchor)).sum::<f64>() / count;
        let mean_y = (count - 1.0) / 2.0;
        let mut covariance = 0.0;
        let mut variance = 0.0;
        for (rank, key) in keys.enumerate() {
            let dx = signed_distance(to_unsigned(key), anchor) - mean_x;
            covariance += dx * (rank as f64 - mean_y);
            variance += dx * dx;
        }
        let slope = if variance > 0.0 { covariance / variance } else { 0.0 };
        let intercept = mean_y - slope * mean_x;
        LinearModel { slope: slope * scale, intercept: intercept * scale, anchor }
    }

    /// The fractional slot predicted for `key` (unsigned space).
    #[inline]
    pub(crate) fn predict(&self, key: u64) -> f64 {
        self.slope * signed_distance(key, self.anchor) + self.intercept
    }

    /// The predicted slot for `key`, clamped into `0..capacity` (0 when empty).
    #[inline]
    pub(crate) fn predict_slot(&self, key: u64, capacity: usize) -> usize {
        let position = self.predict(key);
        // `as` saturates: NaN becomes 0 and huge values become usize::MAX.
        let slot = if position > 0.0 { position as usize } else { 0 };
        slot.min(capacity.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_line_exactly() {
        let keys: Vec<i64> = (0..100).map(|i| 1_000 + 10 * i).collect();
        let model = LinearModel::fit(keys.iter().copied(), keys.len(), 200);
        for (rank, key) in keys.iter().enumerate() {
            assert_eq!(model.predict_slot(to_unsigned(*key), 200), rank * 2);
        }
    }

    #[test]
    fn extreme_keys_do_not_overflow() {
        let keys = [i64::MIN, -1, 0, i64::MAX];
        let model = LinearModel::fit(keys.iter().copied(), keys.len(), 8);
        for key in keys {
            assert!(model.predict_slot(to_unsigned(key), 8) < 8);
        }
        let dense: Vec<i64> = (0..64).map(|i| i64::MAX - 64 + i).collect();
        let model = LinearModel::fit(dense.iter().copied(), dense.len(), 64);
        for (rank, key) in dense.iter().enumerate() {
            assert_eq!(model.predict_slot(to_unsigned(*key), 64), rank);
        }
    }

    #[test]
    fn degenerate_inputs() {
        let empty = LinearModel::fit(std::iter::empty(), 0, 0);
        assert_eq!(empty.predict_slot(0, 0), 0);
        let one = LinearModel::fit(std::iter::once(42), 1, 8);
        assert_eq!(one.predict_slot(to_unsigned(42), 8), 4);
        assert_eq!(one.predict_slot(to_unsigned(i64::MIN), 8), 4);
    }
}
