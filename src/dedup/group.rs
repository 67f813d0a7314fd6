//! Duplicate groups: connected components of the pair graph (union-find),
//! each with a canonical member (oldest by ingest order) and, for every
//! other member, the kind, score and explanation of the pair that links it.

use super::{Item, Kind, Pair};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Longest explanation attached to a member or finding, in characters.
pub const EXPLAIN_LEN: usize = 240;

/// Disjoint sets with path halving and union by size.
pub struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    pub fn union(&mut self, a: usize, b: usize) {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.size[ra] < self.size[rb] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb] = ra;
        self.size[ra] += self.size[rb];
    }
}

/// A non-canonical member of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Index into `items`.
    pub index: usize,
    pub kind: Kind,
    pub score: f32,
    /// The passage this member was matched against: the canonical when they
    /// form a pair directly, otherwise the member's strongest partner (groups
    /// are transitive: A≈B and B≈C put C in A's group even if A≉C).
    pub via: usize,
    /// Word diff from `via` to this member, for near and contained.
    pub explanation: Option<String>,
}

/// A set of passages that duplicate each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Index of the oldest passage (lowest `(order, index)`).
    pub canonical: usize,
    /// Every other passage, oldest first.
    pub members: Vec<Member>,
}

/// Groups the passages connected by `pairs`. Groups come oldest canonical first.
pub fn group(items: &[Item], pairs: &[Pair]) -> Vec<Group> {
    let key = |i: usize| (items[i].order, i);
    let mut uf = UnionFind::new(items.len());
    for p in pairs {
        uf.union(p.canonical, p.duplicate);
    }
    let mut comps: HashMap<usize, Vec<usize>> = HashMap::new();
    for p in pairs {
        for x in [p.canonical, p.duplicate] {
            comps.entry(uf.find(x)).or_default().push(x);
        }
    }
    // Best link per passage: (is direct with canonical, stronger kind, higher score).
    let mut by_item: HashMap<usize, Vec<&Pair>> = HashMap::new();
    for p in pairs {
        by_item.entry(p.canonical).or_default().push(p);
        by_item.entry(p.duplicate).or_default().push(p);
    }
    let mut groups: Vec<Group> = comps
        .into_values()
        .map(|mut ms| {
            ms.sort_unstable_by_key(|&i| key(i));
            ms.dedup();
            let canonical = ms[0];
            let members = ms[1..]
                .iter()
                .map(|&m| {
                    let p = by_item[&m]
                        .iter()
                        .min_by(|x, y| {
                            let rank = |p: &Pair| {
                                let direct = p.canonical == canonical || p.duplicate == canonical;
                                (!direct, p.kind)
                            };
                            rank(x).cmp(&rank(y)).then(y.score.total_cmp(&x.score))
                        })
                        .expect("every member has a pair");
                    let via = if p.canonical == m {
                        p.duplicate
                    } else {
                        p.canonical
                    };
                    let explanation = super::explain(p, items, via, m);
                    Member {
                        index: m,
                        kind: p.kind,
                        score: p.score,
                        via,
                        explanation,
                    }
                })
                .collect();
            Group { canonical, members }
        })
        .collect();
    groups.sort_unstable_by_key(|g| key(g.canonical));
    groups
}
