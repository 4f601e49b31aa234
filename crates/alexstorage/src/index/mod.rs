//! The ALEX updatable learned index (Ding et al., SIGMOD 2020): an in-memory ordered
//! map from `i64` keys to small `Copy` payloads. It knows nothing about files; the
//! engine stores a record location in the payload.
//!
//! ```
//! use alexstorage::index::Alex;
//!
//! let pairs: Vec<(i64, u64)> = (0..1000).map(|k| (k * 10, k as u64)).collect();
//! let mut index = Alex::bulk_load(&pairs).unwrap();
//! assert_eq!(index.get(420), Some(42));
//! index.insert(425, 7);
//! assert_eq!(index.range(420..=430).map(|(k, _)| k).collect::<Vec<_>>(), [420, 425, 430]);
//! assert_eq!(index.remove(420), Some(42));
//! assert_eq!(index.len(), 1000);
//! ```
//!
//! # Structure
//! - **Data nodes** (`data_node.rs`) are gapped arrays: slots of (key, payload) placed
//!   where a per-node least-squares linear model (`model.rs`) predicts, with a bitmap of
//!   occupied slots; gaps hold a copy of the next key so that exponential search from
//!   the predicted slot needs no bitmap.
//! - **Inner nodes** (`model_node.rs`) route by a linear model over a power-of-two array
//!   of child slots; a child may own an aligned run of several slots.
//! - **Bulk load** (`bulk_load.rs`, `fanout.rs`) builds the tree top-down; at each node a
//!   fanout tree scores every candidate fanout (and merges of adjacent children) with
//!   the cost model (`cost.rs`) and keeps the cheapest.
//! - **Inserts** (`insert.rs`) place by model and shift toward the nearest gap. A full
//!   node is expanded (retrained) or, when it would grow past the size limit or its
//!   observed costs deviate from the expected ones and a split is cheaper, split
//!   sideways (growing the parent if needed) or downward. A key outside a node's
//!   domain (below the minimum, above the maximum) widens that node's domain, growing
//!   the root upward if need be, instead of degrading a data node.
//! - **Erases** (`erase.rs`) contract sparse nodes and merge small sibling nodes, and
//!   collapse inner nodes left with a single child.
//! - **Iteration** (`iter.rs`) follows a doubly linked list of data nodes in key order.
//!
//! Differences from the reference C++ implementation, all deliberate: inner-node models
//! have power-of-two slopes, so routing is exact integer arithmetic over the full `i64`
//! range (the reference's key arithmetic overflows on full-range keys); any inner node,
//! not only the root, may cover a narrower aligned domain than the slots it owns and
//! widens on demand, which keeps clustered keys with huge gaps shallow; the cost model
//! samples large nodes so that bulk loading stays close to the cost of sorting; and
//! empirical costs are gathered by inserts only, keeping the read path free of writes.
//!
//! # Concurrency
//! `Alex` is a single-writer structure: reads take `&self`, writes `&mut self`, and it is
//! `Send + Sync` whenever its payload is. The engine serves many readers alongside one
//! writer by putting the index behind a reader-writer lock whose read side is sharded
//! per thread (so concurrent readers touch no shared cache line), and by doing every
//! piece of I/O outside it. This is sound for the "readers never wait for I/O" rule
//! because every exclusive section is short and bounded in memory work: an insert
//! moves at most one node's slots (`max_data_node_slots`, 64 Ki by default), an
//! expansion or split rebuilds at most one such node, and a parent grows by at most
//! `2^max_fanout_bits` child references. We chose this over copy-on-write data nodes
//! (which copy a whole node per insert) and over per-node optimistic version locks
//! (which need every slot read as an atomic and epoch-based reclamation of replaced
//! nodes); the latter remains the upgrade path should the read-while-writing benchmark
//! show the sharded lock's write side to be the bottleneck.

mod bitmap;
pub(crate) mod bulk_load;
pub(crate) mod cost;
pub(crate) mod data_node;
pub(crate) mod erase;
pub(crate) mod fanout;
pub(crate) mod insert;
pub(crate) mod invariants;
pub(crate) mod iter;
pub(crate) mod key;
pub(crate) mod model;
pub(crate) mod model_node;

use data_node::{DataNode, Slot, NO_NODE};
use model_node::{InnerNode, NodeId, Route};

pub use iter::Iter;

/// Tuning knobs of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// Largest number of slots in one data node; bounds the work of one insert.
    pub max_data_node_slots: usize,
    /// log2 of the largest number of child slots in one inner node.
    pub max_fanout_bits: u32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig { max_data_node_slots: 1 << 16, max_fanout_bits: 16 }
    }
}

impl IndexConfig {
    /// Clamps the settings into the ranges the index supports.
    fn sanitized(self) -> Self {
        IndexConfig {
            max_data_node_slots: self.max_data_node_slots.clamp(64, 1 << 24),
            max_fanout_bits: self.max_fanout_bits.clamp(1, 20),
        }
    }

    /// Keys that fit one data node of the largest size at the build density.
    pub(crate) fn max_data_node_keys(&self) -> usize {
        (self.max_data_node_slots as f64 * cost::INIT_DENSITY) as usize
    }
}

/// Why a bulk load was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BulkLoadError {
    /// Keys must be strictly ascending; the pair at this position is not.
    #[error("bulk-load keys must be strictly ascending: position {position} holds {key}, after {previous}")]
    NotAscending {
        /// Index of the offending pair.
        position: usize,
        /// Its key.
        key: i64,
        /// The key before it.
        previous: i64,
    },
}

/// Shape and size of the tree, for tests, benchmarks and metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexStats {
    /// Keys stored.
    pub keys: usize,
    /// Data nodes in the tree.
    pub data_nodes: usize,
    /// Inner nodes in the tree.
    pub inner_nodes: usize,
    /// Longest root-to-data-node path, counting the data node (1 for a lone data node).
    pub max_depth: usize,
    /// Average depth of a key.
    pub average_key_depth: f64,
    /// Total slots over all data nodes.
    pub data_slots: usize,
    /// Bytes used, as [`Alex::size_in_bytes`].
    pub bytes: usize,
}

/// Keys [`Alex::get_many`] looks up together: about the misses a core keeps in flight
/// (its line-fill buffers); chosen, not tuned by measurement.
pub const GET_MANY_GROUP: usize = 8;

/// The ALEX learned index: an ordered map from `i64` to a `Copy` payload.
#[derive(Debug)]
pub struct Alex<P> {
    data: Vec<DataNode<P>>,
    free_data: Vec<u32>,
    inner: Vec<InnerNode>,
    free_inner: Vec<u32>,
    root: NodeId,
    len: usize,
    config: IndexConfig,
}

impl<P: Copy + Default> Default for Alex<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Default> Alex<P> {
    /// An empty index with the default configuration.
    pub fn new() -> Self {
        Self::with_config(IndexConfig::default())
    }

    /// An empty index with `config`.
    pub fn with_config(config: IndexConfig) -> Self {
        Alex {
            data: vec![DataNode::empty()],
            free_data: Vec::new(),
            inner: Vec::new(),
            free_inner: Vec::new(),
            root: NodeId::data(0),
            len: 0,
            config: config.sanitized(),
        }
    }

    /// Builds an index from pairs in strictly ascending key order.
    pub fn bulk_load(pairs: &[(i64, P)]) -> Result<Self, BulkLoadError> {
        Self::bulk_load_with_config(pairs, IndexConfig::default())
    }

    /// Builds an index from pairs in strictly ascending key order, with `config`.
    pub fn bulk_load_with_config(pairs: &[(i64, P)], config: IndexConfig) -> Result<Self, BulkLoadError> {
        for (position, pair) in pairs.windows(2).enumerate() {
            if let [(previous, _), (key, _)] = pair {
                if key <= previous {
                    return Err(BulkLoadError::NotAscending { position: position + 1, key: *key, previous: *previous });
                }
            }
        }
        let entries: Vec<Slot<P>> = pairs.iter().map(|&(key, payload)| Slot { key, payload }).collect();
        let mut index = Self::with_config(config);
        index.load_sorted(&entries);
        Ok(index)
    }

    /// The configuration in force.
    pub fn config(&self) -> IndexConfig {
        self.config
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload of `key`.
    #[inline]
    pub fn get(&self, key: i64) -> Option<P> {
        let data = self.find_data_node(key::to_unsigned(key))?;
        self.data.get(data)?.get(key)
    }

    /// The payloads of `keys`, in order, appended to `out`: what [`Alex::get`] of each
    /// returns, faster per key. Keys go in groups of [`GET_MANY_GROUP`]: each key of a
    /// group is routed to its data node and the slot its model predicts is prefetched,
    /// then each is searched, so that a group's cache misses overlap instead of
    /// following one another.
    pub fn get_many(&self, keys: &[i64], out: &mut Vec<Option<P>>) {
        out.reserve(keys.len());
        let mut nodes = [usize::MAX; GET_MANY_GROUP];
        for group in keys.chunks(GET_MANY_GROUP) {
            for (node, &key) in nodes.iter_mut().zip(group) {
                *node = usize::MAX;
                if let Some(index) = self.find_data_node(key::to_unsigned(key)) {
                    if let Some(data) = self.data.get(index) {
                        data.prefetch_prediction(key);
                        *node = index;
                    }
                }
            }
            for (&node, &key) in nodes.iter().zip(group) {
                out.push(self.data.get(node).and_then(|data| data.get(key)));
            }
        }
    }

    /// Whether `key` is present.
    #[inline]
    pub fn contains_key(&self, key: i64) -> bool {
        self.get(key).is_some()
    }

    /// Replaces the payload of an existing `key` in place; false (and no change) when
    /// the key is absent.
    pub fn update(&mut self, key: i64, payload: P) -> bool {
        match self.find_data_node(key::to_unsigned(key)) {
            Some(data) => self.data.get_mut(data).is_some_and(|node| node.update(key, payload)),
            None => false,
        }
    }

    /// Heap and inline bytes used by the index.
    pub fn size_in_bytes(&self) -> usize {
        let data: usize = self.data.iter().map(DataNode::size_in_bytes).sum();
        let inner: usize = self.inner.iter().map(InnerNode::size_in_bytes).sum();
        let spare_data = (self.data.capacity() - self.data.len()) * std::mem::size_of::<DataNode<P>>();
        let spare_inner = (self.inner.capacity() - self.inner.len()) * std::mem::size_of::<InnerNode>();
        let free_lists = (self.free_data.capacity() + self.free_inner.capacity()) * 4;
        std::mem::size_of::<Self>() + data + inner + spare_data + spare_inner + free_lists
    }

    /// Shape and size of the tree.
    pub fn stats(&self) -> IndexStats {
        let mut stats = IndexStats { keys: self.len, bytes: self.size_in_bytes(), ..IndexStats::default() };
        let mut depth_sum = 0usize;
        let mut stack = vec![(self.root, 1usize)];
        let mut seen = std::collections::HashSet::new();
        while let Some((node, depth)) = stack.pop() {
            if !seen.insert(node) {
                continue;
            }
            stats.max_depth = stats.max_depth.max(depth);
            if node.is_inner() {
                stats.inner_nodes += 1;
                if let Some(inner) = self.inner.get(node.index()) {
                    stack.extend(inner.children.iter().map(|&child| (child, depth + 1)));
                }
            } else if let Some(data) = self.data.get(node.index()) {
                stats.data_nodes += 1;
                stats.data_slots += data.capacity();
                depth_sum += depth * data.num_keys;
            }
        }
        stats.average_key_depth = if self.len == 0 { 0.0 } else { depth_sum as f64 / self.len as f64 };
        stats
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        *self = Self::with_config(self.config);
    }

    /// The data node `key` (unsigned) routes to, or `None` when an inner node's domain
    /// excludes it (then the key is absent).
    #[inline]
    fn find_data_node(&self, key: u64) -> Option<usize> {
        let mut node = self.root;
        while node.is_inner() {
            let inner = self.inner.get(node.index())?;
            match inner.route(key) {
                Route::Slot(slot) => node = *inner.children.get(slot)?,
                Route::Below | Route::Above => return None,
            }
        }
        Some(node.index())
    }

    /// Stores a new data node and returns its arena index.
    fn alloc_data(&mut self, node: DataNode<P>) -> u32 {
        match self.free_data.pop() {
            Some(index) => {
                if let Some(slot) = self.data.get_mut(index as usize) {
                    *slot = node;
                }
                index
            }
            None => {
                self.data.push(node);
                (self.data.len() - 1) as u32
            }
        }
    }

    /// Releases a data node's memory and recycles its index.
    fn free_data_node(&mut self, index: u32) {
        if let Some(slot) = self.data.get_mut(index as usize) {
            *slot = DataNode::empty();
            self.free_data.push(index);
        }
    }

    /// Stores a new inner node and returns its id.
    fn alloc_inner(&mut self, node: InnerNode) -> NodeId {
        match self.free_inner.pop() {
            Some(index) => {
                if let Some(slot) = self.inner.get_mut(index as usize) {
                    *slot = node;
                }
                NodeId::inner(index)
            }
            None => {
                self.inner.push(node);
                NodeId::inner((self.inner.len() - 1) as u32)
            }
        }
    }

    /// Releases an inner node and recycles its index.
    fn free_inner_node(&mut self, index: usize) {
        if let Some(slot) = self.inner.get_mut(index) {
            slot.children = Box::default();
            self.free_inner.push(index as u32);
        }
    }

    /// Points `run` of the parent's slots (or the root, when there is no parent) at `node`.
    fn replace_child(&mut self, parent: Option<(usize, std::ops::Range<usize>)>, node: NodeId) {
        match parent {
            Some((parent, run)) => {
                if let Some(children) = self.inner.get_mut(parent).and_then(|inner| inner.children.get_mut(run)) {
                    children.fill(node);
                }
            }
            None => self.root = node,
        }
    }

    /// Links data node `new` into the key-order list right after `existing`.
    fn link_after(&mut self, existing: u32, new: u32) {
        let next = self.data.get(existing as usize).map_or(NO_NODE, |node| node.next);
        if let Some(node) = self.data.get_mut(new as usize) {
            node.prev = existing;
            node.next = next;
        }
        if let Some(node) = self.data.get_mut(existing as usize) {
            node.next = new;
        }
        if let Some(node) = self.data.get_mut(next as usize) {
            node.prev = new;
        }
    }

    /// Links data node `new` into the key-order list right before `existing`.
    fn link_before(&mut self, existing: u32, new: u32) {
        let prev = self.data.get(existing as usize).map_or(NO_NODE, |node| node.prev);
        if let Some(node) = self.data.get_mut(new as usize) {
            node.prev = prev;
            node.next = existing;
        }
        if let Some(node) = self.data.get_mut(existing as usize) {
            node.prev = new;
        }
        if let Some(node) = self.data.get_mut(prev as usize) {
            node.next = new;
        }
    }

    /// Removes data node `index` from the key-order list.
    fn unlink(&mut self, index: u32) {
        let (prev, next) = self.data.get(index as usize).map_or((NO_NODE, NO_NODE), |node| (node.prev, node.next));
        if let Some(node) = self.data.get_mut(prev as usize) {
            node.next = next;
        }
        if let Some(node) = self.data.get_mut(next as usize) {
            node.prev = prev;
        }
    }

    /// The first (`rightmost == false`) or last data node under `node`.
    fn edge_data_node(&self, mut node: NodeId, rightmost: bool) -> u32 {
        while node.is_inner() {
            let children = self.inner.get(node.index()).map(|inner| &inner.children);
            let child = children.and_then(|children| if rightmost { children.last() } else { children.first() });
            match child {
                Some(&child) => node = child,
                None => break,
            }
        }
        node.index() as u32
    }
}

#[cfg(test)]
mod tests;

impl<P: Copy + Default> Alex<P> {
    /// (smallest key, key count) of every data node in key order; for diagnostics.
    #[doc(hidden)]
    pub fn data_node_sizes(&self) -> Vec<(i64, usize)> {
        let mut sizes = Vec::new();
        let mut node = self.edge_data_node(self.root, false);
        for _ in 0..self.data.len() {
            let Some(data) = self.data.get(node as usize) else { break };
            sizes.push((data.min_key().unwrap_or(0), data.num_keys));
            node = data.next;
        }
        sizes
    }
}
