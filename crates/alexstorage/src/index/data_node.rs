//! Data nodes: gapped arrays of (key, payload) slots placed by a linear model.
//!
//! # Layout
//! `slots` holds `capacity` entries; `bitmap` marks which hold real keys. A gap holds a
//! copy of the key of the next real slot to its right, and gaps after the last real
//! key hold `i64::MAX`, so the key column is non-decreasing and a search needs no
//! bitmap: for any key other than `i64::MAX`, the last slot whose key equals it is the
//! real one (gap copies of a key stand before it). `i64::MAX` is the one value that a
//! trailing gap and a real key can share; it is looked up through the bitmap.
//!
//! # Invariants (checked by [`DataNode::check`])
//! - real keys strictly increase in slot order;
//! - every gap holds the key of the next real slot to its right, or `i64::MAX`;
//! - `num_keys` equals the number of set bits, and is at most the capacity.

use super::bitmap::Bitmap;
use super::cost::{
    capacity_for, placement_slot, PlacementAccumulator, PlacementCost, DEVIATION_FACTOR, DEVIATION_MIN_INSERTS,
    DEVIATION_SLACK, MAX_DENSITY, SEARCH_PROBE_WEIGHT, SHIFT_WEIGHT,
};
use super::key::to_unsigned;
use super::model::LinearModel;

/// One slot of a gapped array.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot<P> {
    /// The key, or for a gap the key of the next real slot.
    pub(crate) key: i64,
    /// The payload; meaningless in a gap.
    pub(crate) payload: P,
}

/// Shifts of at most this many slots are done with a plain loop.
const SHORT_SHIFT: usize = 8;

/// "No node" in the data-node links.
pub(crate) const NO_NODE: u32 = u32::MAX;

/// What an insert into a data node did.
pub(crate) enum InsertOutcome<P> {
    /// The key was present; its payload was replaced and the old one is returned.
    Replaced(P),
    /// The key was added.
    Inserted,
    /// The key is absent and the node has no room: expand or split it first.
    Full,
}

/// Costs observed by inserts since the node was built.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Observed {
    inserts: u64,
    probes: u64,
    shifts: u64,
}

/// A gapped-array leaf of the index.
#[derive(Debug)]
pub(crate) struct DataNode<P> {
    pub(crate) model: LinearModel,
    pub(crate) slots: Box<[Slot<P>]>,
    pub(crate) bitmap: Bitmap,
    pub(crate) num_keys: usize,
    /// Previous data node in key order (arena index), or [`NO_NODE`].
    pub(crate) prev: u32,
    /// Next data node in key order (arena index), or [`NO_NODE`].
    pub(crate) next: u32,
    /// Costs the placement at build time predicts.
    pub(crate) expected: PlacementCost,
    pub(crate) observed: Observed,
}

impl<P: Copy + Default> DataNode<P> {
    /// An empty node with no slots.
    pub(crate) fn empty() -> Self {
        DataNode {
            model: LinearModel::default(),
            slots: Box::default(),
            bitmap: Bitmap::new(0),
            num_keys: 0,
            prev: NO_NODE,
            next: NO_NODE,
            expected: PlacementCost::default(),
            observed: Observed::default(),
        }
    }

    /// Builds a node from `entries` (strictly ascending keys) at `density`.
    pub(crate) fn build(entries: &[Slot<P>], density: f64) -> Self {
        Self::build_with_capacity(entries, capacity_for(entries.len(), density))
    }

    /// Builds a node from `entries` (strictly ascending keys) with `capacity` slots,
    /// which must exceed the number of entries (it is raised to that if not).
    pub(crate) fn build_with_capacity(entries: &[Slot<P>], capacity: usize) -> Self {
        Self::build_from(entries.iter().copied(), entries.len(), capacity, None)
    }

    /// This node rebuilt with `capacity` slots. Unless `retrain`, the model is the old
    /// one stretched to the new capacity, which saves the fit when the keys' shape has
    /// not changed.
    pub(crate) fn rebuilt(&self, capacity: usize, retrain: bool) -> Self {
        let model = (!retrain && self.capacity() > 0).then(|| {
            let stretch = capacity as f64 / self.capacity() as f64;
            LinearModel {
                slope: self.model.slope * stretch,
                intercept: self.model.intercept * stretch,
                anchor: self.model.anchor,
            }
        });
        let mut node = Self::build_from(self.occupied(), self.num_keys, capacity, model);
        node.prev = self.prev;
        node.next = self.next;
        node
    }

    /// Builds a node from `count` entries with strictly ascending keys, placing each at
    /// its predicted slot or the next free one.
    fn build_from<I>(entries: I, count: usize, capacity: usize, model: Option<LinearModel>) -> Self
    where
        I: Iterator<Item = Slot<P>> + Clone,
    {
        if capacity == 0 {
            return Self::empty();
        }
        let capacity = capacity.max(count + 1);
        let model = model.unwrap_or_else(|| LinearModel::fit(entries.clone().map(|entry| entry.key), count, capacity));
        let mut slots: Vec<Slot<P>> = Vec::with_capacity(capacity);
        let mut words = vec![0u64; capacity.div_ceil(64)];
        let mut accumulator = PlacementAccumulator::default();
        for (index, entry) in entries.take(count).enumerate() {
            let predicted = model.predict_slot(to_unsigned(entry.key), capacity);
            let slot = placement_slot(predicted, slots.len(), capacity, count - index - 1);
            // Gaps before a key hold a copy of it.
            let gap = Slot { key: entry.key, payload: P::default() };
            slots.extend(std::iter::repeat_n(gap, slot - slots.len()));
            slots.push(entry);
            if let Some(word) = words.get_mut(slot / 64) {
                *word |= 1 << (slot % 64);
            }
            accumulator.record(predicted, slot);
        }
        let num_keys = count.min(slots.len());
        slots.resize(capacity, Slot { key: i64::MAX, payload: P::default() });
        DataNode {
            model,
            slots: slots.into_boxed_slice(),
            bitmap: Bitmap::from_words(words.into_boxed_slice(), capacity),
            num_keys,
            prev: NO_NODE,
            next: NO_NODE,
            expected: accumulator.finish(),
            observed: Observed::default(),
        }
    }

    /// The real entries in key order.
    pub(crate) fn occupied(&self) -> impl Iterator<Item = Slot<P>> + Clone + '_ {
        self.bitmap.ones().filter_map(|index| self.slots.get(index).copied())
    }

    /// Hints the processor to fetch slots `from .. from + count` (clipped to the node):
    /// a scan streams through slots, and a prefetch at its start saves the demand misses
    /// the hardware prefetcher takes a few lines to cover.
    #[inline]
    pub(crate) fn prefetch_slots(&self, from: usize, count: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let end = from.saturating_add(count).min(self.slots.len());
            let step = (64 / std::mem::size_of::<Slot<P>>().max(1)).max(1);
            let mut slot = from;
            while slot < end {
                if let Some(entry) = self.slots.get(slot) {
                    // SAFETY: a prefetch never faults and has no architectural effect;
                    // the pointer comes from a live reference in any case.
                    unsafe {
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                            (entry as *const Slot<P>).cast::<i8>(),
                        );
                    }
                }
                slot += step;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (from, count);
    }

    /// Number of slots.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many keys the node holds before it counts as full.
    pub(crate) fn max_keys(&self) -> usize {
        ((self.capacity() as f64 * MAX_DENSITY) as usize).min(self.capacity().saturating_sub(1))
    }

    /// Heap and inline bytes of this node.
    pub(crate) fn size_in_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.capacity() * std::mem::size_of::<Slot<P>>() + self.bitmap.size_in_bytes()
    }

    /// The real entries in key order, copied out.
    pub(crate) fn entries(&self) -> Vec<Slot<P>> {
        let mut entries = Vec::with_capacity(self.num_keys);
        entries.extend(self.occupied());
        entries
    }

    /// The key and payload at slot `index`, if it is real.
    #[cfg(test)]
    pub(crate) fn entry(&self, index: usize) -> Option<(i64, P)> {
        if self.bitmap.get(index) {
            self.slots.get(index).map(|slot| (slot.key, slot.payload))
        } else {
            None
        }
    }

    /// First real slot at or after `from`.
    #[inline]
    pub(crate) fn next_occupied(&self, from: usize) -> Option<usize> {
        self.bitmap.next_set(from)
    }

    /// Last real slot at or before `from`.
    #[inline]
    pub(crate) fn prev_occupied(&self, from: usize) -> Option<usize> {
        self.bitmap.prev_set(from)
    }

    /// Smallest real key.
    pub(crate) fn min_key(&self) -> Option<i64> {
        self.bitmap.next_set(0).and_then(|index| self.slots.get(index)).map(|slot| slot.key)
    }

    /// Largest real key.
    pub(crate) fn max_key(&self) -> Option<i64> {
        self.bitmap.prev_set(usize::MAX).and_then(|index| self.slots.get(index)).map(|slot| slot.key)
    }

    /// First slot whose key column value is greater than `key`, searching exponentially
    /// from the model's prediction. Returns the slot and the probes it took.
    #[inline]
    fn upper_bound(&self, key: i64) -> (usize, u64) {
        let capacity = self.capacity();
        if capacity == 0 {
            return (0, 0);
        }
        let start = self.model.predict_slot(to_unsigned(key), capacity);
        exponential_upper_bound(&self.slots, key, start)
    }

    /// The slot holding `key`, if present.
    #[inline]
    pub(crate) fn find(&self, key: i64) -> Option<usize> {
        if key == i64::MAX {
            let last = self.bitmap.prev_set(usize::MAX)?;
            return (self.slots.get(last)?.key == key).then_some(last);
        }
        let (bound, _) = self.upper_bound(key);
        let candidate = bound.checked_sub(1)?;
        // The last slot holding a key other than i64::MAX is real (see the module docs).
        (self.slots.get(candidate)?.key == key).then_some(candidate)
    }

    /// Hints the processor to fetch the slot the model predicts for `key`, where the
    /// search for it starts (a batch of lookups fetches every key's first, then
    /// searches: the misses overlap).
    #[inline]
    pub(crate) fn prefetch_prediction(&self, key: i64) {
        let capacity = self.capacity();
        if capacity > 0 {
            // Slots on both sides of the prediction (an exponential search looks both
            // ways): two lines, wherever the prediction falls in its line.
            let predicted = self.model.predict_slot(to_unsigned(key), capacity);
            self.prefetch_slots(predicted.saturating_sub(2), 6);
        }
    }

    /// The payload of `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: i64) -> Option<P> {
        self.find(key).and_then(|slot| self.slots.get(slot)).map(|slot| slot.payload)
    }

    /// First real slot whose key is `>= key`.
    pub(crate) fn lower_bound(&self, key: i64) -> Option<usize> {
        if key == i64::MIN {
            return self.bitmap.next_set(0);
        }
        // Everything before the upper bound of key - 1 is < key.
        let (bound, _) = self.upper_bound(key - 1);
        self.bitmap.next_set(bound)
    }

    /// Last real slot whose key is `<= key`.
    pub(crate) fn upper_bound_occupied(&self, key: i64) -> Option<usize> {
        if key == i64::MAX {
            return self.bitmap.prev_set(usize::MAX);
        }
        let (bound, _) = self.upper_bound(key);
        self.bitmap.prev_set(bound.checked_sub(1)?)
    }

    /// Inserts or replaces `key`.
    pub(crate) fn insert(&mut self, key: i64, payload: P) -> InsertOutcome<P> {
        let capacity = self.capacity();
        let predicted = self.model.predict_slot(to_unsigned(key), capacity);
        // The slot search below misses the cache; fetch the bitmap word the insert will
        // need alongside it rather than after it.
        self.bitmap.prefetch(predicted);
        let (bound, probes) = if key == i64::MAX {
            match self.bitmap.prev_set(usize::MAX) {
                Some(last) => (last + 1, 1),
                None => (0, 1),
            }
        } else if capacity == 0 {
            (0, 0)
        } else {
            exponential_upper_bound(&self.slots, key, predicted)
        };
        if let Some(previous) = bound.checked_sub(1).and_then(|index| self.slots.get_mut(index)) {
            if previous.key == key {
                // For i64::MAX, `previous` is the last real slot, so this is real too.
                let old = previous.payload;
                previous.payload = payload;
                return InsertOutcome::Replaced(old);
            }
        }
        if self.num_keys >= self.max_keys() {
            return InsertOutcome::Full;
        }
        let shifts = self.insert_at(bound, predicted, key, payload);
        self.num_keys += 1;
        self.observed.inserts += 1;
        self.observed.probes += probes;
        self.observed.shifts += shifts as u64;
        InsertOutcome::Inserted
    }

    /// Places a new key whose predecessor is before `bound` and whose successor is at
    /// or after it. Returns the slots shifted.
    fn insert_at(&mut self, bound: usize, predicted: usize, key: i64, payload: P) -> usize {
        let capacity = self.capacity();
        let successor = self.bitmap.next_set(bound).unwrap_or(capacity);
        if bound < successor {
            // A run of gaps [bound, successor): place as near the prediction as it allows.
            let slot = predicted.clamp(bound, successor - 1);
            for gap in &mut self.slots[bound..slot] {
                gap.key = key;
            }
            self.occupy(slot, key, payload);
            return 0;
        }
        // `bound` is occupied: shift toward the nearer gap.
        let right = self.bitmap.next_clear(bound);
        let left = bound.checked_sub(1).and_then(|from| self.bitmap.prev_clear(from));
        match (left, right) {
            (Some(left), Some(right)) if bound - left <= right - bound => self.shift_left(left, bound, key, payload),
            (_, Some(right)) => self.shift_right(bound, right, key, payload),
            (Some(left), None) => self.shift_left(left, bound, key, payload),
            // Unreachable while num_keys < capacity, which max_keys() guarantees.
            (None, None) => 0,
        }
    }

    /// Moves `[bound, gap)` one slot right and puts the key at `bound`.
    fn shift_right(&mut self, bound: usize, gap: usize, key: i64, payload: P) -> usize {
        if gap - bound <= SHORT_SHIFT {
            // Most shifts move a slot or two: a loop beats a call to memmove.
            for index in (bound..gap).rev() {
                self.slots[index + 1] = self.slots[index];
            }
        } else {
            self.slots.copy_within(bound..gap, bound + 1);
        }
        self.bitmap.set(gap);
        self.occupy(bound, key, payload);
        gap - bound
    }

    /// Moves `(gap, bound)` one slot left and puts the key at `bound - 1`.
    fn shift_left(&mut self, gap: usize, bound: usize, key: i64, payload: P) -> usize {
        if bound - gap <= SHORT_SHIFT {
            for index in gap + 1..bound {
                self.slots[index - 1] = self.slots[index];
            }
        } else {
            self.slots.copy_within(gap + 1..bound, gap);
        }
        self.bitmap.set(gap);
        self.occupy(bound - 1, key, payload);
        bound - 1 - gap
    }

    #[inline]
    fn occupy(&mut self, slot: usize, key: i64, payload: P) {
        if let Some(entry) = self.slots.get_mut(slot) {
            *entry = Slot { key, payload };
            self.bitmap.set(slot);
        }
    }

    /// Removes `key`, returning its payload.
    pub(crate) fn remove(&mut self, key: i64) -> Option<P> {
        let slot = self.find(key)?;
        let payload = self.slots.get(slot)?.payload;
        self.bitmap.clear(slot);
        self.num_keys -= 1;
        // The freed slot and the gaps before it now copy the next key to the right.
        let fill = self.slots.get(slot + 1).map_or(i64::MAX, |next| next.key);
        let first_gap = self.bitmap.prev_set(slot).map_or(0, |previous| previous + 1);
        for gap in &mut self.slots[first_gap..=slot] {
            gap.key = fill;
        }
        Some(payload)
    }

    /// Replaces the payload of `key` in place; false when absent.
    pub(crate) fn update(&mut self, key: i64, payload: P) -> bool {
        match self.find(key).and_then(|slot| self.slots.get_mut(slot)) {
            Some(entry) => {
                entry.payload = payload;
                true
            }
            None => false,
        }
    }

    /// Whether the costs observed since the build exceed what the build expected.
    pub(crate) fn cost_deviates(&self) -> bool {
        let observed = self.observed;
        if observed.inserts < DEVIATION_MIN_INSERTS {
            return false;
        }
        let inserts = observed.inserts as f64;
        let empirical =
            SEARCH_PROBE_WEIGHT * observed.probes as f64 / inserts + SHIFT_WEIGHT * observed.shifts as f64 / inserts;
        empirical > self.expected.total() * DEVIATION_FACTOR + DEVIATION_SLACK
    }

    /// Checks the layout invariants of the module docs.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.bitmap.len() != self.capacity() {
            return Err(format!("bitmap has {} bits for {} slots", self.bitmap.len(), self.capacity()));
        }
        if self.bitmap.count_ones() != self.num_keys {
            return Err(format!("bitmap counts {} keys, node says {}", self.bitmap.count_ones(), self.num_keys));
        }
        let mut expected_fill = i64::MAX;
        let mut previous_real: Option<i64> = None;
        // Walk right to left: each gap must copy the nearest real key to its right.
        for index in (0..self.capacity()).rev() {
            let slot = &self.slots[index];
            if self.bitmap.get(index) {
                expected_fill = slot.key;
                if let Some(next) = previous_real {
                    if slot.key >= next {
                        return Err(format!("slot {index}: key {} not below next key {next}", slot.key));
                    }
                }
                previous_real = Some(slot.key);
            } else if slot.key != expected_fill {
                return Err(format!("gap {index} holds {} instead of {expected_fill}", slot.key));
            }
        }
        for (index, entry) in self.entries().iter().enumerate() {
            if self.find(entry.key).is_none() {
                return Err(format!("key {} (#{index}) is not found by search", entry.key));
            }
        }
        Ok(())
    }
}

/// First index in `slots` whose key is greater than `key`, searching exponentially
/// outward from `start` (which must be in range). Returns the index and the probes.
#[inline]
fn exponential_upper_bound<P>(slots: &[Slot<P>], key: i64, start: usize) -> (usize, u64) {
    let count = slots.len();
    let start = start.min(count.saturating_sub(1));
    let mut probes = 1;
    let greater = |index: usize| slots.get(index).is_none_or(|slot| slot.key > key);
    let (low, high) = if greater(start) {
        // The answer is in [0, start].
        let mut step = 1;
        while step <= start && greater(start - step) {
            step *= 2;
            probes += 1;
        }
        (if step > start { 0 } else { start - step + 1 }, start - step / 2)
    } else {
        // The answer is in (start, count].
        let mut step = 1;
        while start + step < count && !greater(start + step) {
            step *= 2;
            probes += 1;
        }
        (start + step / 2 + 1, (start + step).min(count))
    };
    let window = slots.get(low..high).unwrap_or(&[]);
    probes += u64::from(super::key::bit_length(window.len() as u64));
    (low + window.partition_point(|slot| slot.key <= key), probes)
}

#[cfg(test)]
mod tests {
    use super::super::cost::INIT_DENSITY;
    use super::*;

    fn node(keys: &[i64]) -> DataNode<u64> {
        let entries: Vec<Slot<u64>> = keys.iter().map(|&key| Slot { key, payload: key as u64 }).collect();
        DataNode::build(&entries, INIT_DENSITY)
    }

    #[test]
    fn build_find_and_bounds() {
        let keys: Vec<i64> = (0..500).map(|i| i * 3 - 700).collect();
        let data = node(&keys);
        data.check().unwrap();
        for &key in &keys {
            assert_eq!(data.get(key), Some(key as u64));
            assert_eq!(data.get(key + 1), None);
        }
        assert_eq!(data.lower_bound(-701).and_then(|slot| data.entry(slot)).map(|entry| entry.0), Some(-700));
        assert_eq!(data.lower_bound(-699).and_then(|slot| data.entry(slot)).map(|entry| entry.0), Some(-697));
        assert_eq!(data.upper_bound_occupied(-698).and_then(|slot| data.entry(slot)).map(|entry| entry.0), Some(-700));
        assert_eq!(data.upper_bound_occupied(-701), None);
        assert_eq!(data.lower_bound(i64::MAX), None);
    }

    #[test]
    fn inserts_shift_and_fill_until_full() {
        let mut data = node(&[10, 20, 30]);
        let mut model = std::collections::BTreeMap::new();
        for key in [10, 20, 30] {
            model.insert(key, key as u64);
        }
        let mut key = 11;
        loop {
            match data.insert(key, key as u64) {
                InsertOutcome::Inserted => {
                    model.insert(key, key as u64);
                }
                InsertOutcome::Full => break,
                InsertOutcome::Replaced(_) => panic!("fresh key replaced"),
            }
            data.check().unwrap();
            key += 1;
        }
        assert_eq!(data.num_keys, data.max_keys());
        let entries: Vec<(i64, u64)> = data.entries().iter().map(|slot| (slot.key, slot.payload)).collect();
        assert_eq!(entries, model.into_iter().collect::<Vec<_>>());
        assert!(matches!(data.insert(10, 99), InsertOutcome::Replaced(10)));
        assert_eq!(data.get(10), Some(99));
    }

    #[test]
    fn extreme_keys_and_removal() {
        let mut data = node(&[i64::MIN, -5, 0, i64::MAX]);
        data.check().unwrap();
        assert_eq!(data.get(i64::MAX), Some(i64::MAX as u64));
        assert_eq!(data.remove(i64::MAX), Some(i64::MAX as u64));
        data.check().unwrap();
        assert_eq!(data.get(i64::MAX), None);
        assert!(matches!(data.insert(i64::MAX, 7), InsertOutcome::Inserted));
        assert_eq!(data.get(i64::MAX), Some(7));
        assert_eq!(data.remove(-5), Some(-5i64 as u64));
        assert_eq!(data.remove(-5), None);
        data.check().unwrap();
        assert_eq!(data.get(i64::MIN), Some(i64::MIN as u64));
        assert_eq!(data.min_key(), Some(i64::MIN));
        assert_eq!(data.max_key(), Some(i64::MAX));
    }

    #[test]
    fn empty_node() {
        let mut data: DataNode<u64> = DataNode::empty();
        assert_eq!(data.get(0), None);
        assert_eq!(data.lower_bound(0), None);
        assert!(matches!(data.insert(1, 1), InsertOutcome::Full));
        data.check().unwrap();
    }

    #[test]
    fn exponential_search_matches_partition_point() {
        let slots: Vec<Slot<u64>> =
            [1, 1, 3, 5, 5, 5, 9, 12, 12, 40].iter().map(|&key| Slot { key, payload: 0 }).collect();
        for key in 0..45 {
            let expected = slots.partition_point(|slot| slot.key <= key);
            for start in 0..slots.len() {
                assert_eq!(exponential_upper_bound(&slots, key, start).0, expected, "key {key} start {start}");
            }
        }
    }
}
