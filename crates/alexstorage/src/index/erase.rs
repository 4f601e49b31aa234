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
        let (path, target) = self.descend(to_unsigned(key));
        let Target::Data(index) = target else { return None };
        let old = self.data.get_mut(index)?.remove(key)?;
        self.len -= 1;
        self.contract_if_sparse(index);
        self.merge_upward(&path, index);
        Some(old)
    }

    /// Rebuilds data node `index` smaller when it has become sparse.
    fn contract_if_sparse(&mut self, index: usize) {
        let Some(node) = self.data.get(index) else { return };
        let capacity = node.capacity();
        if node.num_keys == 0 && capacity > 0 {
            self.rebuild_data_node(index, 0);
        } else if capacity > 2 * MIN_CAPACITY && (node.num_keys as f64) < capacity as f64 * CONTRACT_DENSITY {
            self.rebuild_data_node(index, capacity_for(node.num_keys, INIT_DENSITY));
        }
    }

    /// Merges data node `index` with its buddies and collapses single-child parents,
    /// walking up `path` for as long as something changes.
    fn merge_upward(&mut self, path: &Path, index: usize) {
        let merge_limit = self.config.max_data_node_keys() / 4;
        let node_id = NodeId::data(index as u32);
        let mut depth = path.len();
        while let Some((parent, slot)) = depth.checked_sub(1).and_then(|depth| path.get(depth)) {
            let Some(inner) = self.inner.get(parent) else { return };
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
            let buddy_start = run.start ^ run.len();
            let Some(&buddy) = inner.children.get(buddy_start) else { return };
            if buddy.is_inner() || inner.run_of(buddy_start) != (buddy_start..buddy_start + run.len()) {
                return;
            }
            let (Some(node), Some(other)) = (self.data.get(index), self.data.get(buddy.index())) else { return };
            if node.num_keys + other.num_keys > merge_limit {
                return;
            }
            let (low, high) = if buddy_start < run.start { (other, node) } else { (node, other) };
            let mut entries = low.entries();
            entries.extend(high.entries());
            let buddy_index = buddy.index() as u32;
            self.unlink(buddy_index);
            let Some(node) = self.data.get(index) else { return };
            let mut merged = DataNode::build(&entries, INIT_DENSITY);
            merged.prev = node.prev;
            merged.next = node.next;
            if let Some(slot) = self.data.get_mut(index) {
                *slot = merged;
            }
            self.free_data_node(buddy_index);
            let start = run.start.min(buddy_start);
            self.replace_child(Some((parent, start..start + 2 * run.len())), node_id);
        }
    }
}
