//! Ordered iteration, forward and backward, over any `RangeBounds<i64>`.
//!
//! Data nodes form a doubly linked list in key order, so a range is found with two
//! seeks (its first and last entries) and walked by following occupied bits within a
//! node and list links between nodes. Walks skip empty nodes; each is bounded by the
//! number of data nodes.

use std::ops::{Bound, RangeBounds};

use super::data_node::DataNode;
use super::key::to_unsigned;
use super::model_node::Route;
use super::Alex;

/// A position in the index: (data node arena index, slot).
type Position = (u32, usize);

/// One end of an iteration: a real slot of a data node, with the node at hand so that
/// stepping within a node touches only its bitmap and slots.
#[derive(Debug)]
struct Cursor<'a, P> {
    node: u32,
    data: &'a DataNode<P>,
    slot: usize,
}

impl<'a, P> Clone for Cursor<'a, P> {
    fn clone(&self) -> Self {
        Cursor { node: self.node, data: self.data, slot: self.slot }
    }
}

/// A double-ended iterator over `(key, payload)` pairs in ascending key order.
#[derive(Debug)]
pub struct Iter<'a, P> {
    index: &'a Alex<P>,
    /// Both ends, or `None` once they have met.
    ends: Option<(Cursor<'a, P>, Cursor<'a, P>)>,
}

impl<'a, P: Copy + Default> Iterator for Iter<'a, P> {
    type Item = (i64, P);

    #[inline]
    fn next(&mut self) -> Option<(i64, P)> {
        let (front, back) = self.ends.as_mut()?;
        let slot = front.data.slots.get(front.slot)?;
        let item = (slot.key, slot.payload);
        if front.node == back.node && front.slot == back.slot {
            self.ends = None;
        } else if let Some(next) = front.data.bitmap.next_set(front.slot + 1) {
            front.slot = next;
        } else {
            match self.index.first_from(front.data.next, 0) {
                Some((node, slot)) => *front = self.index.cursor(node, slot)?,
                None => self.ends = None,
            }
        }
        Some(item)
    }
}

impl<'a, P: Copy + Default> DoubleEndedIterator for Iter<'a, P> {
    #[inline]
    fn next_back(&mut self) -> Option<(i64, P)> {
        let (front, back) = self.ends.as_mut()?;
        let slot = back.data.slots.get(back.slot)?;
        let item = (slot.key, slot.payload);
        if front.node == back.node && front.slot == back.slot {
            self.ends = None;
        } else if let Some(previous) = back.slot.checked_sub(1).and_then(|from| back.data.bitmap.prev_set(from)) {
            back.slot = previous;
        } else {
            match self.index.last_from(back.data.prev, usize::MAX) {
                Some((node, slot)) => *back = self.index.cursor(node, slot)?,
                None => self.ends = None,
            }
        }
        Some(item)
    }
}

impl<P: Copy + Default> Alex<P> {
    /// Iterates over the keys in `range`, ascending (`.rev()` for descending).
    pub fn range<R: RangeBounds<i64>>(&self, range: R) -> Iter<'_, P> {
        let front = match range.start_bound() {
            Bound::Included(&key) => Some(key),
            Bound::Excluded(&key) => key.checked_add(1),
            Bound::Unbounded => Some(i64::MIN),
        };
        let back = match range.end_bound() {
            Bound::Included(&key) => Some(key),
            Bound::Excluded(&key) => key.checked_sub(1),
            Bound::Unbounded => Some(i64::MAX),
        };
        let empty = Iter { index: self, ends: None };
        let (Some(low), Some(high)) = (front, back) else { return empty };
        if low > high {
            return empty;
        }
        match (self.seek_at_or_after(low), self.seek_at_or_before(high)) {
            (Some(front), Some(back)) => {
                let keys = (self.entry_at(front), self.entry_at(back));
                match keys {
                    (Some((first, _)), Some((last, _))) if first <= last => Iter {
                        index: self,
                        ends: self.cursor(front.0, front.1).zip(self.cursor(back.0, back.1)),
                    },
                    _ => empty,
                }
            }
            _ => empty,
        }
    }

    /// Iterates over every key, ascending.
    pub fn iter(&self) -> Iter<'_, P> {
        self.range(..)
    }

    /// The smallest key and its payload.
    pub fn first(&self) -> Option<(i64, P)> {
        self.iter().next()
    }

    /// The largest key and its payload.
    pub fn last(&self) -> Option<(i64, P)> {
        self.iter().next_back()
    }

    /// The entry at a position, if it is real.
    fn entry_at(&self, (node, slot): Position) -> Option<(i64, P)> {
        self.data.get(node as usize)?.entry(slot)
    }

    /// The first real slot at or after slot `from` of `node`, following the list.
    fn first_from(&self, mut node: u32, mut from: usize) -> Option<Position> {
        for _ in 0..=self.data.len() {
            let data = self.data.get(node as usize)?;
            if let Some(slot) = data.next_occupied(from) {
                return Some((node, slot));
            }
            node = data.next;
            from = 0;
        }
        None
    }

    /// The last real slot at or before slot `from` of `node`, following the list.
    fn last_from(&self, mut node: u32, mut from: usize) -> Option<Position> {
        for _ in 0..=self.data.len() {
            let data = self.data.get(node as usize)?;
            if let Some(slot) = data.prev_occupied(from) {
                return Some((node, slot));
            }
            node = data.prev;
            from = usize::MAX;
        }
        None
    }

    /// A cursor at a position.
    fn cursor(&self, node: u32, slot: usize) -> Option<Cursor<'_, P>> {
        Some(Cursor { node, data: self.data.get(node as usize)?, slot })
    }

    /// Position of the smallest key `>= key`.
    fn seek_at_or_after(&self, key: i64) -> Option<Position> {
        let unsigned = to_unsigned(key);
        let mut node = self.root;
        while node.is_inner() {
            let inner = self.inner.get(node.index())?;
            match inner.route(unsigned) {
                Route::Slot(slot) => node = *inner.children.get(slot)?,
                Route::Below => return self.first_from(self.edge_data_node(node, false), 0),
                Route::Above => {
                    let last = self.edge_data_node(node, true);
                    return self.first_from(self.data.get(last as usize)?.next, 0);
                }
            }
        }
        let index = node.index() as u32;
        let data = self.data.get(index as usize)?;
        match data.lower_bound(key) {
            Some(slot) => Some((index, slot)),
            None => self.first_from(data.next, 0),
        }
    }

    /// Position of the largest key `<= key`.
    fn seek_at_or_before(&self, key: i64) -> Option<Position> {
        let unsigned = to_unsigned(key);
        let mut node = self.root;
        while node.is_inner() {
            let inner = self.inner.get(node.index())?;
            match inner.route(unsigned) {
                Route::Slot(slot) => node = *inner.children.get(slot)?,
                Route::Above => return self.last_from(self.edge_data_node(node, true), usize::MAX),
                Route::Below => {
                    let first = self.edge_data_node(node, false);
                    return self.last_from(self.data.get(first as usize)?.prev, usize::MAX);
                }
            }
        }
        let index = node.index() as u32;
        let data = self.data.get(index as usize)?;
        match data.upper_bound_occupied(key) {
            Some(slot) => Some((index, slot)),
            None => self.last_from(data.prev, usize::MAX),
        }
    }
}
