//! The fanout tree: how a bulk load (or a downward split) chooses the shape of a node.
//!
//! For keys covering an aligned domain of `2^bits` values, level `f` of the fanout
//! tree splits the domain into `2^f` equal children. Each level is scored with the cost
//! model (one traversal, plus each child's estimated data-node cost weighted by its
//! share of the keys, plus the child array's bytes per key); level 0 is a single data
//! node. The cheapest level wins; the search stops two levels after the last
//! improvement. Then, bottom-up, adjacent sibling children are merged into one child
//! owning both slots whenever the merged node is estimated no costlier than the two
//! apart (empty siblings always merge), exactly as the paper's fanout tree collapses
//! its leaves. Children too large for a data node are scored as a further inner level
//! and become subtrees when built.
//!
//! Boundaries are computed level by level: each child of level `f` is cut in two with
//! one binary search inside its own key range, so a level costs `O(2^f log n)` on top
//! of the sampled cost estimates.

use super::cost::{
    estimate_data_node_cost, ESTIMATE_SAMPLE_KEYS, INIT_DENSITY, SIZE_WEIGHT_PER_BYTE, TRAVERSAL_WEIGHT,
};
use super::data_node::{DataNode, Slot};
use super::key::to_unsigned;
use super::IndexConfig;

/// Fewest keys the fanout tree samples per level (all of them, for smaller nodes).
const LAYOUT_SAMPLE_KEYS_MIN: usize = 1 << 8;
/// Most keys the fanout tree samples per level.
const LAYOUT_SAMPLE_KEYS_MAX: usize = 1 << 14;

/// Fewest keys sampled from one child (all of them, for smaller children).
const CHILD_SAMPLE_KEYS_MIN: usize = 8;

/// Levels evaluated past the best one before the search stops.
const PATIENCE_LEVELS: u32 = 2;

/// The shape a bulk load gives a node.
pub(crate) enum Layout {
    /// One data node.
    Data,
    /// An inner node of `2^fanout_bits` slots.
    Inner {
        /// log2 of the slot count.
        fanout_bits: u32,
        /// Children as aligned runs of slots: (first slot, slot count).
        runs: Vec<(usize, usize)>,
        /// `bounds[s]` is the index of the first entry in slot `s` (`bounds[2^f] = n`).
        bounds: Vec<usize>,
    },
}

/// Chooses the layout for `entries` (ascending) over the aligned domain
/// `[lo, lo + 2^bits)`. With `allow_data == false` an inner node is always chosen
/// (a downward split); otherwise a data node is chosen when it is cheapest.
pub(crate) fn choose_layout<P: Copy + Default>(
    entries: &[Slot<P>],
    lo: u64,
    bits: u32,
    config: &IndexConfig,
    allow_data: bool,
) -> Layout {
    let count = entries.len();
    let max_keys = config.max_data_node_keys();
    let max_level = config.max_fanout_bits.min(bits);
    if max_level == 0 || (count <= 1 && allow_data) {
        return Layout::Data;
    }
    let stride = layout_stride(count);
    let mut best_cost = if allow_data && count <= max_keys { data_cost(entries, 1) } else { f64::INFINITY };
    let mut best_level = 0;
    let mut best_has_subtrees = !best_cost.is_finite();
    let mut best_bounds = Vec::new();
    let mut bounds = vec![0, count];
    for level in 1..=max_level {
        bounds = split_bounds(entries, &bounds, lo, bits, level);
        let (cost, has_subtrees) = level_cost(entries, &bounds, level, max_keys, stride);
        if cost < best_cost {
            best_cost = cost;
            best_level = level;
            best_has_subtrees = has_subtrees;
            best_bounds.clone_from(&bounds);
        } else if level >= best_level + PATIENCE_LEVELS && !best_has_subtrees {
            // Keep looking while the best layout still needs subtrees: a wider fanout
            // may yet give every child a data node.
            break;
        }
    }
    if best_level == 0 {
        return Layout::Data;
    }
    let runs = merge_runs(entries, &best_bounds, best_level, max_keys, stride);
    if runs.len() == 1 {
        // Everything merged back into one child, which therefore fits a data node: an
        // inner node over a single child would be pure overhead (and, recursing on the
        // same keys, would never finish).
        return Layout::Data;
    }
    Layout::Inner { fanout_bits: best_level, runs, bounds: best_bounds }
}

/// Estimated cost per key of one data node holding `entries`, sampling at most one key
/// in `stride` (and at most [`ESTIMATE_SAMPLE_KEYS`]).
fn data_cost<P>(entries: &[Slot<P>], stride: usize) -> f64 {
    // A few keys at least, so that small children are scored on their real shape.
    let sample_keys = entries.len().div_ceil(stride.max(1)).clamp(CHILD_SAMPLE_KEYS_MIN, ESTIMATE_SAMPLE_KEYS);
    estimate_data_node_cost(entries, |slot| slot.key, INIT_DENSITY, sample_keys).total()
}

/// The sampling stride for scoring layouts of `count` keys: the fanout tree samples a
/// sixty-fourth of the keys per level, at least [`LAYOUT_SAMPLE_KEYS_MIN`] and at most
/// [`LAYOUT_SAMPLE_KEYS_MAX`], so that scoring all levels costs about as much as one
/// pass over the keys, however large the node.
fn layout_stride(count: usize) -> usize {
    let samples = (count / 64).clamp(LAYOUT_SAMPLE_KEYS_MIN, LAYOUT_SAMPLE_KEYS_MAX);
    count.div_ceil(samples).max(1)
}

/// Cost per key of a child holding `entries`: a data node, or for a child too large
/// for one, a subtree assumed one level deeper and as regular as the child's keys.
fn child_cost<P>(entries: &[Slot<P>], max_keys: usize, stride: usize) -> f64 {
    if entries.len() > max_keys {
        TRAVERSAL_WEIGHT + data_cost(entries, stride)
    } else {
        data_cost(entries, stride)
    }
}

/// Bytes a data node costs beyond its slots.
fn node_overhead_bytes<P>() -> f64 {
    std::mem::size_of::<DataNode<P>>() as f64
}

/// The bounds of level `level` from those of level `level - 1`.
fn split_bounds<P>(entries: &[Slot<P>], parent: &[usize], lo: u64, bits: u32, level: u32) -> Vec<usize> {
    let shift = bits - level;
    let mut bounds = Vec::with_capacity(parent.len() * 2);
    for (child, window) in parent.windows(2).enumerate() {
        if let [start, end] = *window {
            bounds.push(start);
            let boundary = u128::from(lo) + ((2 * child as u128 + 1) << shift);
            let keys = entries.get(start..end).unwrap_or(&[]);
            bounds.push(start + keys.partition_point(|slot| u128::from(to_unsigned(slot.key)) < boundary));
        }
    }
    bounds.push(entries.len());
    bounds
}

/// Cost per key of an inner node whose children are the slots of `bounds`, and whether
/// some child is too large for a data node.
fn level_cost<P>(entries: &[Slot<P>], bounds: &[usize], level: u32, max_keys: usize, stride: usize) -> (f64, bool) {
    let count = entries.len().max(1) as f64;
    let mut weighted = 0.0;
    let mut children = 0usize;
    let mut has_subtrees = false;
    for window in bounds.windows(2) {
        if let [start, end] = *window {
            let child = entries.get(start..end).unwrap_or(&[]);
            if !child.is_empty() {
                children += 1;
                has_subtrees |= child.len() > max_keys;
                weighted += child_cost(child, max_keys, stride) * child.len() as f64;
            }
        }
    }
    let array_bytes = (1usize << level) as f64 * 4.0;
    let size = array_bytes + children as f64 * node_overhead_bytes::<P>();
    (TRAVERSAL_WEIGHT + weighted / count + SIZE_WEIGHT_PER_BYTE * size / count, has_subtrees)
}

/// Bottom-up merging of sibling slots into shared children.
fn merge_runs<P>(
    entries: &[Slot<P>],
    bounds: &[usize],
    level: u32,
    max_keys: usize,
    stride: usize,
) -> Vec<(usize, usize)> {
    let slots = 1usize << level;
    let entry_index = |slot: usize| bounds.get(slot).copied().unwrap_or(entries.len());
    // (first slot, slot count, cost per key if known)
    let mut runs: Vec<(usize, usize, Option<f64>)> = (0..slots).map(|slot| (slot, 1, None)).collect();
    let mut size = 1;
    while size < slots {
        let mut merged = Vec::with_capacity(runs.len());
        let mut index = 0;
        while let Some(&left) = runs.get(index) {
            let right = runs.get(index + 1).copied();
            if let Some(right) = right.filter(|right| left.1 == size && right.1 == size && left.0 % (2 * size) == 0) {
                let cut = [entry_index(left.0), entry_index(right.0), entry_index(right.0 + size)];
                if let Some(cost) = merge_cost(entries, cut, [left.2, right.2], max_keys, stride) {
                    merged.push((left.0, 2 * size, Some(cost)));
                    index += 2;
                    continue;
                }
            }
            merged.push(left);
            index += 1;
        }
        let progress = merged.len() < runs.len();
        runs = merged;
        if !progress {
            break;
        }
        size *= 2;
    }
    runs.into_iter().map(|(start, len, _)| (start, len)).collect()
}

/// The cost per key of merging the sibling children `entries[cut[0]..cut[1]]` and
/// `entries[cut[1]..cut[2]]` into one, when merging is no worse than keeping them apart.
fn merge_cost<P>(
    entries: &[Slot<P>],
    cut: [usize; 3],
    known: [Option<f64>; 2],
    max_keys: usize,
    stride: usize,
) -> Option<f64> {
    let [first, middle, last] = cut;
    let left = entries.get(first..middle).unwrap_or(&[]);
    let right = entries.get(middle..last).unwrap_or(&[]);
    let total = left.len() + right.len();
    if total == 0 {
        return Some(0.0);
    }
    if total > max_keys {
        return None;
    }
    if left.is_empty() {
        return Some(known[1].unwrap_or_else(|| data_cost(right, stride)));
    }
    if right.is_empty() {
        return Some(known[0].unwrap_or_else(|| data_cost(left, stride)));
    }
    let left_cost = known[0].unwrap_or_else(|| data_cost(left, stride));
    let right_cost = known[1].unwrap_or_else(|| data_cost(right, stride));
    let apart = (left_cost * left.len() as f64 + right_cost * right.len() as f64) / total as f64;
    let merged_cost = data_cost(entries.get(first..last).unwrap_or(&[]), stride);
    let saved = SIZE_WEIGHT_PER_BYTE * node_overhead_bytes::<P>() / total as f64;
    (merged_cost <= apart + saved).then_some(merged_cost)
}
