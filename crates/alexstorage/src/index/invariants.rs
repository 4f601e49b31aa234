//! The structural invariant checker. Tests run it after every step; it is `O(n)`.
//!
//! It checks, for the whole tree:
//! - every inner node: `fanout_bits >= 1`, domain aligned and inside the key range its
//!   parent routes to it, children as aligned power-of-two runs, no node reachable
//!   twice, nothing reachable on a free list;
//! - every data node: its own layout invariants (sorted keys, bitmap matches slots, gap
//!   copies right, every key found by model prediction plus search), and every key
//!   inside the key range its parent routes to it;
//! - the linked list of data nodes is exactly the in-order sequence of the tree;
//! - keys strictly increase across the whole tree, their count equals `len()`, and
//!   every key is found by a lookup from the root.

use std::collections::HashSet;

use super::data_node::NO_NODE;
use super::key::{from_unsigned, max_offset_for_bits, to_unsigned};
use super::model_node::NodeId;
use super::Alex;

/// A closed range of unsigned keys a node may hold.
#[derive(Clone, Copy)]
struct KeyRange {
    low: u64,
    high: u64,
}

impl<P: Copy + Default + PartialEq + std::fmt::Debug> Alex<P> {
    /// Checks every structural invariant; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![(self.root, KeyRange { low: 0, high: u64::MAX }, 0usize)];
        // Depth-first, children pushed right to left so data nodes pop in key order.
        while let Some((node, range, depth)) = stack.pop() {
            if depth > super::insert::MAX_DEPTH {
                return Err("tree deeper than the 64-bit key space allows".into());
            }
            if !seen.insert(node) {
                return Err(format!("node {node:?} reachable twice"));
            }
            if node.is_inner() {
                self.check_inner(node, range, depth, &mut stack)?;
            } else {
                self.check_data(node.index(), range)?;
                order.push(node.index() as u32);
            }
        }
        for &free in &self.free_data {
            if seen.contains(&NodeId::data(free)) {
                return Err(format!("free data node {free} is reachable"));
            }
        }
        for &free in &self.free_inner {
            if seen.contains(&NodeId::inner(free)) {
                return Err(format!("free inner node {free} is reachable"));
            }
        }
        self.check_list(&order)?;
        self.check_keys()
    }

    fn check_inner(
        &self,
        node: NodeId,
        range: KeyRange,
        depth: usize,
        stack: &mut Vec<(NodeId, KeyRange, usize)>,
    ) -> Result<(), String> {
        let inner = self.inner.get(node.index()).ok_or(format!("inner node {} missing", node.index()))?;
        let fanout_bits = inner.fanout_bits();
        if !inner.children.len().is_power_of_two() || fanout_bits == 0 {
            return Err(format!("inner node {}: {} children", node.index(), inner.children.len()));
        }
        let bits = inner.bits();
        if bits > 64 || inner.lo & max_offset_for_bits(bits) != 0 && bits < 64 {
            return Err(format!("inner node {}: domain {:#x}/{bits} not aligned", node.index(), inner.lo));
        }
        if inner.max_offset != max_offset_for_bits(bits).min(u64::MAX - inner.lo) {
            return Err(format!("inner node {}: stale max_offset", node.index()));
        }
        let domain_high = inner.lo + inner.max_offset;
        if inner.lo < range.low || domain_high > range.high {
            return Err(format!("inner node {}: domain outside its parent's slots", node.index()));
        }
        let mut slot = 0;
        let mut runs = Vec::new();
        while slot < inner.children.len() {
            let run = inner.run_of(slot);
            if run.start != slot || !run.len().is_power_of_two() || run.start % run.len() != 0 {
                return Err(format!("inner node {}: child run {run:?} not aligned", node.index()));
            }
            let child = inner.children[slot];
            let low = inner.slot_start(run.start).unwrap_or(u64::MAX).max(range.low);
            let high = inner
                .slot_start(run.end)
                .map_or(u64::MAX, |end| end.saturating_sub(1))
                .min(domain_high)
                .min(range.high);
            runs.push((child, KeyRange { low, high }, depth + 1));
            slot = run.end;
        }
        stack.extend(runs.into_iter().rev());
        Ok(())
    }

    fn check_data(&self, index: usize, range: KeyRange) -> Result<(), String> {
        let data = self.data.get(index).ok_or(format!("data node {index} missing"))?;
        data.check().map_err(|error| format!("data node {index}: {error}"))?;
        for (key, bound) in [(data.min_key(), "below"), (data.max_key(), "above")] {
            if let Some(key) = key {
                let unsigned = to_unsigned(key);
                if unsigned < range.low || unsigned > range.high {
                    return Err(format!(
                        "data node {index}: key {key} {bound} its range [{}, {}]",
                        from_unsigned(range.low),
                        from_unsigned(range.high)
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_list(&self, order: &[u32]) -> Result<(), String> {
        let mut previous = NO_NODE;
        for &index in order {
            let data = self.data.get(index as usize).ok_or("listed node missing")?;
            if data.prev != previous {
                return Err(format!("data node {index}: prev is {} instead of {previous}", data.prev));
            }
            if let Some(before) = self.data.get(previous as usize) {
                if before.next != index {
                    return Err(format!("data node {previous}: next is {} instead of {index}", before.next));
                }
            }
            previous = index;
        }
        match self.data.get(previous as usize) {
            Some(last) if last.next != NO_NODE => Err(format!("last data node {previous} has a next")),
            _ => Ok(()),
        }
    }

    fn check_keys(&self) -> Result<(), String> {
        let mut count = 0;
        let mut previous: Option<i64> = None;
        for (key, payload) in self.iter() {
            if previous.is_some_and(|previous| previous >= key) {
                return Err(format!("keys out of order: {previous:?} then {key}"));
            }
            if self.get(key) != Some(payload) {
                return Err(format!("key {key} is not found from the root"));
            }
            previous = Some(key);
            count += 1;
        }
        if count != self.len {
            return Err(format!("iteration yields {count} keys, len() is {}", self.len));
        }
        Ok(())
    }
}
