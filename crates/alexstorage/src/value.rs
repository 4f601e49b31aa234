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
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// `len` bytes at `offset` of a segment, below its published end.
    Mapped { segment: Arc<Segment>, offset: u64, len: usize },
    /// Bytes of our own (a decompressed value).
    Owned(Arc<[u8]>),
}

impl Value {
    /// A view of `len` published bytes at `offset` of `segment`.
    pub(crate) fn mapped(segment: Arc<Segment>, offset: u64, len: usize) -> Value {
        Value { repr: Repr::Mapped { segment, offset, len } }
    }

    /// A value owning its bytes.
    #[allow(dead_code)]
    pub(crate) fn owned(bytes: impl Into<Arc<[u8]>>) -> Value {
        Value { repr: Repr::Owned(bytes.into()) }
    }

    /// Whether the bytes are a view of the mapped file (no copy was made).
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.repr, Repr::Mapped { .. })
    }
}

impl Deref for Value {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.repr {
            // The range was published before this value was made and published bytes
            // never change, so `read` cannot fail here; an empty slice is the
            // defensive answer rather than a panic.
            Repr::Mapped { segment, offset, len } => segment.read(*offset, *len).unwrap_or(&[]),
            Repr::Owned(bytes) => bytes,
        }
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
