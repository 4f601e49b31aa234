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

/// Slots a forward scan asks the processor to fetch ahead of itself.
const SCAN_PREFETCH_SLOTS: usize = 128;

/// A position in the index: (data node arena index, slot).
type Position = (u32, usize);

/// One end of an iteration: a real slot of a data node, with the node at hand and the
/// rest of the slot's bitmap word in a register, so that stepping within a node is a
/// few bit operations.
#[derive(Debug)]
struct Cursor<'a, P> {
    node: u32,
    data: &'a DataNode<P>,
    slot: usize,
    /// For a front cursor, the set bits of the slot's word above it; for a back
    /// cursor, those below it.
    rest: u64,
}

impl<'a, P> Clone for Cursor<'a, P> {
    fn clone(&self) -> Self {
        Cursor { node: self.node, data: self.data, slot: self.slot, rest: self.rest }
    }
}

impl<'a, P: Copy + Default> Cursor<'a, P> {
    fn front(node: u32, data: &'a DataNode<P>, slot: usize) -> Self {
        data.prefetch_slots(slot, SCAN_PREFETCH_SLOTS);
        let word = data.bitmap.word(slot / 64).unwrap_or(0);
        let shift = slot % 64;
        let rest = if shift == 63 { 0 } else { word & (u64::MAX << (shift + 1)) };
        Cursor { node, data, slot, rest }
    }

    fn back(node: u32, data: &'a DataNode<P>, slot: usize) -> Self {
        let word = data.bitmap.word(slot / 64).unwrap_or(0);
        let rest = word & ((1u64 << (slot % 64)) - 1);
        Cursor { node, data, slot, rest }
    }

    /// Moves to the next real slot of the same node; false at the node's end.
    #[inline]
    fn step_forward(&mut self) -> bool {
        let mut base = self.slot & !63;
        for _ in 0..self.data.bitmap.len().div_ceil(64) + 1 {
            if self.rest != 0 {
                self.slot = base + self.rest.trailing_zeros() as usize;
                self.rest &= self.rest - 1;
                return true;
            }
            base += 64;
            match self.data.bitmap.word(base / 64) {
                Some(word) => {
                    self.rest = word;
                    self.data.prefetch_slots(base + SCAN_PREFETCH_SLOTS - 64, 64);
                }
                None => return false,
            }
        }
        false
    }

    /// Moves to the previous real slot of the same node; false at the node's start.
    #[inline]
    fn step_backward(&mut self) -> bool {
        let mut base = self.slot & !63;
        for _ in 0..self.data.bitmap.len().div_ceil(64) + 1 {
            if self.rest != 0 {
                let bit = 63 - self.rest.leading_zeros() as usize;
                self.slot = base + bit;
                self.rest &= !(1u64 << bit);
                return true;
            }
            let Some(previous) = base.checked_sub(64) else { return false };
            base = previous;
            match self.data.bitmap.word(base / 64) {
                Some(word) => self.rest = word,
                None => return false,
            }
        }
        false
    }
}

/// A double-ended iterator over `(key, payload)` pairs in ascending key order.
///
/// Each end is found lazily, on its first use, so a forward scan never pays for
/// finding the range's last key. The two ends share the bounds of what remains
/// (`low..=high`), narrowed past every key yielded, so they can never cross.
#[derive(Debug)]
pub struct Iter<'a, P> {
    index: &'a Alex<P>,
    /// Smallest key still to yield.
    low: i64,
    /// Largest key still to yield.
    high: i64,
    front: End<'a, P>,
    back: End<'a, P>,
}

/// The state of one end of an [`Iter`].
#[derive(Debug)]
enum End<'a, P> {
    /// Not sought yet.
    Unsought,
    /// At a real slot.
    At(Cursor<'a, P>),
    /// Nothing is left on this side.
    Finished,
}

impl<'a, P: Copy + Default> Iter<'a, P> {
    fn finish(&mut self) {
        self.front = End::Finished;
        self.back = End::Finished;
    }
}

impl<'a, P: Copy + Default> Iterator for Iter<'a, P> {
    type Item = (i64, P);

    #[inline]
    fn next(&mut self) -> Option<(i64, P)> {
        if let End::Unsought = self.front {
            self.front = self.index.end_at(self.index.seek_at_or_after(self.low), Cursor::front);
        }
        let End::At(front) = &mut self.front else { return None };
        let slot = front.data.slots.get(front.slot)?;
        let item = (slot.key, slot.payload);
        if item.0 > self.high || item.0 < self.low {
            self.finish();
            return None;
        }
        match item.0.checked_add(1) {
            Some(low) => self.low = low,
            None => self.finish(),
        }
        if let End::At(front) = &mut self.front {
            if !front.step_forward() {
                self.front = self.index.end_at(self.index.first_from(front.data.next, 0), Cursor::front);
            }
        }
        Some(item)
    }
}

impl<'a, P: Copy + Default> DoubleEndedIterator for Iter<'a, P> {
    #[inline]
    fn next_back(&mut self) -> Option<(i64, P)> {
        if let End::Unsought = self.back {
            self.back = self.index.end_at(self.index.seek_at_or_before(self.high), Cursor::back);
        }
        let End::At(back) = &mut self.back else { return None };
        let slot = back.data.slots.get(back.slot)?;
        let item = (slot.key, slot.payload);
        if item.0 > self.high || item.0 < self.low {
            self.finish();
            return None;
        }
        match item.0.checked_sub(1) {
            Some(high) => self.high = high,
            None => self.finish(),
        }
        if let End::At(back) = &mut self.back {
            if !back.step_backward() {
                self.back = self.index.end_at(self.index.last_from(back.data.prev, usize::MAX), Cursor::back);
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
        let (Some(low), Some(high)) = (front, back) else {
            return Iter { index: self, low: 0, high: -1, front: End::Finished, back: End::Finished };
        };
        if low > high {
            return Iter { index: self, low, high, front: End::Finished, back: End::Finished };
        }
        Iter { index: self, low, high, front: End::Unsought, back: End::Unsought }
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

    /// An iteration end at `position` (a cursor made by `cursor`), or finished.
    fn end_at<'a>(
        &'a self,
        position: Option<Position>,
        cursor: fn(u32, &'a DataNode<P>, usize) -> Cursor<'a, P>,
    ) -> End<'a, P> {
        match position.and_then(|(node, slot)| Some(cursor(node, self.data.get(node as usize)?, slot))) {
            Some(cursor) => End::At(cursor),
            None => End::Finished,
        }
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
