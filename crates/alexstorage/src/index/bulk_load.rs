//! Bulk loading: building a tree (or a subtree, for a downward split) top-down from
//! sorted entries, with the fanout tree of [`super::fanout`] choosing each node's shape.
//!
//! Every inner node gets the smallest aligned domain that contains its keys, so a
//! subtree never spends slots on the empty space around its keys. Recursion depth is
//! bounded by 64: a child's domain lies inside one slot run of its parent, which is at
//! least one bit narrower.

use super::cost::INIT_DENSITY;
use super::data_node::{DataNode, Slot, NO_NODE};
use super::fanout::{choose_layout, Layout};
use super::key::{align_down, common_block_bits, to_unsigned};
use super::model_node::{InnerNode, NodeId};
use super::Alex;

impl<P: Copy + Default> Alex<P> {
    /// Replaces the (empty) tree with one built from `entries` (strictly ascending).
    pub(super) fn load_sorted(&mut self, entries: &[Slot<P>]) {
        self.data.clear();
        self.free_data.clear();
        self.inner.clear();
        self.free_inner.clear();
        let mut order = Vec::new();
        self.root = self.build_subtree(entries, &mut order, true);
        self.link_in_order(&order, NO_NODE, NO_NODE);
        self.len = entries.len();
    }

    /// Builds a subtree over `entries` (strictly ascending), appending its data nodes to
    /// `order` in key order. With `allow_data == false` the top is an inner node
    /// whenever there are at least two keys.
    pub(super) fn build_subtree(&mut self, entries: &[Slot<P>], order: &mut Vec<u32>, allow_data: bool) -> NodeId {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return self.new_data_node(DataNode::empty(), order);
        };
        let bits = common_block_bits(to_unsigned(first.key), to_unsigned(last.key));
        let lo = align_down(to_unsigned(first.key), bits);
        match choose_layout(entries, lo, bits, &self.config, allow_data) {
            Layout::Data => self.new_data_node(DataNode::build(entries, INIT_DENSITY), order),
            Layout::Inner { fanout_bits, runs, bounds } => {
                let mut children = vec![NodeId::data(0); 1 << fanout_bits].into_boxed_slice();
                for (start, len) in runs {
                    let from = bounds.get(start).copied().unwrap_or(0);
                    let to = bounds.get(start + len).copied().unwrap_or(from);
                    let child_entries = entries.get(from..to).unwrap_or(&[]);
                    let child = self.build_subtree(child_entries, order, true);
                    if let Some(run) = children.get_mut(start..start + len) {
                        run.fill(child);
                    }
                }
                self.alloc_inner(InnerNode::new(lo, bits - fanout_bits, children))
            }
        }
    }

    /// Stores `node` and records it in `order`.
    fn new_data_node(&mut self, node: DataNode<P>, order: &mut Vec<u32>) -> NodeId {
        let index = self.alloc_data(node);
        order.push(index);
        NodeId::data(index)
    }

    /// Links the data nodes of `order` into a chain between `prev` and `next`.
    pub(super) fn link_in_order(&mut self, order: &[u32], prev: u32, next: u32) {
        let mut before = prev;
        for &index in order {
            if let Some(node) = self.data.get_mut(index as usize) {
                node.prev = before;
            }
            if let Some(node) = self.data.get_mut(before as usize) {
                node.next = index;
            }
            before = index;
        }
        if let Some(node) = self.data.get_mut(before as usize) {
            node.next = next;
        }
        if let Some(node) = self.data.get_mut(next as usize) {
            node.prev = before;
        }
    }
}
