//! The approximate nearest-neighbour index beside a SQLite store: an HNSW
//! graph (usearch) over every chunk vector, keyed by chunk id, with f16
//! vectors (the store's own precision), kept in one file next to the store
//! (`<store>-ann`) and memory-mapped by readers.
//!
//! The index is derived data and is never trusted blindly:
//! - its header names the store it was built from (`meta.store_id`), the
//!   dimension and the last chunk id it covers; a header that does not match
//!   makes the index absent (rebuilt by the next writer);
//! - chunks written after it (ids above `covered`) are searched exactly by the
//!   caller (the "tail"), so a store written by a process that did not update
//!   the index still answers completely;
//! - every candidate is looked up in the store again, so a chunk removed since
//!   the index was written is dropped, not returned.
//!
//! The file is written whole to a temporary name and renamed, so a killed
//! writer leaves the previous index (or none), never a torn one; writers
//! hold `<index>.lock` (an OS file lock, released when a process dies), so
//! two ingests never write the temporary file at once.
//!
//! Layout: [`HEADER_BYTES`] of header (magic, JSON, zero padding), then
//! usearch's own serialisation, page-aligned so it can be viewed in place.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memmap2::{Mmap, MmapMut};
use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{Error, Result};
use crate::store::ChunkId;

/// First bytes of an index file.
const MAGIC: &[u8; 8] = b"PARLANN1";
/// Room for the header; the usearch data starts here (page-aligned).
const HEADER_BYTES: usize = 4096;
/// Version of the header and of the settings below; another value is rebuilt.
const FORMAT: u32 = 1;
/// HNSW graph degree (usearch's default): ~130 bytes of graph per vector.
const CONNECTIVITY: usize = 16;
/// Candidate list size while inserting: graph quality, paid once per vector
/// added. 128 up to [`SMALL_GRAPH`] vectors, 256 above: at 1M synthetic
/// vectors (Zen 5, BENCHMARKS.md) a graph built with 128 reached recall@10
/// 0.981 at search list 384 — its misses were nodes no walk reached — and
/// one built with 256 reached 0.9986, for 1.7× the build time.
const EXPANSION_ADD: usize = 128;
const EXPANSION_ADD_LARGE: usize = 256;
/// Candidate list size while searching (HNSW's ef; a search asking for more
/// results widens it to that count), by index size and by the insertion
/// list the graph was built with: the list a search needs to keep its
/// recall grows with the graph. Measured recall@10 against exact search
/// (BENCHMARKS.md): real debian-dev vectors (9k) 0.991 at 128, 0.997 at
/// 256; synthetic 100k 0.9998 at 96, 128 and 256; synthetic 1M (500 stored
/// passages as queries) on a graph built with 128, Zen 5: 0.977 at 256
/// (2.0 ms median), 0.981 at 384 (3.3 ms), 0.982 at 512 (4.6 ms), 0.983 at
/// 768 (6.4 ms) — the misses left are nodes the walk does not reach, not
/// near-ties; on a graph built with 256, Zen 3: 0.999 at 256 (3.0 ms) and
/// at 384 (4.9 ms). So 128 up to [`SMALL_GRAPH`] vectors, where it saves
/// about a millisecond a query; above, 256 on a graph built with the wide
/// insertion list and 384 on one built with the narrow one (an index written
/// before the header recorded the list: the next time it grows,
/// `maintain_index` rebuilds it wide, as it does an index begun below
/// [`SMALL_GRAPH`] and growing past it).
/// `PAREIL_ANN_EF` overrides them all, for measuring recall against latency
/// (`cargo bench --bench scale`).
const EXPANSION_SEARCH_SMALL: usize = 128;
const EXPANSION_SEARCH: usize = 256;
const EXPANSION_SEARCH_NARROW_GRAPH: usize = 384;
/// Index sizes up to this are built with the narrow insertion list and
/// searched with the short search list. The build side reads it through
/// the store's setting, which tests lower to exercise a graph growing past
/// it; the search lists always use this value.
pub(super) const SMALL_GRAPH: usize = 250_000;
/// When a bulk search reads the index into huge pages first
/// ([`AnnIndex::make_resident`]): from this many searches in one call, on
/// an index file of at least [`RESIDENT_MIN_BYTES`]. Measured on Zen 5
/// (`dups` graph searches, 30,000 at a time): at 1M synthetic vectors (874
/// MB) 353–566 µs a search through the mapped file, 283–320 µs resident;
/// at 100k (91 MB, already within reach of the TLB's page-walk caches) no
/// difference. The copy itself took 0.16–7.3 s at 1M, most of it the
/// kernel compacting memory into huge pages, so it pays only for many
/// searches.
pub(super) const RESIDENT_MIN_SEARCHES: usize = 20_000;
const RESIDENT_MIN_BYTES: u64 = 256 << 20;
/// The candidate list for the k-NN graph behind `dups`: a million searches,
/// so cheaper; the semantic rule needs the few neighbours above its floor.
/// 96 on a graph built with the narrow insertion list; a graph built with
/// the wide one links more neighbours per node, so each step of a walk
/// costs more (1M synthetic, Zen 3: `dups` 986 s at 96) and a shorter list
/// finds what the rule needs: 64 (no wider than the results asked for).
const EXPANSION_GRAPH: usize = 96;
const EXPANSION_GRAPH_WIDE: usize = 64;
/// The candidate list of a walk restricted to candidates (the
/// cross-language searches of `dups`), which visits ~1/share of the graph
/// more nodes than a plain search to fill it: no wider than the results
/// asked for (65 chunks for 32 passages). At 1M synthetic passages, 96 → 64
/// took the cross-language searches from 563 to 403 s and found one planted
/// semantic pair fewer of 2,000; on debian-dev through its index, 3 of
/// 3,000 translations fewer (98.5 → 98.4 %; a store that small is searched
/// exactly unless an index was built on purpose).
pub(super) const EXPANSION_WALK: usize = 64;

/// The insertion list for an index about to hold `vectors` vectors, when
/// graphs above `small_graph` vectors get the wide one.
pub(super) fn expansion_add(vectors: usize, small_graph: usize) -> usize {
    if vectors <= small_graph {
        EXPANSION_ADD
    } else {
        EXPANSION_ADD_LARGE
    }
}

/// Whether a graph whose narrowest insertion list was `built_with` is a
/// wide one (it picks both the search list and the `dups` list).
fn built_wide(built_with: usize) -> bool {
    built_with >= EXPANSION_ADD_LARGE
}

/// The search list for a graph of `vectors` vectors whose narrowest
/// insertion list was `built_with`.
pub(super) fn expansion_search(vectors: usize, built_with: usize) -> usize {
    std::env::var("PAREIL_ANN_EF")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&ef| ef >= 1)
        .unwrap_or(if vectors <= SMALL_GRAPH {
            EXPANSION_SEARCH_SMALL
        } else if built_wide(built_with) {
            EXPANSION_SEARCH
        } else {
            EXPANSION_SEARCH_NARROW_GRAPH
        })
}

/// What the header records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Header {
    pub format: u32,
    /// `meta.store_id` of the store the index was built from.
    pub store_id: String,
    pub dim: usize,
    /// Highest chunk id the index covers; later chunks are the caller's tail.
    pub covered: ChunkId,
    /// Vectors added (live or since removed from the store).
    pub vectors: usize,
    /// The narrowest insertion list any of them was added with (headers
    /// written before it was recorded: the only list there was then).
    #[serde(default = "narrow_insertion_list")]
    pub expansion_add: usize,
}

fn narrow_insertion_list() -> usize {
    EXPANSION_ADD
}

/// An index file opened for searching (memory-mapped, read-only).
pub(super) struct AnnIndex {
    // Declared before the buffers it views, so it is dropped first.
    index: Index,
    /// The index's bytes in anonymous memory, once [`Self::make_resident`]
    /// has moved the view there.
    resident: OnceLock<MmapMut>,
    map: Mmap,
    /// The file mapped (the same one even if a writer has renamed a new
    /// index over its name since) and its name, for messages.
    file: std::fs::File,
    path: PathBuf,
    pub header: Header,
}

/// The index file that belongs to the store at `store`.
pub(super) fn path_for(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push("-ann");
    PathBuf::from(name)
}

fn options(dim: usize) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F16,
        connectivity: CONNECTIVITY,
        expansion_add: EXPANSION_ADD,
        expansion_search: EXPANSION_SEARCH,
        multi: false,
    }
}

fn ann_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store {
        path: path.to_path_buf(),
        reason: format!(
            "{what}: {e}\n  fix: delete this file; the next `pareil ingest` rebuilds it"
        ),
    }
}

/// The header of the index at `path` when it belongs to the store
/// `store_id` with `dim` dimensions (read without loading the index).
pub(super) fn header_of(path: &Path, store_id: &str, dim: usize) -> Option<Header> {
    use std::io::Read;
    let mut head = vec![0u8; HEADER_BYTES];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    read_header(&head).filter(|h| h.format == FORMAT && h.store_id == store_id && h.dim == dim)
}

/// An exclusive lock on `<index>.lock`, or `None` when another process
/// holds it (it is writing the index).
pub(super) fn try_lock(index: &Path) -> Result<Option<std::fs::File>> {
    let mut name = index.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Room for `capacity` vectors, and a search/insert context per rayon thread.
fn reserve(index: &Index, path: &Path, capacity: usize) -> Result<()> {
    let threads = rayon::current_num_threads().max(1);
    index
        .reserve_capacity_and_threads(capacity.max(16), threads)
        .map_err(|e| ann_error(path, "reserving room for the approximate index failed", e))
}

fn read_header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize;
    serde_json::from_slice(bytes.get(12..12 + len)?).ok()
}

impl AnnIndex {
    /// Opens the index at `path` when it exists and was built from the store
    /// `store_id` with `dim` dimensions; `None` otherwise (missing, another
    /// store's, another format, damaged), so the caller searches exactly or
    /// rebuilds. Only I/O errors other than "not found" are errors.
    pub(super) fn open(path: &Path, store_id: &str, dim: usize) -> Result<Option<AnnIndex>> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        // SAFETY: the file is only ever replaced by rename, never written in
        // place, so the mapped bytes do not change under us.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let Some(header) = read_header(&map) else {
            tracing::warn!(path = %path.display(), "approximate index not readable; ignored");
            return Ok(None);
        };
        if header.format != FORMAT || header.store_id != store_id || header.dim != dim {
            tracing::info!(path = %path.display(), "approximate index of another store or format; ignored");
            return Ok(None);
        }
        let index = Index::new(&options(dim)).map_err(|e| ann_error(path, "usearch", e))?;
        // SAFETY: the view borrows `map`, which `AnnIndex` keeps alive and
        // drops after the index (field order).
        if let Err(e) = unsafe { index.view_from_buffer(&map[HEADER_BYTES..]) } {
            tracing::warn!(path = %path.display(), error = %e, "approximate index damaged; ignored");
            return Ok(None);
        }
        if index.dimensions() != dim {
            return Ok(None);
        }
        index.change_expansion_search(expansion_search(index.size(), header.expansion_add));
        Ok(Some(AnnIndex {
            index,
            resident: OnceLock::new(),
            map,
            file,
            path: path.to_path_buf(),
            header,
        }))
    }

    /// Moves the view from the mapped file to a copy in anonymous memory
    /// advised to use huge pages (2 MiB: the TLB then covers the whole
    /// index), for a run of many searches, when the index is large enough
    /// for it to pay ([`RESIDENT_MIN_BYTES`]) and the system offers
    /// transparent huge pages (a copy in 4 KiB pages would gain nothing).
    /// Done once; the file's bytes are read, not touched through the
    /// mapping, so they are not counted twice in RSS.
    pub(super) fn make_resident(&self) -> Result<()> {
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.path, e))?
            .len();
        if self.resident.get().is_some() || len < RESIDENT_MIN_BYTES || !huge_pages_offered() {
            return Ok(());
        }
        let _span = tracing::info_span!("index_resident").entered();
        self.view_copy()
    }

    /// The copy behind [`Self::make_resident`], whatever the sizes (once).
    pub(super) fn view_copy(&self) -> Result<()> {
        if self.resident.get().is_some() {
            return Ok(());
        }
        let path = &self.path;
        let len = self.file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
        let len = len.saturating_sub(HEADER_BYTES);
        // Whole huge pages, so the kernel can back all of it with them.
        let mut copy = MmapMut::map_anon(len.div_ceil(HUGE_PAGE) * HUGE_PAGE)
            .map_err(|e| Error::io(path, e))?;
        #[cfg(target_os = "linux")]
        let _ = copy.advise(memmap2::Advice::HugePage);
        read_at(&self.file, &mut copy[..len], HEADER_BYTES as u64)
            .map_err(|e| Error::io(path, e))?;
        // SAFETY: the view borrows `copy`, which is kept in `self.resident`
        // for as long as the index (dropped after it: field order) and
        // never written again (set once: checked above, and `&self` is
        // used from one thread at a time); viewing resets the index first.
        let viewed = unsafe { self.index.view_from_buffer(&copy[..len]) };
        match viewed {
            Ok(()) => {
                let _ = self.resident.set(copy);
            }
            Err(e) => {
                // The copy is only faster: back to the file it was read from.
                tracing::warn!(path = %path.display(), error = %e, "index copy not viewable; searching the mapped file");
                // SAFETY: as in `open`, the map lives as long as the index.
                unsafe { self.index.view_from_buffer(&self.map[HEADER_BYTES..]) }
                    .map_err(|e| ann_error(path, "usearch", e))?;
            }
        }
        self.set_expansion(None);
        Ok(())
    }

    /// Sets the search candidate list size (`None`: the default). The store
    /// is used from one thread at a time, so this does not race a search.
    pub(super) fn set_expansion(&self, ef: Option<usize>) {
        self.index.change_expansion_search(
            ef.unwrap_or_else(|| expansion_search(self.len(), self.header.expansion_add)),
        );
    }

    /// The candidate list for the k-NN graph behind `dups` (see
    /// [`EXPANSION_GRAPH`]).
    pub(super) fn graph_expansion(&self) -> usize {
        if built_wide(self.header.expansion_add) {
            EXPANSION_GRAPH_WIDE
        } else {
            EXPANSION_GRAPH
        }
    }

    /// Vectors in the graph (including chunks removed from the store since).
    pub(super) fn len(&self) -> usize {
        self.index.size()
    }

    /// The `count` chunks nearest to `query` (a unit vector), best first, as
    /// (chunk id, cosine computed on the index's f16 vectors).
    pub(super) fn search(&self, query: &[f32], count: usize) -> Result<Vec<(ChunkId, f32)>> {
        if count == 0 || self.len() == 0 {
            return Ok(Vec::new());
        }
        let found = self
            .index
            .search(query, count)
            .map_err(|e| ann_error(Path::new("<index>"), "search failed", e))?;
        Ok(as_matches(&found))
    }

    /// Like [`search`](Self::search), returning only chunks `admit`
    /// accepts (the walk goes on through the others until it has `count`
    /// admitted ones, or has seen the whole graph).
    pub(super) fn search_where(
        &self,
        query: &[f32],
        count: usize,
        admit: impl Fn(ChunkId) -> bool,
    ) -> Result<Vec<(ChunkId, f32)>> {
        if count == 0 || self.len() == 0 {
            return Ok(Vec::new());
        }
        let found = self
            .index
            .filtered_search(query, count, |key| admit(key as ChunkId))
            .map_err(|e| ann_error(Path::new("<index>"), "filtered search failed", e))?;
        Ok(as_matches(&found))
    }

    /// The index's copy of a chunk's vector (f16 widened), `None` when absent.
    pub(super) fn vector(&self, chunk: ChunkId, dim: usize) -> Option<Vec<f32>> {
        let mut v = vec![0f32; dim];
        match self.index.get(chunk as u64, &mut v) {
            Ok(n) if n > 0 => Some(v),
            _ => None,
        }
    }
}

const HUGE_PAGE: usize = 2 << 20;

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Whether the kernel backs anonymous memory with transparent huge pages
/// when asked (`always` or `madvise`; Linux only).
fn huge_pages_offered() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[always]") || s.contains("[madvise]"))
}

/// Builds or extends an index in memory, then writes it.
pub(super) struct Builder {
    index: Index,
    header: Header,
    /// Where it will be written (for messages).
    path: PathBuf,
    /// Graphs above this many vectors get the wide insertion list.
    small_graph: usize,
}

impl Builder {
    /// An empty index for the store `store_id`, to be written to `path`.
    /// Graphs above `small_graph` vectors get the wide insertion list.
    pub(super) fn new(
        path: &Path,
        store_id: &str,
        dim: usize,
        capacity: usize,
        small_graph: usize,
    ) -> Result<Builder> {
        let index = Index::new(&options(dim)).map_err(|e| ann_error(path, "usearch", e))?;
        reserve(&index, path, capacity)?;
        Ok(Builder {
            index,
            path: path.to_path_buf(),
            header: Header {
                format: FORMAT,
                store_id: store_id.to_string(),
                dim,
                covered: 0,
                vectors: 0,
                expansion_add: expansion_add(capacity, small_graph),
            },
            small_graph,
        })
    }

    /// The index at `path`, loaded into memory to be extended by `extra`
    /// more vectors.
    pub(super) fn load(
        path: &Path,
        header: Header,
        extra: usize,
        small_graph: usize,
    ) -> Result<Builder> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: see `AnnIndex::open`; the bytes are copied by `load`.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let index = Index::new(&options(header.dim)).map_err(|e| ann_error(path, "usearch", e))?;
        index
            .load_from_buffer(&map[HEADER_BYTES..])
            .map_err(|e| ann_error(path, "approximate index unreadable", e))?;
        reserve(&index, path, index.size() + extra)?;
        Ok(Builder {
            index,
            header,
            path: path.to_path_buf(),
            small_graph,
        })
    }

    /// Adds chunks, in parallel; `ids` ascending and above what is covered.
    pub(super) fn add(&mut self, ids: &[ChunkId], data: &[f32]) -> Result<()> {
        use rayon::prelude::*;
        let dim = self.header.dim;
        let needed = self.index.size() + ids.len();
        if needed > self.index.capacity() {
            reserve(
                &self.index,
                &self.path,
                needed.max(2 * self.index.capacity()),
            )?;
        }
        // By the size reserved (a rebuild reserves the whole store), so a
        // large index gets the wider list from its first vector.
        let list = expansion_add(self.index.capacity(), self.small_graph);
        self.index.change_expansion_add(list);
        self.header.expansion_add = self.header.expansion_add.min(list);
        ids.par_iter()
            .zip(data.par_chunks_exact(dim))
            .try_for_each(|(&id, v)| self.index.add(id as u64, v))
            .map_err(|e| ann_error(&self.path, "adding a vector failed", e))?;
        if let Some(&last) = ids.last() {
            self.header.covered = self.header.covered.max(last);
        }
        self.header.vectors += ids.len();
        Ok(())
    }

    /// Writes the index atomically (temporary file, then rename).
    pub(super) fn save(self) -> Result<()> {
        let path = self.path.as_path();
        let tmp = {
            let mut name = path.as_os_str().to_owned();
            name.push(".tmp");
            PathBuf::from(name)
        };
        let body = self.index.serialized_length();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        file.set_len((HEADER_BYTES + body) as u64)
            .map_err(|e| Error::io(&tmp, e))?;
        // SAFETY: a file we just created and nobody else maps.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| Error::io(&tmp, e))?;
        let json = serde_json::to_vec(&self.header).expect("header serialises");
        assert!(
            12 + json.len() <= HEADER_BYTES,
            "index header fits its room"
        );
        map[..8].copy_from_slice(MAGIC);
        map[8..12].copy_from_slice(&(json.len() as u32).to_le_bytes());
        map[12..12 + json.len()].copy_from_slice(&json);
        self.index
            .save_to_buffer(&mut map[HEADER_BYTES..])
            .map_err(|e| ann_error(&tmp, "writing the approximate index failed", e))?;
        map.flush().map_err(|e| Error::io(&tmp, e))?;
        drop(map);
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Ok(())
    }

    pub(super) fn header(&self) -> &Header {
        &self.header
    }
}

/// usearch's matches as (chunk id, cosine), best first.
fn as_matches(found: &usearch::ffi::Matches) -> Vec<(ChunkId, f32)> {
    found
        .keys
        .iter()
        .zip(&found.distances)
        .map(|(&k, &d)| (k as ChunkId, 1.0 - d))
        .collect()
}
