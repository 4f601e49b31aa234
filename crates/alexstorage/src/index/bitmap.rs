//! The occupancy bitmap of a gapped array: bit `i` is set when slot `i` holds a real
//! key rather than a gap.
//!
//! Every search is bounded by the slot count given at construction; bits past it in
//! the last word are always clear and never reported as gaps.

/// A fixed-length bitmap, one bit per slot of a data node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bitmap {
    words: Box<[u64]>,
    len: usize,
}

impl Bitmap {
    /// A bitmap of `len` clear bits.
    pub(crate) fn new(len: usize) -> Self {
        Bitmap { words: vec![0u64; len.div_ceil(64)].into_boxed_slice(), len }
    }

    /// A bitmap of `len` bits over `words`; bits at or past `len` are cleared.
    pub(crate) fn from_words(mut words: Box<[u64]>, len: usize) -> Self {
        let len = len.min(words.len() * 64);
        for (index, word) in words.iter_mut().enumerate() {
            let first = index * 64;
            if first >= len {
                *word = 0;
            } else if len - first < 64 {
                *word &= (1u64 << (len - first)) - 1;
            }
        }
        Bitmap { words, len }
    }

    /// The indexes of the set bits, ascending.
    pub(crate) fn ones(&self) -> Ones<'_> {
        Ones { words: &self.words, word_index: 0, word: self.words.first().copied().unwrap_or(0) }
    }

    /// Word `index` of the bitmap (bits `64 * index ..`).
    #[inline]
    pub(crate) fn word(&self, index: usize) -> Option<u64> {
        self.words.get(index).copied()
    }

    /// Number of bits.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes used.
    pub(crate) fn size_in_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Whether bit `index` is set; false past the end.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> bool {
        match self.words.get(index / 64) {
            Some(word) => index < self.len && (word >> (index % 64)) & 1 == 1,
            None => false,
        }
    }

    /// Hints the processor to bring the word holding bit `index` into the cache.
    #[inline]
    pub(crate) fn prefetch(&self, index: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(word) = self.words.get(index / 64) {
            // SAFETY: a prefetch never faults and has no architectural effect; the
            // pointer is derived from a live reference in any case.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    (word as *const u64).cast::<i8>(),
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = index;
    }

    /// Sets bit `index` (ignored past the end).
    #[inline]
    pub(crate) fn set(&mut self, index: usize) {
        if index < self.len {
            if let Some(word) = self.words.get_mut(index / 64) {
                *word |= 1 << (index % 64);
            }
        }
    }

    /// Clears bit `index` (ignored past the end).
    #[inline]
    pub(crate) fn clear(&mut self, index: usize) {
        if let Some(word) = self.words.get_mut(index / 64) {
            *word &= !(1 << (index % 64));
        }
    }

    /// First set bit at or after `from`.
    pub(crate) fn next_set(&self, from: usize) -> Option<usize> {
        self.scan_forward(from, |word| word)
    }

    /// First clear bit at or after `from`, below `len`.
    pub(crate) fn next_clear(&self, from: usize) -> Option<usize> {
        self.scan_forward(from, |word| !word)
    }

    /// Last set bit at or before `from` (`from` may be past the end).
    pub(crate) fn prev_set(&self, from: usize) -> Option<usize> {
        self.scan_backward(from, |word| word)
    }

    /// Last clear bit at or before `from` (`from` may be past the end).
    pub(crate) fn prev_clear(&self, from: usize) -> Option<usize> {
        self.scan_backward(from, |word| !word)
    }

    /// Number of set bits.
    pub(crate) fn count_ones(&self) -> usize {
        self.words.iter().map(|word| word.count_ones() as usize).sum()
    }

    fn scan_forward(&self, from: usize, select: impl Fn(u64) -> u64) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        let mut word_index = from / 64;
        let mut word = select(*self.words.get(word_index)?) & (u64::MAX << (from % 64));
        loop {
            if word != 0 {
                let found = word_index * 64 + word.trailing_zeros() as usize;
                return (found < self.len).then_some(found);
            }
            word_index += 1;
            word = select(*self.words.get(word_index)?);
        }
    }

    fn scan_backward(&self, from: usize, select: impl Fn(u64) -> u64) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let from = from.min(self.len - 1);
        let mut word_index = from / 64;
        let keep = from % 64;
        let mask = if keep == 63 { u64::MAX } else { (1u64 << (keep + 1)) - 1 };
        let mut word = select(*self.words.get(word_index)?) & mask;
        loop {
            if word != 0 {
                return Some(word_index * 64 + 63 - word.leading_zeros() as usize);
            }
            word_index = word_index.checked_sub(1)?;
            word = select(*self.words.get(word_index)?);
        }
    }
}

/// Iterator over the set bits of a [`Bitmap`].
#[derive(Clone, Debug)]
pub(crate) struct Ones<'a> {
    words: &'a [u64],
    word_index: usize,
    word: u64,
}

impl Iterator for Ones<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.word == 0 {
            self.word_index += 1;
            self.word = *self.words.get(self.word_index)?;
        }
        let bit = self.word.trailing_zeros() as usize;
        self.word &= self.word - 1;
        Some(self.word_index * 64 + bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_respect_length_and_word_boundaries() {
        let mut bitmap = Bitmap::new(130);
        for index in [0, 63, 64, 127, 129] {
            bitmap.set(index);
        }
        bitmap.set(130); // past the end: ignored
        assert_eq!(bitmap.count_ones(), 5);
        assert_eq!(bitmap.next_set(1), Some(63));
        assert_eq!(bitmap.next_set(65), Some(127));
        assert_eq!(bitmap.next_set(128), Some(129));
        assert_eq!(bitmap.next_set(130), None);
        assert_eq!(bitmap.prev_set(126), Some(64));
        assert_eq!(bitmap.prev_set(1000), Some(129));
        assert_eq!(bitmap.prev_set(62), Some(0));
        assert_eq!(bitmap.next_clear(127), Some(128));
        assert_eq!(bitmap.next_clear(129), None);
        assert_eq!(bitmap.prev_clear(0), None);
        assert_eq!(bitmap.prev_clear(64), Some(62));
        bitmap.clear(129);
        assert_eq!(bitmap.next_clear(129), Some(129));
        assert!(!bitmap.get(129));
        assert!(bitmap.get(127));
    }

    #[test]
    fn ones_and_from_words() {
        let bitmap = Bitmap::from_words(vec![0b1011, u64::MAX].into_boxed_slice(), 70);
        assert_eq!(bitmap.ones().collect::<Vec<_>>(), [0, 1, 3, 64, 65, 66, 67, 68, 69]);
        assert_eq!(bitmap.count_ones(), 9);
        assert_eq!(Bitmap::new(0).ones().count(), 0);
    }

    #[test]
    fn empty_bitmap() {
        let bitmap = Bitmap::new(0);
        assert_eq!(bitmap.next_set(0), None);
        assert_eq!(bitmap.prev_set(0), None);
        assert_eq!(bitmap.next_clear(0), None);
        assert_eq!(bitmap.prev_clear(5), None);
    }
}
