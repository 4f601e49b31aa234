//! Which column family an operation names ([`FamilyRef`]), and the rules for family
//! names. A leaf: batches, the engine and the public handles all use it.

use std::sync::{Arc, LazyLock};

use crate::{Error, Result};

/// Longest family name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// The name the default family answers to.
pub(crate) const DEFAULT_FAMILY_NAME: &str = "default";

/// Which family an operation names: its id, its incarnation, and its name (for
/// errors). Handles hold one; the default family's is [`FamilyRef::default_family`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FamilyRef {
    /// The id its records carry.
    pub id: u16,
    /// Unique to one creation of the family in its store (0 for the default family).
    pub incarnation: u64,
    /// The open store it belongs to (see [`next_store_id`]; 0 for the default family,
    /// which every store has): a handle of another store names no family here.
    pub store: u64,
    /// Its name.
    pub name: Arc<str>,
}

static DEFAULT_FAMILY: LazyLock<FamilyRef> =
    LazyLock::new(|| FamilyRef { id: 0, incarnation: 0, store: 0, name: Arc::from(DEFAULT_FAMILY_NAME) });

/// A number no other store opened by this process has, for [`FamilyRef::store`].
pub(crate) fn next_store_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl FamilyRef {
    /// The default family.
    #[inline]
    pub fn default_family() -> &'static FamilyRef {
        &DEFAULT_FAMILY
    }

    /// Whether this is the default family.
    #[inline]
    pub fn is_default(&self) -> bool {
        self.id == 0
    }

    /// The error for an operation on this family once it is gone.
    pub fn missing(&self) -> Error {
        Error::ColumnFamilyNotFound(self.name.to_string())
    }
}

/// Checks a family name: 1 to [`MAX_NAME_LEN`] bytes.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("a column family name may not be empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidArgument(format!(
            "a column family name takes at most {MAX_NAME_LEN} bytes, not {}",
            name.len()
        )));
    }
    Ok(())
}
