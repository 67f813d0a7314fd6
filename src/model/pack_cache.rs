//! The model's linear layers as the kernels want them (converted, quantised,
//! packed into panels), saved beside the model so later starts read ~21 MB
//! instead of converting and packing 21 M weights again — 0.15–0.2 s of every
//! cold `pareil similar "TEXT"`.
//!
//! One file per precision, `pareil-packed-<precision>.bin` in the model
//! directory: a magic, the format, a key, the SHA-256 of the payload, then
//! the layers by name. The key hashes the format, the precision,
//! `config.json`, and the weights file's size, modification time, safetensors
//! header and sampled bytes (as the model fingerprint does): a changed model
//! gets a new file. Never trusted blindly: a file whose magic, key or
//! checksum disagrees, or any of whose layers has other lengths than packing
//! that shape gives, is ignored and written again; a directory that cannot
//! be written (a read-only model install) just packs at every start.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::kernels::gemm::{put_u64, ByteReader, PackedLinear};
use crate::model::EncoderOptions;

const MAGIC: &[u8; 8] = b"PAREILPK";
/// Bump when the layout of a packed layer changes.
const FORMAT: u64 = 1;

/// A valid file's bytes and where each layer lies in them, by name.
struct Stored {
    file: Vec<u8>,
    layers: HashMap<String, (usize, usize)>,
}

pub(super) struct PackCache {
    path: PathBuf,
    key: [u8; 32],
    options: EncoderOptions,
    stored: Option<Stored>,
    /// Layers packed this time, to write when there was no valid file.
    fresh: RefCell<Vec<(String, Vec<u8>)>>,
}

impl PackCache {
    /// The cache for the model whose weights are `weights` (its directory
    /// holds the file); empty when it is missing, stale or damaged.
    pub(super) fn open(weights: &Path, options: EncoderOptions) -> PackCache {
        let dir = weights.parent().unwrap_or(Path::new("."));
        let path = dir.join(format!("pareil-packed-{}.bin", options.precision.name()));
        let key = key(dir, weights, options).unwrap_or([0; 32]);
        let stored = std::fs::read(&path).ok().and_then(|b| parse(b, &key));
        if stored.is_none() && path.exists() {
            tracing::debug!(path = %path.display(), "pack cache stale or damaged; rebuilt");
        }
        PackCache {
            path,
            key,
            options,
            stored,
            fresh: RefCell::new(Vec::new()),
        }
    }

    /// The stored layer `name` of shape `[n, k]`, if the file holds it with
    /// exactly the lengths packing that shape gives.
    pub(super) fn layer(&self, name: &str, n: usize, k: usize) -> Option<PackedLinear> {
        let stored = self.stored.as_ref()?;
        let &(start, end) = stored.layers.get(name)?;
        let mut r = ByteReader(&stored.file[start..end]);
        let layer =
            PackedLinear::read_from(&mut r, n, k, self.options.precision, self.options.kernel)?;
        r.is_empty().then_some(layer)
    }

    /// Notes a layer packed this time (to be saved by [`save`](Self::save)).
    pub(super) fn record(&self, name: &str, layer: &PackedLinear) {
        if self.stored.is_none() {
            let mut bytes = Vec::new();
            layer.write_to(&mut bytes);
            self.fresh.borrow_mut().push((name.to_string(), bytes));
        }
    }

    /// Writes the layers packed this time, when there was no valid file
    /// (a temporary file renamed into place: readers see all or nothing).
    /// Failing to write only costs the next start its packing time.
    pub(super) fn save(self) {
        let fresh = self.fresh.into_inner();
        if self.stored.is_some() || fresh.is_empty() {
            return;
        }
        let mut payload = Vec::new();
        put_u64(&mut payload, fresh.len() as u64);
        for (name, bytes) in &fresh {
            put_u64(&mut payload, name.len() as u64);
            payload.extend_from_slice(name.as_bytes());
            put_u64(&mut payload, bytes.len() as u64);
            payload.extend_from_slice(bytes);
        }
        let mut file = Vec::with_capacity(payload.len() + 80);
        file.extend_from_slice(MAGIC);
        put_u64(&mut file, FORMAT);
        file.extend_from_slice(&self.key);
        file.extend_from_slice(&Sha256::digest(&payload));
        file.extend_from_slice(&payload);
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::write(&tmp, &file).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(path = %self.path.display(), error = %e, "pack cache not written");
        }
    }
}

/// What the file must have been made from.
fn key(dir: &Path, weights: &Path, options: EncoderOptions) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(FORMAT.to_le_bytes());
    h.update(options.precision.name().as_bytes());
    let config = std::fs::read(dir.join("config.json")).ok()?;
    h.update((config.len() as u64).to_le_bytes());
    h.update(&config);
    let modified = std::fs::metadata(weights).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    h.update(since.as_nanos().to_le_bytes());
    super::fingerprint::weights(weights, &mut h).ok()?;
    Some(h.finalize().into())
}

/// The payload of a file with this key and an intact checksum, indexed by
/// layer name.
fn parse(file: Vec<u8>, key: &[u8; 32]) -> Option<Stored> {
    let mut r = ByteReader(&file);
    if r.take(8)? != MAGIC || r.u64()? != FORMAT || r.take(32)? != key {
        return None;
    }
    let checksum = r.take(32)?;
    let payload = r.0;
    if Sha256::digest(payload).as_slice() != checksum {
        return None;
    }
    let base = file.len() - payload.len();
    let mut index = HashMap::new();
    let mut r = ByteReader(payload);
    for _ in 0..r.u64()? {
        let len = usize::try_from(r.u64()?).ok()?;
        let name = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        let len = usize::try_from(r.u64()?).ok()?;
        let start = base + payload.len() - r.0.len();
        r.take(len)?;
        index.insert(name, (start, start + len));
    }
    if !r.is_empty() {
        return None;
    }
    Some(Stored {
        file,
        layers: index,
    })
}
