//! Inner ("model") nodes: route a key to a child by a linear model over a
//! power-of-two array of child slots.
//!
//! # The model
//! An inner node covers an aligned block of the unsigned key space, its *domain*
//! `[lo, lo + 2^bits)` with `lo` a multiple of `2^bits`, and splits it into
//! `2^fanout_bits` equal slots of `2^shift` keys each (`bits = shift + fanout_bits`).
//! Its model is the linear map `slot = (key - lo) / 2^shift`: the same equal-width
//! partition as the paper's inner-node models, with the slope restricted to a power of
//! two so that routing is two integer operations, exact for every `i64`, and stable
//! under the structural changes below (no float boundary can move a stored key to a
//! different child).
//!
//! A child owns an aligned run of `2^k` slots (the paper's duplicated pointers). A child
//! inner node's domain lies inside the slots it owns but may be narrower ("path
//! compression"): a key that routes to the child but lies outside its domain is absent,
//! and inserting one first widens the child's domain ([`super::tree`]).
//!
//! # Invariants (checked by the tree's checker)
//! - `children.len() == 2^fanout_bits`, `fanout_bits >= 1`, `shift + fanout_bits <= 64`;
//! - `lo` is aligned to `2^bits`; each child's run of slots is aligned and contiguous;
//! - every key stored below a slot routes to that slot.

use super::key::max_offset_for_bits;

/// A reference to a node in one of the tree's two arenas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NodeId(u32);

const INNER_TAG: u32 = 1 << 31;

impl NodeId {
    /// A data node at arena index `index`.
    pub(crate) fn data(index: u32) -> Self {
        NodeId(index & !INNER_TAG)
    }

    /// An inner node at arena index `index`.
    pub(crate) fn inner(index: u32) -> Self {
        NodeId(index | INNER_TAG)
    }

    /// Whether this is an inner node.
    #[inline]
    pub(crate) fn is_inner(self) -> bool {
        self.0 & INNER_TAG != 0
    }

    /// The arena index.
    #[inline]
    pub(crate) fn index(self) -> usize {
        (self.0 & !INNER_TAG) as usize
    }
}

/// What routing a key through an inner node found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The key is inside the domain and belongs to this child slot.
    Slot(usize),
    /// The key is below the domain: every key under this node is greater.
    Below,
    /// The key is above the domain: every key under this node is smaller.
    Above,
}

/// An inner node of the tree.
#[derive(Clone, Debug)]
pub(crate) struct InnerNode {
    /// First key (unsigned space) of the domain; aligned to `2^bits`.
    pub(crate) lo: u64,
    /// Largest in-domain offset from `lo`, clipped so that `lo + max_offset` fits a u64.
    pub(crate) max_offset: u64,
    /// log2 of the keys per slot.
    pub(crate) shift: u32,
    /// One entry per slot; a child owning `2^k` slots appears `2^k` times.
    pub(crate) children: Box<[NodeId]>,
}

impl InnerNode {
    /// A node over `[lo, lo + 2^(shift + fanout_bits))` with the given children.
    pub(crate) fn new(lo: u64, shift: u32, children: Box<[NodeId]>) -> Self {
        let bits = shift + children.len().trailing_zeros();
        let max_offset = max_offset_for_bits(bits).min(u64::MAX - lo);
        InnerNode { lo, max_offset, shift, children }
    }

    /// log2 of the number of slots.
    #[inline]
    pub(crate) fn fanout_bits(&self) -> u32 {
        self.children.len().trailing_zeros()
    }

    /// log2 of the domain width.
    #[inline]
    pub(crate) fn bits(&self) -> u32 {
        self.shift + self.fanout_bits()
    }

    /// Routes `key` (unsigned space).
    #[inline]
    pub(crate) fn route(&self, key: u64) -> Route {
        let offset = key.wrapping_sub(self.lo);
        if offset <= self.max_offset {
            // offset < 2^bits, so the slot is < 2^fanout_bits = children.len().
            Route::Slot((offset >> self.shift) as usize)
        } else if key < self.lo {
            Route::Below
        } else {
            Route::Above
        }
    }

    /// First key (unsigned) of slot `slot`; `None` past the end of the key space.
    pub(crate) fn slot_start(&self, slot: usize) -> Option<u64> {
        let offset = (slot as u128) << self.shift;
        u64::try_from(u128::from(self.lo) + offset).ok()
    }

    /// The aligned run of slots owned by the child at `slot`.
    pub(crate) fn run_of(&self, slot: usize) -> std::ops::Range<usize> {
        let child = self.children.get(slot).copied();
        let mut start = slot;
        while start > 0 && self.children.get(start - 1).copied() == child {
            start -= 1;
        }
        let mut end = slot + 1;
        while self.children.get(end).copied() == child && child.is_some() {
            end += 1;
        }
        start..end
    }

    /// Heap and inline bytes.
    pub(crate) fn size_in_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.children.len() * std::mem::size_of::<NodeId>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_exactly_at_the_edges_of_the_key_space() {
        let children: Box<[NodeId]> = (0..4).map(NodeId::data).collect();
        let whole = InnerNode::new(0, 62, children.clone());
        assert_eq!(whole.route(0), Route::Slot(0));
        assert_eq!(whole.route(u64::MAX), Route::Slot(3));
        assert_eq!(whole.route((1 << 62) - 1), Route::Slot(0));
        assert_eq!(whole.route(1 << 62), Route::Slot(1));
        let top = InnerNode::new(u64::MAX - 255, 6, children);
        assert_eq!(top.route(u64::MAX - 256), Route::Below);
        assert_eq!(top.route(u64::MAX), Route::Slot(3));
        assert_eq!(top.slot_start(3), Some(u64::MAX - 63));
    }

    #[test]
    fn domain_bounds() {
        let children: Box<[NodeId]> = (0..2).map(NodeId::data).collect();
        let node = InnerNode::new(1024, 4, children);
        assert_eq!(node.route(1023), Route::Below);
        assert_eq!(node.route(1024 + 32), Route::Above);
        assert_eq!(node.route(1024 + 31), Route::Slot(1));
        assert_eq!(node.slot_start(1), Some(1040));
        assert_eq!(node.run_of(0), 0..1);
    }

    #[test]
    fn node_ids_tag_their_arena() {
        assert!(NodeId::inner(5).is_inner());
        assert!(!NodeId::data(5).is_inner());
        assert_eq!(NodeId::inner(5).index(), 5);
    }
}
