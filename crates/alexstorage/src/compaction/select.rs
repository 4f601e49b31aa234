//! Which segments an incremental compaction rewrites: those whose space pays most to
//! reclaim, cheapest first (the greedy cleaning of log-structured file systems).
//!
//! A segment's *utilization* is the share of its record bytes that are live (the
//! index points at them). Rewriting a segment copies its live bytes and gives back
//! the rest, so the lower the utilization, the cheaper each byte reclaimed. Log
//! segments can only be taken oldest first, as a prefix of the log: recovery checks
//! that the log's sequence numbers run on without a gap from the manifest's on, so
//! the log may lose segments only at its start. The segment being appended to is
//! never taken. Compacted segments can be taken in any order.
//!
//! Segments are taken, the cheapest available first, until the garbage left is at
//! most half the compaction threshold, and never one more than [`MAX_UTILIZATION`]
//! live. If that cannot get the garbage down (most of it in the segment being
//! appended to, or spread thinly over well-used segments), the caller runs a full
//! compaction instead.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use crate::engine::{record_len, Engine};
use crate::family::FamilyRef;
use crate::log::format::{Decoded, RecordKind};
use crate::log::format::{RecordHeader, SEGMENT_HEADER_SIZE};
use crate::log::segment::Segment;
use crate::log::Location;

/// Keys read from the index per shared-lock section.
const READ_CHUNK: usize = 4096;
/// A segment more live than this is never rewritten by an incremental compaction: it
/// would copy four bytes for each one given back.
pub(super) const MAX_UTILIZATION: f64 = 0.8;

/// A segment that may be taken, as it was when the selection began.
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    pub id: u32,
    /// Bytes of its records (a dictionary not counted).
    pub bytes: u64,
    /// Bytes of its records the index points at.
    pub live: u64,
    pub compacted: bool,
}

impl Candidate {
    fn utilization(&self) -> f64 {
        if self.bytes == 0 {
            0.0
        } else {
            self.live as f64 / self.bytes as f64
        }
    }

    fn garbage(&self) -> u64 {
        self.bytes.saturating_sub(self.live)
    }
}

/// The segments every candidate could be, with their record bytes: every segment but
/// the one being appended to.
pub(super) fn candidates(segments: &[Arc<Segment>], active: Option<u32>) -> Vec<Candidate> {
    segments
        .iter()
        .filter(|segment| Some(segment.id()) != active)
        .map(|segment| Candidate {
            id: segment.id(),
            bytes: (segment.published() - SEGMENT_HEADER_SIZE as u64).saturating_sub(segment.dictionary_bytes()),
            live: 0,
            compacted: segment.is_compacted(),
        })
        .collect()
}

/// Fills in each candidate's live bytes: the index is walked in key order, a chunk
/// at a time under the shared lock, and each record's length read outside it.
/// Writes meanwhile may make a count a little high (a key counted live in its old
/// segment just before it was overwritten); the selection is a heuristic and stays
/// safe whatever the counts.
pub(super) fn count_live(engine: &Engine, segments: &[Arc<Segment>], candidates: &mut [Candidate]) {
    let by_id: HashMap<u32, &Arc<Segment>> = segments.iter().map(|segment| (segment.id(), segment)).collect();
    let mut live: HashMap<u32, u64> = HashMap::new();
    let families: Vec<FamilyRef> = {
        let view = engine.read_view();
        std::iter::once(FamilyRef::default_family().clone()).chain(view.families.refs()).collect()
    };
    for family in &families {
        let mut lo = Bound::Unbounded;
        loop {
            let chunk: Vec<(i64, u64)> = {
                let view = engine.read_view();
                let Some(index) = view.index_of(family) else { break };
                index.range((lo, Bound::Unbounded)).take(READ_CHUNK).collect()
            };
            let Some(&(last, _)) = chunk.last() else { break };
            lo = Bound::Excluded(last);
            for (_, at) in chunk {
                let location = Location(at);
                let Some(segment) = by_id.get(&location.segment()) else { continue };
                *live.entry(location.segment()).or_default() += record_len(segment, location).unwrap_or(0);
            }
        }
    }
    for candidate in candidates {
        candidate.live = live.get(&candidate.id).copied().unwrap_or(0);
    }
}

/// What [`choose`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Choice {
    /// The garbage is at most the target already.
    Nothing,
    /// Rewriting these segments (holding `garbage` bytes of it) brings it there.
    Victims { victims: HashSet<u32>, garbage: u64 },
    /// No choice of segments brings it there.
    Impossible,
}

/// The segments to rewrite to bring `garbage` down to at most `target`: the log's
/// oldest segments and compacted ones, cheapest first. `candidates` must be
/// ascending by id.
pub(super) fn choose(candidates: &[Candidate], garbage: u64, target: u64) -> Choice {
    let Some(needed) = garbage.checked_sub(target).filter(|&needed| needed > 0) else { return Choice::Nothing };
    let log: Vec<&Candidate> = candidates.iter().filter(|candidate| !candidate.compacted).collect();
    let mut compacted: Vec<&Candidate> = candidates.iter().filter(|candidate| candidate.compacted).collect();
    compacted.sort_by(|a, b| a.utilization().total_cmp(&b.utilization()));
    let (mut next_log, mut next_compacted) = (0, 0);
    let mut chosen = HashSet::new();
    let mut reclaimed = 0u64;
    while reclaimed < needed {
        let from_log = log.get(next_log).copied();
        let from_compacted = compacted.get(next_compacted).copied();
        let take = match (from_log, from_compacted) {
            (Some(log), Some(compacted)) if log.utilization() <= compacted.utilization() => log,
            (Some(_), Some(compacted)) => compacted,
            (Some(log), None) => log,
            (None, Some(compacted)) => compacted,
            (None, None) => return Choice::Impossible,
        };
        if take.utilization() > MAX_UTILIZATION {
            return Choice::Impossible;
        }
        if take.compacted {
            next_compacted += 1;
        } else {
            next_log += 1;
        }
        chosen.insert(take.id);
        reclaimed += take.garbage();
    }
    Choice::Victims { victims: chosen, garbage: reclaimed }
}

/// The sequence number of the first write (put, delete or batch) in `segment`, a log
/// segment; `None` if it holds none.
pub(super) fn first_write_sequence(segment: &Segment) -> Option<u64> {
    let mut at = SEGMENT_HEADER_SIZE as u64;
    while at < segment.published() {
        let bytes = segment.read(at, (segment.published() - at) as usize)?;
        match RecordHeader::decode(bytes) {
            Decoded::Record { header, .. } if header.kind != RecordKind::Durable => return Some(header.sequence),
            Decoded::Record { len, .. } => at += len as u64,
            Decoded::End | Decoded::Invalid(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: u32, bytes: u64, live: u64, compacted: bool) -> Candidate {
        Candidate { id, bytes, live, compacted }
    }

    /// The choice of `ids` among `candidates`, with their garbage.
    fn victims<const N: usize>(candidates: &[Candidate], ids: [u32; N]) -> Choice {
        let garbage = candidates.iter().filter(|candidate| ids.contains(&candidate.id)).map(Candidate::garbage).sum();
        Choice::Victims { victims: HashSet::from(ids), garbage }
    }

    #[test]
    fn the_log_is_taken_as_a_prefix_and_compacted_segments_by_utilization() {
        let candidates = vec![
            candidate(1, 100, 50, true),
            candidate(2, 100, 10, false),
            candidate(3, 100, 90, false),
            candidate(4, 100, 0, false),
            candidate(5, 100, 20, true),
        ];
        // 2 (10 % live) first, then 5 (20 %), then 1 (50 %); 4 is empty but behind 3.
        assert_eq!(choose(&candidates, 400, 320), victims(&candidates, [2]));
        assert_eq!(choose(&candidates, 400, 300), victims(&candidates, [2, 5]));
        assert_eq!(choose(&candidates, 400, 230), victims(&candidates, [2, 5]));
        assert_eq!(choose(&candidates, 400, 200), victims(&candidates, [2, 5, 1]));
        // Reaching 4 needs 3, which is 90 % live.
        assert_eq!(choose(&candidates, 400, 100), Choice::Impossible);
        assert_eq!(choose(&candidates, 400, 400), Choice::Nothing);
    }

    #[test]
    fn an_empty_log_prefix_is_taken_whole() {
        let candidates = vec![candidate(1, 100, 0, false), candidate(2, 100, 0, false), candidate(3, 100, 100, false)];
        assert_eq!(choose(&candidates, 200, 0), victims(&candidates, [1, 2]));
        assert_eq!(choose(&candidates, 200, 150), victims(&candidates, [1]));
    }
}
