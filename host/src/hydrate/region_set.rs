//! Sets of regions, one bit each, marked without a lock: the written
//! regions a copy-back pass has still to carry to the source, and the
//! hydrated regions whose local data is known durable.

use std::sync::atomic::{AtomicU64, Ordering};

/// A set of region indexes, one bit each, in atomic words.
pub(super) struct RegionSet {
    words: Vec<AtomicU64>,
    count: usize,
}

impl RegionSet {
    /// A set over `count` regions holding the bits of `bytes` (bit `i % 8`
    /// of byte `i / 8` set = region `i` in the set); missing bytes are 0.
    pub(super) fn new(count: usize, bytes: &[u8]) -> Self {
        let words = (0..count.div_ceil(64))
            .map(|w| {
                let mut word = 0u64;
                for b in 0..8 {
                    let byte = bytes.get(w * 8 + b).copied().unwrap_or(0);
                    word |= u64::from(byte) << (8 * b);
                }
                if w == count / 64 && !count.is_multiple_of(64) {
                    // Bits past the last region would be regions that do not exist.
                    word &= (1u64 << (count % 64)) - 1;
                }
                AtomicU64::new(word)
            })
            .collect();
        Self { words, count }
    }

    fn at(i: usize) -> (usize, u64) {
        (i / 64, 1u64 << (i % 64))
    }

    /// Adds region `i`; true if it was not in the set. A region already in
    /// the set costs one load: the write path marks every write, most of
    /// them to regions marked before.
    pub(super) fn insert(&self, i: usize) -> bool {
        let (w, mask) = Self::at(i);
        if self.words[w].load(Ordering::SeqCst) & mask != 0 {
            return false;
        }
        self.words[w].fetch_or(mask, Ordering::SeqCst) & mask == 0
    }

    /// Adds region `i` with a read-modify-write even when it is there:
    /// whoever empties its word later with [`RegionSet::take_word`] is then
    /// ordered after the write that marked it, and sees that write's data.
    pub(super) fn insert_ordered(&self, i: usize) {
        let (w, mask) = Self::at(i);
        self.words[w].fetch_or(mask, Ordering::SeqCst);
    }

    /// Adds the regions of `bytes` (as [`RegionSet::new`] reads them).
    pub(super) fn union_bytes(&self, bytes: &[u8]) {
        let other = RegionSet::new(self.count, bytes);
        self.union_with(&other);
    }

    /// Whether region `i` is in the set.
    pub(super) fn contains(&self, i: usize) -> bool {
        let (w, mask) = Self::at(i);
        self.words[w].load(Ordering::SeqCst) & mask != 0
    }

    /// Number of regions in the set.
    pub(super) fn len(&self) -> usize {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }

    /// Number of words (64 regions each).
    pub(super) fn word_count(&self) -> usize {
        self.words.len()
    }

    /// Empties word `w` and returns what it held.
    pub(super) fn take_word(&self, w: usize) -> u64 {
        self.words[w].swap(0, Ordering::SeqCst)
    }

    /// Puts the bits of `bits` back into word `w` (a pass that failed).
    pub(super) fn restore_word(&self, w: usize, bits: u64) {
        if bits != 0 {
            self.words[w].fetch_or(bits, Ordering::SeqCst);
        }
    }

    /// Adds every region of `other` (same region count).
    pub(super) fn union_with(&self, other: &RegionSet) {
        for (w, o) in self.words.iter().zip(&other.words) {
            let bits = o.load(Ordering::SeqCst);
            if bits != 0 {
                w.fetch_or(bits, Ordering::SeqCst);
            }
        }
    }

    /// The set as bytes, bit `i % 8` of byte `i / 8` for region `i`.
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.count.div_ceil(8));
        for w in &self.words {
            out.extend_from_slice(&w.load(Ordering::SeqCst).to_le_bytes());
        }
        out.truncate(self.count.div_ceil(8));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_ignore_bits_past_the_end() {
        let s = RegionSet::new(70, &[]);
        for i in [0, 5, 63, 64, 69] {
            s.insert(i);
        }
        assert_eq!(s.len(), 5);
        let bytes = s.to_bytes();
        assert_eq!(bytes.len(), 9);
        let t = RegionSet::new(70, &bytes);
        assert!((0..70).all(|i| t.contains(i) == [0, 5, 63, 64, 69].contains(&i)));
        // A byte with bits for regions 70 and 71 adds nothing.
        let mut wide = bytes.clone();
        wide[8] |= 0b1100_0000;
        assert_eq!(RegionSet::new(70, &wide).len(), 5);
    }

    #[test]
    fn take_restore_and_union() {
        let s = RegionSet::new(128, &[]);
        for i in 60..68 {
            s.insert(i);
        }
        let low = s.take_word(0);
        assert_eq!(low.count_ones(), 4);
        assert_eq!(s.len(), 4);
        s.restore_word(0, low);
        assert_eq!(s.len(), 8);
        let t = RegionSet::new(128, &[]);
        t.insert(127);
        t.union_with(&s);
        assert_eq!(t.len(), 9);
        assert!(t.contains(127) && t.contains(60) && !t.contains(59));
    }
}
