//! [`Value`]: a value read from the store, usually a zero-copy view of a segment.
//!
//! # Leases: keeping a segment mapped without a shared counter
//! A value must keep its segment mapped, which takes a reference count. If every value
//! cloned the segment's one `Arc`, every get on every core would write the same cache
//! line, and reads would stop scaling at two threads. So a segment is handed out
//! through [`Leases`]: [`LEASE_SHARDS`] separate `Arc<Lease>` allocations, each holding
//! the segment's `Arc`. A thread always clones the lease of its own shard, so two
//! threads never write the same counter; the segment is unmapped when the store and
//! every lease holder have let go. No unsafe code: it is `Arc` all the way down.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::log::segment::Segment;

/// How many leases a segment has: more than the cores a reader would run on at once.
pub(crate) const LEASE_SHARDS: usize = 16;

/// One of a segment's leases. Aligned to 128 bytes so that each lease's allocation
/// (its reference counts included) has cache lines of its own (128: adjacent-line
/// prefetchers pair 64-byte lines).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Lease(Arc<Segment>);

impl Lease {
    /// The leased segment.
    #[inline]
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.0
    }
}

/// A segment's leases, one per shard of threads.
#[derive(Debug, Clone)]
pub(crate) struct Leases(Arc<[Arc<Lease>]>);

impl Leases {
    /// Leases of `segment`.
    pub(crate) fn new(segment: Arc<Segment>) -> Leases {
        Leases((0..LEASE_SHARDS).map(|_| Arc::new(Lease(Arc::clone(&segment)))).collect())
    }

    /// The lease for the calling thread (a clone: a count on a line only this
    /// thread's shard writes).
    #[inline]
    pub(crate) fn lease(&self) -> Arc<Lease> {
        let shard = THREAD_SHARD.with(|shard| *shard);
        Arc::clone(&self.0[shard % self.0.len()])
    }
}

/// Hashes segment ids for the view's segment table, which every read consults: a
/// multiplicative hash (ids are small consecutive integers; SipHash's resistance to
/// chosen keys buys nothing here and costs a fifth of a get).
#[derive(Default, Clone, Copy)]
pub(crate) struct SegmentIdHasher(u64);

impl std::hash::Hasher for SegmentIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8 | u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The view's table of segments by id.
pub(crate) type SegmentTable = std::collections::HashMap<u32, Leases, std::hash::BuildHasherDefault<SegmentIdHasher>>;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's lease shard, assigned round-robin on first use.
    static THREAD_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % LEASE_SHARDS;
}

/// The calling thread's shard (0 to [`LEASE_SHARDS`] - 1): which of a segment's
/// leases, or of a sharded counter's cells, this thread uses.
#[inline]
pub(crate) fn thread_shard() -> usize {
    THREAD_SHARD.with(|shard| *shard)
}

/// A value read from the store.
///
/// An uncompressed value is a view straight into the memory-mapped segment that holds
/// it: no byte is copied. It keeps that segment mapped for as long as it lives, so it
/// stays valid and unchanged whatever happens to the store afterwards (overwrites,
/// deletes, new segments, compaction, closing the store). `to_vec()` copies it out.
///
/// A value stored compressed ([`crate::Compression`]) is checked like any other, then
/// decompressed into bytes the `Value` owns: the zero-copy promise is for values
/// stored uncompressed (see [`Value::is_zero_copy`]).
#[derive(Clone)]
pub struct Value(Bytes);

#[derive(Clone)]
enum Bytes {
    /// `len` bytes at `offset` of the leased segment (below its published end); the
    /// lease keeps the mapping alive.
    Mapped { lease: Arc<Lease>, offset: u64, len: usize },
    /// Bytes of the value's own: a compressed value, decompressed, or a
    /// transaction's write not yet in the store.
    Owned(Arc<[u8]>),
}

impl Value {
    /// A view of `len` published bytes at `offset` of the leased segment.
    pub(crate) fn mapped(lease: Arc<Lease>, offset: u64, len: usize) -> Value {
        Value(Bytes::Mapped { lease, offset, len })
    }

    /// A value holding bytes of its own: a compressed value, decompressed, or a
    /// transaction's own write, read back before it commits.
    pub(crate) fn owned(bytes: Arc<[u8]>) -> Value {
        Value(Bytes::Owned(bytes))
    }

    /// Whether the bytes are a view of the mapped file (no copy was made): true for
    /// every value stored uncompressed. A value stored compressed is decompressed
    /// into bytes the `Value` owns, and a transaction's own uncommitted writes, read
    /// back through it, are copies.
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.0, Bytes::Mapped { .. })
    }
}

impl Deref for Value {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.0 {
            // The range was published before this value was made and published bytes
            // never change, so `read` cannot fail here; an empty slice is the
            // defensive answer rather than a panic.
            Bytes::Mapped { lease, offset, len } => lease.segment().read(*offset, *len).unwrap_or(&[]),
            Bytes::Owned(bytes) => bytes,
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
