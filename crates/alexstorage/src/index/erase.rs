//! Erases, and the structural changes that keep a shrinking tree dense: contraction of
//! sparse data nodes, merging of small sibling data nodes, and collapsing inner nodes
//! left with a single child.
//!
//! Merging follows the buddy rule of the slot runs: a data node owning an aligned run
//! merges with the data node owning the sibling run of the same size when their keys
//! together fill at most a quarter of a largest data node, so that a merge is never
//! followed soon by a split. A parent whose every slot ends up owned by one child is
//! replaced by that child.

use super::cost::{capacity_for, CONTRACT_DENSITY, INIT_DENSITY, MIN_CAPACITY};
use super::data_node::DataNode;
use super::insert::{Path, Target};
use super::key::to_unsigned;
use super::model_node::NodeId;
use super::Alex;

impl<P: Copy + Default> Alex<P> {
    /// Removes `key`, returning its payload.
    pub fn remove(&mut self, key: i64) -> Option<P> {
        let unsigned = to_unsigned(key);
        let Target::Data(index) = self.descend_fast(unsigned) else { return None };
        let old = self.data.get_mut(index)?.remove(key)?;
        self.len -= 1;
        if self.is_sparse(index) {
            let (path, _) = self.descend(unsigned);
            self.merge_upward(&path, index);
        }
        Some(old)
    }

    /// Whether data node `index` has become sparse: empty, or below the contraction
    /// density. A node is built or expanded at twice that density at least, so it
    /// reaches it only after losing half its keys, which keeps merges and contractions
    /// amortized O(1) per erase.
    fn is_sparse(&self, index: usize) -> bool {
        self.data.get(index).is_some_and(|node| {
            node.num_keys == 0
                || node.capacity() > 2 * MIN_CAPACITY
                    && (node.num_keys as f64) < node.capacity() as f64 * CONTRACT_DENSITY
        })
    }

    /// Rebuilds data node `index` smaller when it is sparse.
    fn contract_if_sparse(&mut self, index: usize) {
        if !self.is_sparse(index) {
            return;
        }
        let keys = self.data.get(index).map_or(0, |node| node.num_keys);
        self.rebuild_data_node(index, capacity_for(keys, INIT_DENSITY), true);
    }

    /// After an erase from data node `index`: a sparse node merges with its buddy when
    /// their keys together are few, else contracts; a parent left with a single child
    /// is replaced by it, up the path for as long as that applies.
    fn merge_upward(&mut self, path: &Path, index: usize) {
        let merge_limit = self.config.max_data_node_keys() / 4;
        let node_id = NodeId::data(index as u32);
        let mut depth = path.len();
        let mut may_merge = true;
        while let Some((parent, slot)) = depth.checked_sub(1).and_then(|depth| path.get(depth)) {
            let Some(inner) = self.inner.get(parent) else { break };
            let run = inner.run_of(slot);
            let slots = inner.children.len();
            if run.len() == slots {
                // The parent has a single child: the child takes its place.
                let grandparent = depth
                    .checked_sub(2)
                    .and_then(|depth| path.get(depth))
                    .and_then(|(node, slot)| Some((node, self.inner.get(node)?.run_of(slot))));
                self.replace_child(grandparent, node_id);
                self.free_inner_node(parent);
                depth -= 1;
                continue;
            }
            if !may_merge {
                break;
            }
            let buddy_start = run.start ^ run.len();
            let Some(&buddy) = inner.children.get(buddy_start) else { break };
            if buddy.is_inner() || inner.run_of(buddy_start) != (buddy_start..buddy_start + run.len()) {
                break;
            }
            let (Some(node), Some(other)) = (self.data.get(index), self.data.get(buddy.index())) else { break };
            if node.num_keys + other.num_keys > merge_limit {
                break;
            }
            let (low, high) = if buddy_start < run.start { (other, node) } else { (node, other) };
            let mut entries = low.entries();
            entries.extend(high.entries());
            let buddy_index = buddy.index() as u32;
            self.unlink(buddy_index);
            let Some(node) = self.data.get(index) else { break };
            let mut merged = DataNode::build(&entries, INIT_DENSITY);
            merged.prev = node.prev;
            merged.next = node.next;
            if let Some(slot) = self.data.get_mut(index) {
                *slot = merged;
            }
            self.free_data_node(buddy_index);
            let start = run.start.min(buddy_start);
            self.replace_child(Some((parent, start..start + 2 * run.len())), node_id);
            // The merged node is dense again unless both were empty.
            may_merge = self.is_sparse(index);
        }
        self.contract_if_sparse(index);
    }
}
