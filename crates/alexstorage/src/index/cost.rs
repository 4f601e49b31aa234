//! The cost model: what a data node is expected to cost per operation, and how the
//! index decides between a data node, an expansion, and a split.
//!
//! Costs are in units of "one exponential-search probe". A data node's cost per key is
//!
//! ```text
//! cost = SEARCH_PROBE_WEIGHT * avg_search_probes + SHIFT_WEIGHT * avg_shifts
//! ```
//!
//! where both averages come from placing the keys exactly as a build would (model
//! prediction, then the next free slot): `avg_search_probes` from the distance between
//! each key's predicted and actual slot, `avg_shifts` from the runs of occupied slots
//! (an insert that lands in a run of length `L` shifts about `L / 4` slots to the
//! nearer gap, and lands there with probability `L / n`). An inner node adds
//! `TRAVERSAL_WEIGHT` (one dependent memory access) and charges its child array per
//! key through `SIZE_WEIGHT_PER_BYTE`.
//!
//! The same placement routine produces the expected costs of a freshly built node,
//! which inserts then compare with the empirical costs they observe: a node whose
//! observed cost exceeds its expectation by `DEVIATION_FACTOR` is reconsidered for a
//! split instead of a plain expansion (the paper's "catastrophic cost" check).

use super::key::{bit_length, to_unsigned};
use super::model::LinearModel;

/// Weight of one search probe.
pub(crate) const SEARCH_PROBE_WEIGHT: f64 = 1.0;
/// Weight of moving one slot during an insert.
pub(crate) const SHIFT_WEIGHT: f64 = 0.05;
/// Weight of descending through one more inner node.
pub(crate) const TRAVERSAL_WEIGHT: f64 = 1.0;
/// Weight of one byte of node metadata, per key it serves.
pub(crate) const SIZE_WEIGHT_PER_BYTE: f64 = 0.05;
/// Empirical cost above `expected * DEVIATION_FACTOR + DEVIATION_SLACK` is a deviation.
pub(crate) const DEVIATION_FACTOR: f64 = 1.5;
/// Absolute slack so that nodes with near-zero expected cost are not flagged by noise.
pub(crate) const DEVIATION_SLACK: f64 = 1.0;
/// Inserts a node must see before its empirical cost is trusted.
pub(crate) const DEVIATION_MIN_INSERTS: u64 = 64;

/// Density a node is built at by a bulk load or a split.
pub(crate) const INIT_DENSITY: f64 = 0.7;
/// Density a node is expanded to: low, so that many inserts fit before the next one.
pub(crate) const EXPANDED_DENSITY: f64 = 0.6;
/// A node is full when one more key would push it past this density.
pub(crate) const MAX_DENSITY: f64 = 0.8;
/// A node below this density (and above the minimum size) is contracted.
pub(crate) const CONTRACT_DENSITY: f64 = 0.3;
/// Smallest capacity of a non-empty data node.
pub(crate) const MIN_CAPACITY: usize = 8;

/// Keys a cost estimate samples at most per node (every k-th key beyond that).
pub(crate) const ESTIMATE_SAMPLE_KEYS: usize = 512;

/// Capacity for `keys` keys built at `density`.
pub(crate) fn capacity_for(keys: usize, density: f64) -> usize {
    if keys == 0 {
        return 0;
    }
    ((keys as f64 / density).ceil() as usize).max(MIN_CAPACITY).max(keys + 1)
}

/// Probes an exponential search makes to find a key `error` slots from its prediction.
#[inline]
pub(crate) fn search_probes(error: usize) -> u64 {
    1 + 2 * u64::from(bit_length(error as u64))
}

/// What placing a node's keys produced, or would produce.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct PlacementCost {
    /// Average search probes per key.
    pub(crate) search_probes: f64,
    /// Expected slots shifted per insert.
    pub(crate) shifts: f64,
}

impl PlacementCost {
    /// The weighted cost per key.
    pub(crate) fn total(&self) -> f64 {
        SEARCH_PROBE_WEIGHT * self.search_probes + SHIFT_WEIGHT * self.shifts
    }
}

/// Accumulates the statistics of a placement, one key at a time in slot order.
#[derive(Default)]
pub(crate) struct PlacementAccumulator {
    keys: u64,
    probes: u64,
    run_length: u64,
    run_squares: u64,
    next_slot: usize,
}

impl PlacementAccumulator {
    /// Records a key placed at `slot` after a prediction of `predicted`.
    #[inline]
    pub(crate) fn record(&mut self, predicted: usize, slot: usize) {
        self.probes += search_probes(predicted.abs_diff(slot));
        if self.keys > 0 && slot == self.next_slot {
            self.run_length += 1;
        } else {
            self.run_squares += self.run_length * self.run_length;
            self.run_length = 1;
        }
        self.keys += 1;
        self.next_slot = slot + 1;
    }

    /// The averages over everything recorded.
    pub(crate) fn finish(self) -> PlacementCost {
        if self.keys == 0 {
            return PlacementCost::default();
        }
        let squares = self.run_squares + self.run_length * self.run_length;
        let keys = self.keys as f64;
        PlacementCost { search_probes: self.probes as f64 / keys, shifts: squares as f64 / (4.0 * keys) }
    }
}

/// The slot a build places a key at: its prediction, pushed right past the previous key
/// and left far enough that the `remaining` keys after it still fit.
#[inline]
pub(crate) fn placement_slot(predicted: usize, next_free: usize, capacity: usize, remaining: usize) -> usize {
    predicted.max(next_free).min(capacity - remaining - 1)
}

/// Estimated cost per key of one data node holding `keys` (ascending), built at
/// `density`. Large inputs are sampled (every k-th key into a node k times smaller),
/// which keeps estimates cheap enough to evaluate many candidate layouts.
/// At most `sample_keys` keys are used.
pub(crate) fn estimate_data_node_cost<T>(
    items: &[T],
    key_of: impl Fn(&T) -> i64,
    density: f64,
    sample_keys: usize,
) -> PlacementCost {
    if items.is_empty() {
        return PlacementCost::default();
    }
    let stride = items.len().div_ceil(sample_keys.max(1)).max(1);
    let sample = items.iter().step_by(stride).map(&key_of);
    let count = items.len().div_ceil(stride);
    let capacity = capacity_for(count, density);
    let model = LinearModel::fit(sample.clone(), count, capacity);
    let mut accumulator = PlacementAccumulator::default();
    let mut next_free = 0;
    for (index, key) in sample.enumerate() {
        let predicted = model.predict_slot(to_unsigned(key), capacity);
        let slot = placement_slot(predicted, next_free, capacity, count - index - 1);
        accumulator.record(predicted, slot);
        next_free = slot + 1;
    }
    accumulator.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_keys_cost_little_and_skewed_keys_cost_more() {
        let linear: Vec<i64> = (0..10_000).map(|i| i * 7).collect();
        let skewed: Vec<i64> = (0..10_000i64).map(|i| i * i * i).collect();
        let linear_cost = estimate_data_node_cost(&linear, |&key| key, INIT_DENSITY, ESTIMATE_SAMPLE_KEYS);
        let skewed_cost = estimate_data_node_cost(&skewed, |&key| key, INIT_DENSITY, ESTIMATE_SAMPLE_KEYS);
        assert!(linear_cost.search_probes < 1.5, "{linear_cost:?}");
        assert!(skewed_cost.total() > 2.0 * linear_cost.total(), "{skewed_cost:?} vs {linear_cost:?}");
    }

    #[test]
    fn accumulator_counts_runs() {
        let mut accumulator = PlacementAccumulator::default();
        for slot in [0, 1, 2, 5] {
            accumulator.record(slot, slot);
        }
        let cost = accumulator.finish();
        assert_eq!(cost.search_probes, 1.0);
        assert_eq!(cost.shifts, (9.0 + 1.0) / 16.0);
    }

    #[test]
    fn capacity_leaves_room() {
        assert_eq!(capacity_for(0, INIT_DENSITY), 0);
        assert_eq!(capacity_for(1, INIT_DENSITY), MIN_CAPACITY);
        assert!(capacity_for(1000, INIT_DENSITY) >= 1428);
    }
}
