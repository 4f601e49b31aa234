//! [`Value`]: a value read from the store, usually a zero-copy view of a segment.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::log::segment::Segment;

/// A value read from the store.
///
/// An uncompressed value is a view straight into the memory-mapped segment that holds
/// it: no byte is copied. It keeps that segment mapped for as long as it lives, so it
/// stays valid and unchanged whatever happens to the store afterwards (overwrites,
/// deletes, new segments, compaction, closing the store). `to_vec()` copies it out.
#[derive(Clone)]
pub struct Value {
    /// The segment holding the bytes; keeps its mapping alive.
    segment: Arc<Segment>,
    /// Where the bytes start in the segment (below its published end).
    offset: u64,
    /// How many bytes.
    len: usize,
}

impl Value {
    /// A view of `len` published bytes at `offset` of `segment`.
    pub(crate) fn mapped(segment: Arc<Segment>, offset: u64, len: usize) -> Value {
        Value { segment, offset, len }
    }

    /// Whether the bytes are a view of the mapped file (no copy was made). Always
    /// true in this version; compressed values, when they come, will be copies.
    pub fn is_zero_copy(&self) -> bool {
        true
    }
}

impl Deref for Value {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // The range was published before this value was made and published bytes
        // never change, so `read` cannot fail here; an empty slice is the defensive
        // answer rather than a panic.
        self.segment.read(self.offset, self.len).unwrap_or(&[])
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        **self == **other
    }
}

impl Eq for Value {}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for Value {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Value {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Value {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

impl PartialEq<Vec<u8>> for Value {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == other[..]
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes: &[u8] = self;
        let shown = bytes.get(..32).unwrap_or(bytes);
        write!(formatter, "Value({} bytes: {:?}", bytes.len(), String::from_utf8_lossy(shown))?;
        if bytes.len() > shown.len() {
            write!(formatter, "...")?;
        }
        write!(formatter, ")")
    }
}
