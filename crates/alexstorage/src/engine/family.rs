//! Column families as the engine sees them: each named family is its own ordered
//! index in the view, known by a small id (the one its records carry) and an
//! incarnation (unique to one creation of it), so that a handle to a family that was
//! dropped, or dropped and created again under the same name (possibly with the same
//! id), finds nothing instead of acting on its successor.
//!
//! The default family (id 0, incarnation 0) is the store's own keys; it always exists
//! and its index is [`super::View::index`]. Handles name a family by a
//! [`FamilyRef`] (`family.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::family::FamilyRef;
use crate::index::Alex;

/// A named family in the view.
pub(crate) struct Family {
    /// Its name.
    pub name: Arc<str>,
    /// Unique to this creation of it.
    pub incarnation: u64,
    /// Key -> location of its latest version.
    pub index: Alex<u64>,
}

/// The named families of the view, by id and by name.
pub(crate) struct Families {
    /// Slot `id - 1` holds the family with that id (ids are small: the lowest free
    /// one is taken), so a read finds its family's index with one indexed load.
    by_id: Vec<Option<Family>>,
    by_name: HashMap<Arc<str>, u16>,
    /// The store's [`FamilyRef::store`].
    store: u64,
}

impl Families {
    /// No named families yet, in the store numbered `store`.
    pub fn new(store: u64) -> Families {
        Families { by_id: Vec::new(), by_name: HashMap::new(), store }
    }

    /// The store's number, which its handles carry.
    pub fn store(&self) -> u64 {
        self.store
    }

    /// The family `family` names, if it still exists (same store, id and
    /// incarnation).
    #[inline]
    pub fn get(&self, family: &FamilyRef) -> Option<&Family> {
        if family.store != self.store {
            return None;
        }
        self.by_id(family.id).filter(|found| found.incarnation == family.incarnation)
    }

    /// The family with id `id`.
    #[inline]
    pub fn by_id(&self, id: u16) -> Option<&Family> {
        self.by_id.get(usize::from(id).checked_sub(1)?)?.as_ref()
    }

    /// The family with id `id`, mutably.
    #[inline]
    pub fn by_id_mut(&mut self, id: u16) -> Option<&mut Family> {
        self.by_id.get_mut(usize::from(id).checked_sub(1)?)?.as_mut()
    }

    /// A reference to the family called `name`.
    pub fn named(&self, name: &str) -> Option<FamilyRef> {
        let id = *self.by_name.get(name)?;
        let family = self.by_id(id)?;
        Some(FamilyRef { id, incarnation: family.incarnation, store: self.store, name: Arc::clone(&family.name) })
    }

    /// Adds a family (its id, at least 1, and its name are free).
    pub fn insert(&mut self, id: u16, family: Family) {
        let Some(slot) = usize::from(id).checked_sub(1) else { return };
        if self.by_id.len() <= slot {
            self.by_id.resize_with(slot + 1, || None);
        }
        self.by_name.insert(Arc::clone(&family.name), id);
        if let Some(entry) = self.by_id.get_mut(slot) {
            *entry = Some(family);
        }
    }

    /// Removes the family `family` names, if it exists.
    pub fn remove(&mut self, family: &FamilyRef) -> Option<Family> {
        self.get(family)?;
        let removed = self.by_id.get_mut(usize::from(family.id).checked_sub(1)?)?.take()?;
        self.by_name.remove(&removed.name);
        while self.by_id.last().is_some_and(Option::is_none) {
            self.by_id.pop();
        }
        Some(removed)
    }

    /// Every named family, by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Family)> {
        self.by_id.iter().zip(1u16..).filter_map(|(family, id)| Some((id, family.as_ref()?)))
    }

    /// References to every named family, by ascending id.
    pub fn refs(&self) -> Vec<FamilyRef> {
        self.iter()
            .map(|(id, family)| FamilyRef {
                id,
                incarnation: family.incarnation,
                store: self.store,
                name: Arc::clone(&family.name),
            })
            .collect()
    }
}
