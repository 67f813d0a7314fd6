//! The PostgreSQL schema: its version, the DDL, and the recorded model
//! settings. Everything that decides whether a database may be written lives
//! here, as `sqlite/schema.rs` does for files: a database holding tables of
//! some other program is refused, never altered.
//!
//! Layout (the SQLite store's tables and meaning): `pareil_meta`,
//! `documents`, `passages`, `chunks`, `embeddings` — vectors as `halfvec`
//! (the f16 the SQLite store keeps) with an HNSW cosine index on the chunks.
//! Passages and chunks carry `doc_id` in their keys, the column a Citus
//! deployment distributes on (see [`ddl`] and README, "PostgreSQL").

use postgres::GenericClient;

use crate::error::{Error, Result};
use crate::store::types::StoreMeta;

/// `pareil_meta.schema_version` written by this build; a database with a
/// higher number was made by a newer pareil and is refused.
///
/// History: 1 — first PostgreSQL schema. 2 — `passages.lang` and
/// `passages.sketch` (as SQLite's format 4: what ingest works out for
/// `dups`, NULL for passages stored before). 3 — `passage_texts`, one row
/// per distinct normalised text under a unique key (see [`MIGRATIONS`]).
/// 4 — `passages.lex_keys`, each passage's lexical keys under a GIN index.
pub const SCHEMA_VERSION: i64 = 4;

/// The first version whose passages carry `lang` and `sketch`.
pub const TRAITS_VERSION: i64 = 2;

/// The first version whose passages carry `lex_keys`.
pub const KEYS_VERSION: i64 = 4;

/// Migration steps: the SQL that takes a store from version `to - 1` to
/// `to`. Steps only add, so a store at an older version still reads (the
/// reads that need a newer column check the version).
///
/// Version 4's `lex_keys` are MinHash band keys and word-shingle keys
/// (`dedup::lookup::stored_keys`, about 100 a passage) under a GIN index:
/// the near- and contained-duplicate candidates of a new document are the
/// passages sharing one (`&&`), found by the server, so an ingest worker
/// deciding `skip`/`fail` never loads the corpus.
///
/// Version 3's `passage_texts` is the exact-duplicate key: each distinct
/// non-empty normalised text (its SHA-256, `passages.norm_hash`) names the
/// passage holding it as a canonical copy (not itself a reference; the
/// oldest when there are several). The primary key is what makes "one
/// canonical copy per text" a fact of the database rather than of the
/// writers' care: a second writer inserting the same text waits for the
/// first and finds its row (`write.rs`, `exact_references`). In Citus it is
/// distributed on `norm_hash`, so the key is checked on one shard.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        2,
        "ALTER TABLE passages ADD COLUMN IF NOT EXISTS lang text;
         ALTER TABLE passages ADD COLUMN IF NOT EXISTS sketch bytea;",
    ),
    (
        3,
        "CREATE TABLE passage_texts (
             norm_hash  text PRIMARY KEY,
             passage_id bigint NOT NULL,
             doc_id     bigint NOT NULL
         );
         CREATE INDEX passage_texts_by_doc ON passage_texts (doc_id);
         INSERT INTO passage_texts (norm_hash, passage_id, doc_id)
             SELECT DISTINCT ON (norm_hash) norm_hash, id, doc_id FROM passages
             WHERE duplicate_of IS NULL AND btrim(norm) <> ''
             ORDER BY norm_hash, id;",
    ),
    (
        4,
        // The index is kept by each insert (`fastupdate = off`): a pending
        // list would be scanned whole by every probe until vacuum merged it
        // (0.9 s a document after a 4k-passage ingest, 10 ms without).
        // Passages stored before get their keys at the next ingest, which
        // looks for passages lacking traits again (ingest's once-per-store
        // mark, `passage_traits_complete`, is cleared for it).
        "ALTER TABLE passages ADD COLUMN IF NOT EXISTS lex_keys int4[];
         CREATE INDEX passages_lex_keys ON passages USING gin (lex_keys)
             WITH (fastupdate = off);
         CREATE INDEX passages_without_keys ON passages (id) WHERE lex_keys IS NULL;
         DELETE FROM pareil_meta WHERE key = 'passage_traits_complete';",
    ),
];

/// The tables this store owns, in dependency order. A database holding a
/// table of one of these names without `pareil_meta` is some other program's.
pub const TABLES: &[&str] = &[
    "pareil_meta",
    "documents",
    "passages",
    "embeddings",
    "chunks",
    "passage_texts",
];

/// The DDL, with `{dim}` the vector dimension.
///
/// Laid out for Citus (README, "PostgreSQL"): `documents` is small (one row
/// per file) and can be a reference table, copied to every node; `passages`
/// and `chunks` carry `doc_id` in their keys and are distributed on it,
/// colocated, so a document's rows live together; each chunk holds its own
/// vector, so every shard has an HNSW index over its chunks and a search
/// never joins across nodes. `embeddings` is only the vector cache (model
/// input hash → vector, kept until `vacuum_embeddings`), distributed on its
/// hash. `duplicate_of` may point into another shard, so it is checked by
/// pareil's writes, not by a foreign key. Ids come from sequences, so an id a
/// user saw never names another passage later.
fn ddl(dim: usize) -> String {
    format!(
        "
CREATE TABLE pareil_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE SEQUENCE documents_ingest_order;

CREATE TABLE documents (
    id            bigserial PRIMARY KEY,
    path          text NOT NULL UNIQUE,
    content_hash  text NOT NULL,
    size          bigint NOT NULL,
    mtime         bigint,
    date          text,
    ingest_order  bigint NOT NULL DEFAULT nextval('documents_ingest_order'),
    ingested_at   text NOT NULL
);
CREATE INDEX documents_by_ingest_order ON documents (ingest_order);

CREATE TABLE passages (
    id           bigserial,
    doc_id       bigint NOT NULL REFERENCES documents (id),
    idx          integer NOT NULL,
    line_start   bigint NOT NULL,
    line_end     bigint NOT NULL,
    byte_start   bigint NOT NULL,
    byte_end     bigint NOT NULL,
    text         text NOT NULL,
    norm         text NOT NULL,
    norm_hash    text NOT NULL,
    duplicate_of bigint,
    dup_kind     text,
    dup_score    double precision,
    PRIMARY KEY (doc_id, id),
    UNIQUE (doc_id, idx)
);
CREATE INDEX passages_by_id ON passages (id);
CREATE INDEX passages_norm_hash ON passages (norm_hash);
CREATE INDEX passages_duplicate_of ON passages (duplicate_of) WHERE duplicate_of IS NOT NULL;

CREATE TABLE chunks (
    id          bigserial,
    doc_id      bigint NOT NULL,
    passage_id  bigint NOT NULL,
    idx         integer NOT NULL,
    byte_start  bigint NOT NULL,
    byte_end    bigint NOT NULL,
    tokens      bigint NOT NULL,
    emb_key     text NOT NULL,
    vector      halfvec({dim}) NOT NULL,
    PRIMARY KEY (doc_id, id),
    UNIQUE (doc_id, passage_id, idx),
    FOREIGN KEY (doc_id, passage_id) REFERENCES passages (doc_id, id)
);
CREATE INDEX chunks_by_passage ON chunks (passage_id);
CREATE INDEX chunks_by_emb_key ON chunks (emb_key);
CREATE INDEX chunks_hnsw ON chunks USING hnsw (vector halfvec_cosine_ops);

CREATE TABLE embeddings (
    hash   text PRIMARY KEY,
    vector halfvec({dim}) NOT NULL
);
"
    )
}

/// What the database turned out to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseKind {
    /// None of pareil's tables: the schema may be created.
    Blank,
    /// A pareil store of this schema version.
    Pareil { version: i64 },
    /// Tables named like pareil's, but no pareil metadata: another program's.
    Foreign { tables: Vec<String> },
}

/// Looks at the current schema (`search_path`) without writing anything.
pub fn classify(db: &mut impl GenericClient) -> Result<DatabaseKind> {
    let names: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let present: Vec<String> = db
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = ANY($1) ORDER BY 1",
            &[&names],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if present.is_empty() {
        return Ok(DatabaseKind::Blank);
    }
    if !present.iter().any(|t| t == "pareil_meta") {
        return Ok(DatabaseKind::Foreign { tables: present });
    }
    let version = db
        .query_opt(
            "SELECT value FROM pareil_meta WHERE key = 'schema_version'",
            &[],
        )?
        .and_then(|r| r.get::<_, String>(0).parse::<i64>().ok());
    match version {
        Some(version) => Ok(DatabaseKind::Pareil { version }),
        None => Ok(DatabaseKind::Foreign { tables: present }),
    }
}

/// Creates the extension (when the role may), the tables and the metadata.
/// Runs inside the caller's transaction.
pub fn initialise(db: &mut impl GenericClient, meta: &StoreMeta) -> Result<()> {
    db.batch_execute("CREATE EXTENSION IF NOT EXISTS vector")?;
    db.batch_execute(&ddl(meta.dim))?;
    let dim = meta.dim.to_string();
    // A new store is version 1 plus every migration: one path to each
    // version, so a migrated store and a new one cannot differ.
    let version = "1".to_string();
    let store_id = crate::store::sha256_hex(
        format!("{:?}{:?}", std::time::SystemTime::now(), std::process::id()).as_bytes(),
    );
    for (key, value) in [
        ("schema_version", version.as_str()),
        ("model_id", meta.model_id.as_str()),
        ("revision", meta.revision.as_str()),
        ("dim", dim.as_str()),
        ("pooling", meta.pooling.as_str()),
        ("passage_prefix", meta.passage_prefix.as_str()),
        ("query_prefix", meta.query_prefix.as_str()),
        ("created_by", concat!("pareil ", env!("CARGO_PKG_VERSION"))),
        ("generation", "0"),
        ("store_id", &store_id[..32]),
    ] {
        db.execute(
            "INSERT INTO pareil_meta (key, value) VALUES ($1, $2)",
            &[&key, &value],
        )?;
    }
    db.execute(
        "INSERT INTO pareil_meta (key, value) \
         VALUES ('created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))",
        &[],
    )?;
    migrate(db, 1)
}

/// Applies the migration steps after `from` and records the new version.
/// Runs inside the caller's transaction (holding the creation lock), so a
/// crash leaves the old version.
pub fn migrate(db: &mut impl GenericClient, from: i64) -> Result<()> {
    for (to, sql) in MIGRATIONS.iter().filter(|(to, _)| *to > from) {
        db.batch_execute(sql)?;
        db.execute(
            "UPDATE pareil_meta SET value = $1 WHERE key = 'schema_version'",
            &[&to.to_string()],
        )?;
    }
    Ok(())
}

/// Refuses a schema newer than this build.
pub fn check_version(location: &str, version: i64) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::Store {
            path: location.into(),
            reason: format!(
                "the database holds a pareil store of schema version {version}, newer than this \
                 build understands ({SCHEMA_VERSION})\n  fix: use a newer pareil"
            ),
        });
    }
    Ok(())
}

/// The refusal for a database that holds another program's tables.
pub fn foreign_error(location: &str, tables: &[String]) -> Error {
    Error::Store {
        path: location.into(),
        reason: format!(
            "the database holds tables named {} but is not a pareil store; pareil leaves it \
             alone\n  fix: point --db at another database, or at another schema with \
             `?options=-csearch_path%3DNAME`",
            tables.join(", ")
        ),
    }
}

/// Reads the recorded model settings; a missing key means the tables were
/// damaged or edited by hand.
pub fn read_meta(db: &mut impl GenericClient, location: &str) -> Result<StoreMeta> {
    let rows = db.query("SELECT key, value FROM pareil_meta", &[])?;
    let get = |key: &str| -> Result<String> {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == key)
            .map(|r| r.get::<_, String>(1))
            .ok_or_else(|| Error::Store {
                path: location.into(),
                reason: format!("pareil store without a recorded {key}; the tables are damaged"),
            })
    };
    crate::store::recorded_meta(get, |reason| Error::Store {
        path: location.into(),
        reason: format!("{reason}; the tables are damaged"),
    })
}
