//! Inserts, and the structural changes that make room for them: expansion, sideways and
//! downward splits, and widening a node's domain for keys outside it.
//!
//! An insert descends to its data node and places the key there. When the node is full
//! or an inner node on the way excludes the key, one structural step runs and the
//! insert starts over. Each step makes progress that cannot be undone by the next (an
//! expansion leaves room; a split halves a node's slot run, grows its parent, or
//! replaces it with an inner node whose children each hold part of its keys; a widening
//! makes a domain reach further toward the key), so the loop ends after a few steps;
//! it is nonetheless bounded, with a full rebuild as the last resort.

use super::cost::{
    capacity_for, estimate_data_node_cost, ESTIMATE_SAMPLE_KEYS, EXPANDED_DENSITY, INIT_DENSITY, MIN_CAPACITY,
    SIZE_WEIGHT_PER_BYTE,
};
use super::data_node::{DataNode, InsertOutcome, Slot};
use super::key::{align_down, common_block_bits, to_unsigned};
use super::model_node::{InnerNode, NodeId, Route};
use super::Alex;

/// Deepest possible path: every level consumes at least one bit of the 64-bit domain.
pub(crate) const MAX_DEPTH: usize = 66;

/// Structural steps one insert may take before it falls back to a rebuild.
const MAX_STRUCTURAL_STEPS: usize = 4096;

/// The inner nodes an insert descended through: (arena index, slot taken).
pub(crate) struct Path {
    steps: [(u32, u32); MAX_DEPTH],
    len: usize,
}

impl Path {
    fn new() -> Self {
        Path { steps: [(0, 0); MAX_DEPTH], len: 0 }
    }

    fn push(&mut self, node: usize, slot: usize) -> bool {
        match self.steps.get_mut(self.len) {
            Some(step) => {
                *step = (node as u32, slot as u32);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The step at `depth` (0 is the root) as (inner node index, slot).
    pub(crate) fn get(&self, depth: usize) -> Option<(usize, usize)> {
        if depth < self.len {
            self.steps.get(depth).map(|&(node, slot)| (node as usize, slot as usize))
        } else {
            None
        }
    }

    /// Number of steps.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn last(&self) -> Option<(usize, usize)> {
        self.len.checked_sub(1).and_then(|depth| self.get(depth))
    }
}

/// Where a descent ended.
pub(crate) enum Target {
    /// At this data node.
    Data(usize),
    /// At this inner node, whose domain excludes the key.
    OutsideDomain(usize),
}

impl<P: Copy + Default> Alex<P> {
    /// Inserts `key` with `payload`, returning the payload it replaced.
    pub fn insert(&mut self, key: i64, payload: P) -> Option<P> {
        let unsigned = to_unsigned(key);
        for _ in 0..MAX_STRUCTURAL_STEPS {
            match self.descend_fast(unsigned) {
                Target::OutsideDomain(_) => {
                    // Structural changes need the path; the common case does not.
                    let (path, target) = self.descend(unsigned);
                    if let Target::OutsideDomain(node) = target {
                        self.widen_domain(&path, node, unsigned);
                    }
                }
                Target::Data(index) => {
                    let outcome = match self.data.get_mut(index) {
                        Some(node) => node.insert(key, payload),
                        None => break,
                    };
                    match outcome {
                        InsertOutcome::Replaced(old) => return Some(old),
                        InsertOutcome::Inserted => {
                            self.len += 1;
                            return None;
                        }
                        InsertOutcome::Full => {
                            let (path, _) = self.descend(unsigned);
                            self.make_room(&path, index);
                        }
                    }
                }
            }
        }
        debug_assert!(false, "insert of {key} did not settle; rebuilding");
        self.insert_by_rebuild(key, payload)
    }

    /// Descends toward `key` (unsigned) without recording the path.
    #[inline]
    pub(crate) fn descend_fast(&self, key: u64) -> Target {
        let mut node = self.root;
        while node.is_inner() {
            let Some(inner) = self.inner.get(node.index()) else { break };
            match inner.route(key) {
                Route::Slot(slot) => match inner.children.get(slot) {
                    Some(&child) => node = child,
                    None => break,
                },
                Route::Below | Route::Above => return Target::OutsideDomain(node.index()),
            }
        }
        Target::Data(node.index())
    }

    /// Descends toward `key` (unsigned), recording the inner nodes passed.
    pub(crate) fn descend(&self, key: u64) -> (Path, Target) {
        let mut path = Path::new();
        let mut node = self.root;
        while node.is_inner() {
            let Some(inner) = self.inner.get(node.index()) else { break };
            match inner.route(key) {
                Route::Slot(slot) => {
                    let Some(&child) = inner.children.get(slot) else { break };
                    if !path.push(node.index(), slot) {
                        break;
                    }
                    node = child;
                }
                Route::Below | Route::Above => return (path, Target::OutsideDomain(node.index())),
            }
        }
        (path, Target::Data(node.index()))
    }

    /// Makes room in full data node `index`: expands it, or splits it when it would
    /// outgrow the size limit, or when its observed costs deviate from the expected
    /// ones and the cost model prefers a split.
    fn make_room(&mut self, path: &Path, index: usize) {
        let Some(node) = self.data.get(index) else { return };
        let keys = node.num_keys;
        let fits = capacity_for(keys + 1, EXPANDED_DENSITY) <= self.config.max_data_node_slots;
        let expand = fits && (keys < 2 || !node.cost_deviates() || self.expansion_beats_split(&node.entries()));
        if expand {
            self.expand(index);
        } else {
            self.split(path, index);
        }
    }

    /// Whether one expanded node is estimated no costlier than two halves.
    fn expansion_beats_split(&self, entries: &[Slot<P>]) -> bool {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return true };
        let (low, high) = (to_unsigned(first.key), to_unsigned(last.key));
        let bits = common_block_bits(low, high);
        let middle = align_down(low, bits).saturating_add(1u64 << bits.saturating_sub(1).min(63));
        let cut = entries.partition_point(|slot| to_unsigned(slot.key) < middle);
        let (left, right) = entries.split_at(cut.min(entries.len()));
        let cost = |part: &[Slot<P>], density| {
            estimate_data_node_cost(part, |slot| slot.key, density, ESTIMATE_SAMPLE_KEYS).total()
        };
        let count = entries.len() as f64;
        let expanded = cost(entries, EXPANDED_DENSITY);
        let split = (cost(left, INIT_DENSITY) * left.len() as f64 + cost(right, INIT_DENSITY) * right.len() as f64)
            / count
            + SIZE_WEIGHT_PER_BYTE * std::mem::size_of::<DataNode<P>>() as f64 / count;
        expanded <= split
    }

    /// Rebuilds data node `index` at the expanded density (retraining its model).
    /// The model is retrained only when the observed costs deviate from the expected
    /// ones (the keys' shape changed); otherwise it is stretched, as in the paper.
    pub(super) fn expand(&mut self, index: usize) {
        let Some(node) = self.data.get(index) else { return };
        let retrain = node.cost_deviates() || node.num_keys < 2 * MIN_CAPACITY;
        let capacity = capacity_for(node.num_keys + 1, EXPANDED_DENSITY);
        self.rebuild_data_node(index, capacity, retrain);
    }

    /// Rebuilds data node `index` in place with `capacity` slots, keeping its links.
    pub(super) fn rebuild_data_node(&mut self, index: usize, capacity: usize, retrain: bool) {
        let Some(node) = self.data.get(index) else { return };
        let rebuilt = node.rebuilt(capacity, retrain);
        if let Some(slot) = self.data.get_mut(index) {
            *slot = rebuilt;
        }
    }

    /// Splits full data node `index`: sideways when its parent can give it more slots,
    /// downward otherwise.
    fn split(&mut self, path: &Path, index: usize) {
        let Some((parent, slot)) = path.last() else {
            self.split_downward(None, index);
            return;
        };
        let Some(inner) = self.inner.get(parent) else { return };
        let mut run = inner.run_of(slot);
        if run.len() < 2 {
            if inner.fanout_bits() < self.config.max_fanout_bits && inner.shift >= 1 {
                self.double_fanout(parent);
                run = 2 * run.start..2 * run.end;
            } else {
                self.split_downward(Some((parent, run)), index);
                return;
            }
        }
        self.split_sideways(parent, run, index);
    }

    /// Doubles an inner node's slots: each child now owns twice as many.
    fn double_fanout(&mut self, node: usize) {
        let Some(inner) = self.inner.get_mut(node) else { return };
        let children: Box<[NodeId]> = inner.children.iter().flat_map(|&child| [child, child]).collect();
        *inner = InnerNode::new(inner.lo, inner.shift - 1, children);
    }

    /// Gives each half of `run` (slots of `parent` owned by data node `index`) its own
    /// data node.
    fn split_sideways(&mut self, parent: usize, run: std::ops::Range<usize>, index: usize) {
        let middle = run.start + run.len() / 2;
        let Some(boundary) = self.inner.get(parent).and_then(|inner| inner.slot_start(middle)) else { return };
        let Some(node) = self.data.get(index) else { return };
        let below = |key: Option<i64>| key.is_some_and(|key| to_unsigned(key) < boundary);
        let (all_left, all_right) = (below(node.max_key()), !below(node.min_key()));
        let node_id = NodeId::data(index as u32);
        if all_left || all_right {
            // Every key is on one side: the other half gets an empty node.
            let empty = self.alloc_data(DataNode::empty());
            let (keys_half, empty_half) = if all_left {
                self.link_after(index as u32, empty);
                (run.start..middle, middle..run.end)
            } else {
                self.link_before(index as u32, empty);
                (middle..run.end, run.start..middle)
            };
            self.replace_child(Some((parent, keys_half)), node_id);
            self.replace_child(Some((parent, empty_half)), NodeId::data(empty));
            return;
        }
        let entries = node.entries();
        let cut = entries.partition_point(|slot| to_unsigned(slot.key) < boundary);
        let (left, right) = entries.split_at(cut);
        let mut left_node = DataNode::build(left, INIT_DENSITY);
        left_node.prev = node.prev;
        left_node.next = node.next;
        let right_index = self.alloc_data(DataNode::build(right, INIT_DENSITY));
        if let Some(slot) = self.data.get_mut(index) {
            *slot = left_node;
        }
        self.link_after(index as u32, right_index);
        self.replace_child(Some((parent, run.start..middle)), node_id);
        self.replace_child(Some((parent, middle..run.end)), NodeId::data(right_index));
    }

    /// Replaces data node `index` (owning `run` of `parent`, or the root) with an inner
    /// node whose shape the fanout tree chooses.
    fn split_downward(&mut self, parent: Option<(usize, std::ops::Range<usize>)>, index: usize) {
        let Some(node) = self.data.get(index) else { return };
        if node.num_keys < 2 {
            self.expand(index);
            return;
        }
        let entries = node.entries();
        let (prev, next) = (node.prev, node.next);
        let mut order = Vec::new();
        let subtree = self.build_subtree(&entries, &mut order, false);
        self.link_in_order(&order, prev, next);
        self.free_data_node(index as u32);
        self.replace_child(parent, subtree);
    }

    /// Widens inner node `node`'s domain to the smallest aligned block that also holds
    /// `key`: in place when the fanout limit allows, else under a new inner node.
    fn widen_domain(&mut self, path: &Path, node: usize, key: u64) {
        let Some(inner) = self.inner.get(node) else { return };
        let (bits, fanout_bits, lo) = (inner.bits(), inner.fanout_bits(), inner.lo);
        let new_bits = common_block_bits(lo, key);
        if new_bits <= bits {
            return;
        }
        let new_lo = align_down(key, new_bits);
        let extra = new_bits - bits;
        let node_id = NodeId::inner(node as u32);
        let (leftmost, rightmost) = (self.edge_data_node(node_id, false), self.edge_data_node(node_id, true));
        if fanout_bits + extra <= self.config.max_fanout_bits {
            let old_children = inner.children.clone();
            let position = ((lo - new_lo) >> bits) as usize;
            let new_fanout_bits = fanout_bits + extra;
            let mut children = vec![node_id; 1 << new_fanout_bits].into_boxed_slice();
            let run = position << fanout_bits..(position + 1) << fanout_bits;
            if let Some(target) = children.get_mut(run.clone()) {
                target.copy_from_slice(&old_children);
            }
            self.fill_with_empty_nodes(&mut children, run, leftmost, rightmost);
            let shift = new_bits - new_fanout_bits;
            if let Some(inner) = self.inner.get_mut(node) {
                *inner = InnerNode::new(new_lo, shift, children);
            }
        } else {
            let parent_fanout_bits = self.config.max_fanout_bits.min(extra);
            let shift = new_bits - parent_fanout_bits;
            let position = ((lo - new_lo) >> shift) as usize;
            let mut children = vec![node_id; 1 << parent_fanout_bits].into_boxed_slice();
            self.fill_with_empty_nodes(&mut children, position..position + 1, leftmost, rightmost);
            let parent = path.last().and_then(|(parent, slot)| Some((parent, self.inner.get(parent)?.run_of(slot))));
            let widened = self.alloc_inner(InnerNode::new(new_lo, shift, children));
            self.replace_child(parent, widened);
        }
    }

    /// Points every slot of `children` outside the aligned `run` at new empty data
    /// nodes, one per aligned block, linked before `leftmost` or after `rightmost`.
    fn fill_with_empty_nodes(
        &mut self,
        children: &mut [NodeId],
        run: std::ops::Range<usize>,
        leftmost: u32,
        rightmost: u32,
    ) {
        let total = children.len();
        let mut start = run.start;
        let mut size = run.len().max(1);
        let mut left_blocks = Vec::new();
        let mut right_blocks = Vec::new();
        while size < total {
            let sibling = start ^ size;
            if sibling < start {
                left_blocks.push(sibling..sibling + size);
            } else {
                right_blocks.push(sibling..sibling + size);
            }
            start &= !size;
            size *= 2;
        }
        // Nearest blocks come first; the list wants ascending key order.
        for block in left_blocks.into_iter().rev() {
            let empty = self.alloc_data(DataNode::empty());
            self.link_before(leftmost, empty);
            if let Some(slots) = children.get_mut(block) {
                slots.fill(NodeId::data(empty));
            }
        }
        let mut after = rightmost;
        for block in right_blocks {
            let empty = self.alloc_data(DataNode::empty());
            self.link_after(after, empty);
            after = empty;
            if let Some(slots) = children.get_mut(block) {
                slots.fill(NodeId::data(empty));
            }
        }
    }

    /// The last resort of a bounded insert: rebuild the whole tree with the key.
    fn insert_by_rebuild(&mut self, key: i64, payload: P) -> Option<P> {
        let mut entries: Vec<Slot<P>> = self.iter().map(|(key, payload)| Slot { key, payload }).collect();
        let position = entries.partition_point(|slot| slot.key < key);
        let old = match entries.get_mut(position) {
            Some(slot) if slot.key == key => Some(std::mem::replace(&mut slot.payload, payload)),
            _ => {
                entries.insert(position, Slot { key, payload });
                None
            }
        };
        self.load_sorted(&entries);
        old
    }
}
