//! Where each stored chunk belongs (its passage, its place in it), read once
//! per neighbour search, and the candidate set a filtered walk of the index
//! tests at every node it visits.
//!
//! The walk's question "is the chunk at this node a candidate?" is asked
//! millions of times per language at a million passages: answered through
//! two SipHash lookups in million-entry maps (chunk → passage, then passage
//! in the candidate set) it was a fifth of the walk's time. Asked of a
//! bitmap over chunk ids (128 KB per million ids, it stays in cache) it is a
//! shift and a mask. Chunk ids are SQLite rowids (AUTOINCREMENT: dense up to
//! removals), so the bitmap spans their range; a store whose ids are far
//! sparser than its live chunks (many re-ingests) gets a hash set instead,
//! so memory stays bounded by what the store holds.

use ahash::{AHashMap, AHashSet};

use crate::store::{ChunkId, PassageId};

/// A bitmap may span this many ids per live chunk (plus a fixed allowance)
/// before a hash set is used instead.
const MAX_SPARSENESS: usize = 64;
const DENSE_ALLOWANCE: usize = 1 << 23;

pub(super) struct ChunkPlaces {
    /// Each chunk's passage and index within it.
    place_of: AHashMap<ChunkId, (PassageId, u32)>,
    /// Each live passage's chunks: a range of `grouped`.
    range_of: AHashMap<PassageId, (u32, u32)>,
    /// Chunk ids grouped by passage, each group in id order.
    grouped: Vec<ChunkId>,
    /// Lowest and highest live chunk id.
    span: (ChunkId, ChunkId),
}

impl ChunkPlaces {
    /// From `(chunk, passage, index in passage)` rows.
    pub(super) fn new(mut places: Vec<(ChunkId, PassageId, u32)>) -> Self {
        let place_of = places.iter().map(|&(c, p, i)| (c, (p, i))).collect();
        let span = places
            .iter()
            .fold((ChunkId::MAX, ChunkId::MIN), |(lo, hi), &(c, ..)| {
                (lo.min(c), hi.max(c))
            });
        places.sort_unstable_by_key(|&(c, p, _)| (p, c));
        let mut range_of = AHashMap::new();
        let mut start = 0;
        for (i, row) in places.iter().enumerate() {
            let last_of_passage = places.get(i + 1).is_none_or(|next| next.1 != row.1);
            if last_of_passage {
                range_of.insert(row.1, (start as u32, i as u32 + 1));
                start = i + 1;
            }
        }
        let grouped = places.into_iter().map(|(c, ..)| c).collect();
        ChunkPlaces {
            place_of,
            range_of,
            grouped,
            span,
        }
    }

    /// Live passages.
    pub(super) fn passages(&self) -> usize {
        self.range_of.len()
    }

    /// The passage's chunks, in id order (none for a removed passage).
    pub(super) fn chunks_of(&self, passage: PassageId) -> &[ChunkId] {
        self.range_of
            .get(&passage)
            .map_or(&[], |&(a, b)| &self.grouped[a as usize..b as usize])
    }

    /// The chunk's passage and index within it (`None` once removed).
    pub(super) fn place_of(&self, chunk: ChunkId) -> Option<(PassageId, u32)> {
        self.place_of.get(&chunk).copied()
    }

    /// The chunks of these passages, as a set a walk can test cheaply.
    pub(super) fn chunk_set<'a>(&self, passages: impl Iterator<Item = &'a PassageId>) -> ChunkSet {
        let chunks = passages.flat_map(|&p| self.chunks_of(p).iter().copied());
        ChunkSet::new(chunks, self.span, self.place_of.len())
    }
}

/// A set of chunk ids: a bitmap over the store's id range, or a hash set
/// where that range is too sparse for one.
pub(super) enum ChunkSet {
    Bits { first: ChunkId, bits: Vec<u64> },
    Hashed(AHashSet<ChunkId>),
}

impl ChunkSet {
    /// `chunks` all lie in `span` (lowest, highest id) of a store holding
    /// `live` chunks.
    fn new(chunks: impl Iterator<Item = ChunkId>, span: (ChunkId, ChunkId), live: usize) -> Self {
        let (first, last) = span;
        let range = if first > last {
            0
        } else {
            (last - first) as u64 + 1
        };
        if range > (MAX_SPARSENESS * live + DENSE_ALLOWANCE) as u64 {
            return ChunkSet::Hashed(chunks.collect());
        }
        let mut bits = vec![0u64; range.div_ceil(64) as usize];
        for c in chunks {
            let at = (c - first) as usize;
            bits[at / 64] |= 1 << (at % 64);
        }
        ChunkSet::Bits { first, bits }
    }

    pub(super) fn contains(&self, chunk: ChunkId) -> bool {
        match self {
            ChunkSet::Bits { first, bits } => {
                let Some(at) = chunk.checked_sub(*first).filter(|&a| a >= 0) else {
                    return false;
                };
                let at = at as u64;
                bits.get((at / 64) as usize)
                    .is_some_and(|w| w & (1 << (at % 64)) != 0)
            }
            ChunkSet::Hashed(set) => set.contains(&chunk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(rows: &[(ChunkId, PassageId, u32)]) -> ChunkPlaces {
        ChunkPlaces::new(rows.to_vec())
    }

    #[test]
    fn chunks_are_grouped_by_passage_in_id_order() {
        // Passage 7's chunks are not contiguous in id order.
        let p = places(&[(3, 7, 0), (4, 8, 0), (5, 7, 1), (9, 9, 0)]);
        assert_eq!(p.passages(), 3);
        assert_eq!(p.chunks_of(7), &[3, 5]);
        assert_eq!(p.chunks_of(8), &[4]);
        assert_eq!(p.chunks_of(10), &[] as &[ChunkId]);
        assert_eq!(p.place_of(5), Some((7, 1)));
        assert_eq!(p.place_of(6), None);
    }

    #[test]
    fn a_chunk_set_holds_its_passages_chunks_dense_or_sparse() {
        for far in [20, 1 << 40] {
            let p = places(&[(10, 1, 0), (11, 2, 0), (12, 1, 1), (far, 3, 0)]);
            let set = p.chunk_set([1, 3].iter());
            assert_eq!(matches!(set, ChunkSet::Bits { .. }), far == 20);
            let members: Vec<ChunkId> = [0, 9, 10, 11, 12, 13, far, far + 1, -5]
                .into_iter()
                .filter(|&c| set.contains(c))
                .collect();
            assert_eq!(members, vec![10, 12, far]);
        }
    }

    #[test]
    fn an_empty_store_has_an_empty_set() {
        let p = places(&[]);
        let set = p.chunk_set([1].iter());
        assert!(!set.contains(0));
        assert!(!set.contains(ChunkId::MAX));
    }
}
