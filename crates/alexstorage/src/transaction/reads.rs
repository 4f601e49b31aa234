//! What a transaction read: the keys it looked up, and for each range it made, the
//! parts it iterated. The commit check walks exactly these.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::Interval;
use crate::family::FamilyRef;

/// The keys looked up and the ranges read, each with its family's incarnation.
#[derive(Debug, Default)]
pub(super) struct Reads {
    keys: BTreeSet<(u64, i64)>,
    /// The named families read, by incarnation.
    families: BTreeMap<u64, FamilyRef>,
    ranges: Vec<RangeRead>,
    /// The transaction committed or was dropped: its ranges read no further.
    ended: bool,
}

/// One range a transaction made, and how far it was iterated from each end.
#[derive(Debug)]
struct RangeRead {
    /// The incarnation of the family it reads.
    family: u64,
    lo: Bound<i64>,
    hi: Bound<i64>,
    /// Read from `lo` through this key (from the low end).
    front: Option<i64>,
    /// Read from this key through `hi` (from the high end).
    back: Option<i64>,
    /// Iterated to its end: all of `(lo, hi)` was read.
    whole: bool,
}

impl Reads {
    /// `key` of `family` was looked up (found or not).
    pub(super) fn key(&mut self, family: &FamilyRef, key: i64) {
        self.note(family);
        self.keys.insert((family.incarnation, key));
    }

    /// A range over `(lo, hi)` of `family` was made; returns its number for the calls
    /// below.
    pub(super) fn range(&mut self, family: &FamilyRef, lo: Bound<i64>, hi: Bound<i64>) -> usize {
        self.note(family);
        let family = family.incarnation;
        self.ranges.push(RangeRead { family, lo, hi, front: None, back: None, whole: false });
        self.ranges.len() - 1
    }

    /// Range `part` returned `key` from its low end (`back`: its high end).
    pub(super) fn reached(&mut self, part: usize, key: i64, back: bool) {
        if let Some(range) = self.ranges.get_mut(part) {
            if back {
                range.back = Some(range.back.map_or(key, |reached| reached.min(key)));
            } else {
                range.front = Some(range.front.map_or(key, |reached| reached.max(key)));
            }
        }
    }

    /// Range `part` returned its last entry: all of it was read.
    pub(super) fn exhausted(&mut self, part: usize) {
        if let Some(range) = self.ranges.get_mut(part) {
            range.whole = true;
        }
    }

    fn note(&mut self, family: &FamilyRef) {
        if !family.is_default() && !self.families.contains_key(&family.incarnation) {
            self.families.insert(family.incarnation, family.clone());
        }
    }

    /// The named families read, by incarnation.
    pub(super) fn families(&self) -> &BTreeMap<u64, FamilyRef> {
        &self.families
    }

    /// Ends the transaction's reading; returns what it read.
    pub(super) fn end(&mut self) -> Reads {
        let reads = std::mem::take(self);
        self.ended = true;
        reads
    }

    /// Whether the transaction ended.
    pub(super) fn ended(&self) -> bool {
        self.ended
    }

    /// The keys looked up: (family incarnation, key).
    pub(super) fn keys(&self) -> impl Iterator<Item = &(u64, i64)> {
        self.keys.iter()
    }

    /// The intervals of keys the ranges read, each with its family's incarnation.
    pub(super) fn parts(&self) -> Vec<(u64, Interval)> {
        let mut parts = Vec::new();
        for range in &self.ranges {
            if range.whole {
                parts.push((range.family, (range.lo, range.hi)));
                continue;
            }
            if let Some(front) = range.front {
                parts.push((range.family, (range.lo, Bound::Included(front))));
            }
            if let Some(back) = range.back {
                parts.push((range.family, (Bound::Included(back), range.hi)));
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Bound::*;

    #[test]
    fn a_range_counts_as_read_as_far_as_it_was_iterated() {
        let mut reads = Reads::default();
        let default = FamilyRef::default_family();
        let other = FamilyRef { id: 3, incarnation: 4, store: 1, name: "other".into() };
        let untouched = reads.range(default, Included(0), Excluded(100));
        let both_ends = reads.range(default, Unbounded, Unbounded);
        reads.reached(both_ends, 10, false);
        reads.reached(both_ends, 12, false);
        reads.reached(both_ends, 90, true);
        reads.reached(both_ends, 80, true);
        let whole = reads.range(&other, Excluded(5), Included(7));
        reads.reached(whole, 6, false);
        reads.exhausted(whole);
        assert_eq!(
            reads.parts(),
            [(0, (Unbounded, Included(12))), (0, (Included(80), Unbounded)), (4, (Excluded(5), Included(7)))],
            "range {untouched} read nothing"
        );
        reads.key(default, 3);
        reads.key(default, 3);
        reads.key(&other, 3);
        assert_eq!(reads.keys().copied().collect::<Vec<_>>(), [(0, 3), (4, 3)]);
        assert_eq!(reads.families().keys().copied().collect::<Vec<_>>(), [4]);
    }
}
