//! The shared cache level of tiers, on storage people already run — Redis, WebDAV or
//! plain HTTP GET/PUT, S3, a directory — through Apache OpenDAL.
//!
//! # The big decision: blobs in packs, named by a small record written last
//!
//! ```text
//! <root>/packs/<sha256>                         blobs one upload added, in zstd frames,
//!                                               followed by their index (see [`packs`])
//! <root>/records/<tier>/<key>.json              the entry: its marker and tree as lists
//!                                               of chunk digests, and the packs that
//!                                               hold them and every blob the tree names
//! <root>/candidates/<tier>/<structure key>.json discovered-inputs candidates
//! <root>/.tmp/tiers-<host>-<pid>-<start>-<n>     a directory store's uploads in progress
//! ```
//!
//! An entry is already a tree of content-addressed blobs in the local store (see
//! [`tiers_core::Blobs`]); the shared cache keeps the same blobs. Its marker and tree
//! are cut into content-defined chunks ([`cdc`]), so a one-file edit changes a few
//! chunks of them, one file's blobs, and nothing else.
//!
//! **Upload.** The blobs the server already has are those in the packs of the
//! records this cache dir last uploaded or restored ([`state`]). Each such pack is
//! checked with one ranged read of its last byte, then named again; every other
//! blob goes into one new pack (one request per 32 MiB). The record goes last, so a
//! reader that finds a record finds its packs. An edit after a full build therefore
//! costs three requests: a check, a pack of kilobytes, a record.
//!
//! **Restore.** The record, then each pack's index (one ranged read, or the copy
//! kept from before), then only the frames that hold blobs the local store lacks,
//! several reads in flight; chunks of the marker and tree come from the last
//! restored or uploaded version where they are the same.
//!
//! Why packs and not one object per blob (Bazel's CAS): a symbol table is some
//! 10,000 blobs of a few kilobytes, and none of the stores tiers supports answers
//! "which of these exist" in one request — WebDAV on nginx and Redis cannot list.
//! Why not content-defined chunks of one packed stream (casync): an edit changes
//! blobs scattered through the entry, so every chunk around each of them would be
//! new. Packs plus chunked metadata send what is new and nothing else.
//!
//! Nothing read from the remote is trusted. Records and candidate lists are refused
//! unparsed above a byte cap ([`MAX_RECORD_BYTES`], [`MAX_CANDIDATES_BYTES`]) and
//! parsed into types (digests are 64 hex digits, paths relative without `..`); a list
//! is read up to [`CANDIDATE_LIMIT`] candidates. A pack index must match the digest
//! its record gives, every blob and chunk read must hash to its name, the marker
//! must describe the key asked for, and [`restore`] refuses a tree with paths or
//! symlinks leaving the entry and never writes through a symlink. But a read-write
//! remote can still place *valid* files that later runs use as their artifacts:
//! give write access to trusted CI only, and with `signing_key_env` ([`sign`])
//! readers holding the key accept only what a holder of the key wrote (a record
//! names every pack and index by digest, so signing it covers them).
//!
//! Failure is a miss, never a failed build: see [`backend`] for timeouts, retries and
//! how one failure switches the remote off for the rest of the run (not for later
//! runs). Venv entries are never offered here: their kinds are not
//! [`shareable`](tiers_core::Tier::shareable).

pub mod backend;
pub mod cdc;
mod error;
pub mod fs_write;
pub mod location;
pub mod packs;
pub mod restore;
pub mod sign;
pub mod state;
mod wire;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tiers_core::{
    async_trait, Blobs, Candidate, Digest, Key, Marker, RemoteConfig, RemoteMode, Reporter,
    SharedCache, Tree, Unit, CANDIDATE_LIMIT,
};

pub use backend::{Retry, Traffic};
pub use error::{RemoteError, UnpackError};
pub use location::Location;
pub use packs::PackRef;
pub use sign::SigningKey;

/// Version of the record layout; another version is a miss.
pub const RECORD_FORMAT: u32 = 2;

/// Version of the candidate-list layout.
pub const CANDIDATES_FORMAT: u32 = 1;

/// A record larger than this is refused before it is parsed (it is still downloaded
/// whole: nginx's WebDAV and Redis answer no size without a body). A record holds a
/// digest per 4 KiB of marker and tree and a line per pack: 64 MiB is far beyond
/// what any entry needs, while bounding what one hostile record costs a reader.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// A candidate list larger than this is refused before it is parsed: 32 candidates of
/// some 1,500 used inputs each. A writer drops its oldest candidates to stay below.
pub const MAX_CANDIDATES_BYTES: usize = 8 << 20;

/// No pack, marker or tree is larger: Redis's value limit.
pub const MAX_BLOB_BYTES: u64 = 512 << 20;

/// No record names more packs (32 GiB of them at [`packs::PACK_BYTES`]): a reader
/// refuses one that does, and a writer refuses to upload an entry that needs more.
pub const MAX_PACKS: usize = 1024;

/// A reader holds the indexes of a record's packs at once: at most this many
/// bytes of them (36 bytes per blob: some 7 million blobs).
pub const MAX_INDEX_BYTES: u64 = 256 << 20;

/// An upload names at most this many packs it did not write: past it, the blobs
/// of the packs it uses least go into its new pack, so that restores and
/// existence checks stay a handful of requests however many edits came before.
pub const MAX_REUSED_PACKS: usize = 8;

/// Requests in flight at once.
const IN_FLIGHT: usize = 8;

/// Ranges of one pack this close together are read as one.
const MERGE_GAP: u64 = 64 << 10;

/// A ranged read asks for at most this much (unless one frame is larger), so
/// that reads overlap their handling and memory stays bounded.
const READ_BYTES: u64 = 4 << 20;

/// A ranged read inflates to at most this much (unless one blob is larger): its
/// frames are decompressed whole before its blobs are handed on.
const READ_RAW_BYTES: u64 = 32 << 20;

/// `records/<tier>/<key>.json`: what a fetch needs to restore an entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub tier: String,
    pub key: Key,
    /// Files and their bytes in the entry.
    pub files: u64,
    pub bytes: u64,
    /// The entry's marker (`entry.json`), in chunks.
    pub marker: Chunked,
    /// The entry's tree (`entry.tree`), in chunks.
    pub tree: Chunked,
    /// Every pack that holds a chunk of the two, a file or a blob the tree names.
    pub packs: Vec<PackRef>,
}

/// A byte string stored as content-defined chunks ([`cdc`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunked {
    pub sha256: Digest,
    pub bytes: u64,
    pub chunks: Vec<Digest>,
}

impl Chunked {
    fn of(bytes: &[u8]) -> (Chunked, Vec<Range<usize>>) {
        let ranges = cdc::chunks(bytes);
        let chunked = Chunked {
            sha256: Digest::of(bytes),
            bytes: bytes.len() as u64,
            chunks: ranges
                .iter()
                .map(|r| Digest::of(&bytes[r.clone()]))
                .collect(),
        };
        (chunked, ranges)
    }

    fn check(&self, what: &str, limit: u64) -> Result<(), String> {
        let most = self.bytes / cdc::MIN as u64 + 1;
        if self.bytes == 0 || self.bytes > limit || self.chunks.len() as u64 > most {
            return Err(format!(
                "its {what} of {} bytes in {} chunks is not one tiers writes",
                self.bytes,
                self.chunks.len()
            ));
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct CandidateList<'a> {
    format: u32,
    candidates: &'a [Candidate],
}

/// The shared cache at one location. Usually reached through [`open`] as an
/// `Arc<dyn SharedCache>`.
pub struct Remote {
    backend: Arc<backend::Backend>,
    writable: bool,
    pack_bytes: usize,
    /// With a key, records and lists are signed, and unsigned ones are misses.
    signing: Option<SigningKey>,
    /// Where the bytes moved for a tier are reported: on that tier's line.
    progress: Reporter,
    /// Uploads go one at a time, so that each knows what the one before sent.
    uploading: tokio::sync::Mutex<()>,
}

/// Open the shared cache `config` names. Connects to nothing yet: the first request
/// does, so an unreachable server is a warning at the first lookup, not an error here.
pub fn open(config: &RemoteConfig) -> Result<Arc<dyn SharedCache>, RemoteError> {
    Ok(Arc::new(Remote::open(config)?))
}

/// What a restore does with each blob it downloads: `Ok(false)` when the blob
/// does not match its digest.
type Got = Arc<GotFn>;
type GotFn = dyn Fn(Digest, &[u8]) -> Result<bool, RemoteError> + Send + Sync;

/// Decompress the frames of one read and hand each wanted blob to `got`;
/// `Ok(Err(why))` when the pack does not hold what its index says.
fn hand_over(
    frames: &[packs::Frame],
    bytes: &[u8],
    span: packs::Span,
    got: &GotFn,
) -> Result<Result<(), String>, RemoteError> {
    let raw = match packs::inflate(frames, bytes) {
        Ok(raw) => raw,
        Err(why) => return Ok(Err(why)),
    };
    let base = frames.first().map_or(0, |f| f.raw);
    for (d, r) in span.blobs {
        let at = r.start.checked_sub(base).zip(r.end.checked_sub(base));
        let slice = at.and_then(|(a, b)| raw.get(a as usize..b as usize));
        let fine = match slice {
            Some(s) => got(d, s)?,
            None => false,
        };
        if !fine {
            return Ok(Err(format!("the blob {d} in it does not match its digest")));
        }
    }
    Ok(Ok(()))
}

/// Where a blob of a restore goes.
#[derive(Default)]
struct Sink {
    /// Files of the tree with this content.
    files: Vec<usize>,
    /// `.tiers-blobs/<digest>` too, for the engine to take into the store.
    carried: bool,
}

impl Remote {
    pub fn open(config: &RemoteConfig) -> Result<Remote, RemoteError> {
        let url = config
            .url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .ok_or(RemoteError::NoUrl)?;
        let loc = Location::parse(url, &location::process_env)?;
        let signing = match config.signing_key_env.as_deref() {
            Some(var) => Some(SigningKey::from_env(var, &location::process_env)?),
            None => None,
        };
        Ok(Remote::at(
            &loc,
            config.mode == RemoteMode::ReadWrite,
            Duration::from_secs(config.timeout.max(1)),
            Retry::default(),
        )?
        .with_signing(signing))
    }

    /// A remote at `loc`, with explicit timeout and retry policy.
    pub fn at(
        loc: &Location,
        writable: bool,
        timeout: Duration,
        retry: Retry,
    ) -> Result<Remote, RemoteError> {
        Ok(Remote {
            backend: Arc::new(backend::Backend::open(loc, timeout, retry)?),
            writable,
            pack_bytes: packs::PACK_BYTES,
            signing: None,
            progress: Reporter::default(),
            uploading: tokio::sync::Mutex::new(()),
        })
    }

    /// Report the bytes downloaded and uploaded for a tier on that tier's
    /// progress line (the engine's [`Reporter`]).
    pub fn with_progress(mut self, reporter: Reporter) -> Self {
        self.progress = reporter;
        self
    }

    /// Sign what this remote writes with `key` and accept only what it signed.
    pub fn with_signing(mut self, key: Option<SigningKey>) -> Self {
        self.signing = key;
        self
    }

    /// Close packs at `bytes` (tests of entries in several packs).
    pub fn with_pack_bytes(mut self, bytes: usize) -> Self {
        self.pack_bytes = bytes.max(1);
        self
    }

    /// The requests this remote made so far, and the bytes they moved.
    pub fn traffic(&self) -> &Traffic {
        self.backend.traffic()
    }

    fn record_path(tier: &str, key: &Key) -> Result<String, RemoteError> {
        Ok(format!("records/{}/{key}.json", object_name(tier)?))
    }

    fn candidates_path(tier: &str, skey: &Key) -> Result<String, RemoteError> {
        Ok(format!("candidates/{}/{skey}.json", object_name(tier)?))
    }

    /// What this cache dir knows of this remote.
    fn state(&self, local: &Blobs) -> state::State {
        state::State::of(local.dir().parent(), &self.identity())
    }

    /// The record of `key`, checked against it; `None` when there is none.
    pub async fn record(&self, tier: &str, key: &Key) -> Result<Option<Record>, RemoteError> {
        let path = Self::record_path(tier, key)?;
        let Some(body) = self
            .read_object(
                &path,
                tier,
                key,
                "a record",
                MAX_RECORD_BYTES,
                RECORD_FORMAT,
            )
            .await?
        else {
            return Ok(None);
        };
        let bad = |why: String| self.unusable(&path, why);
        let record: Record = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        if record.key != *key {
            return Err(bad(format!("it describes key {}, not {key}", record.key)));
        }
        if record.tier != tier {
            return Err(bad(format!("it is a record of tier `{}`", record.tier)));
        }
        record
            .marker
            .check("marker", MAX_RECORD_BYTES as u64)
            .map_err(bad)?;
        record.tree.check("tree", MAX_BLOB_BYTES).map_err(bad)?;
        if record.packs.is_empty() || record.packs.len() > MAX_PACKS {
            return Err(bad(format!("it names {} packs", record.packs.len())));
        }
        let mut seen = HashSet::new();
        let mut index_bytes = 0u64;
        for p in &record.packs {
            p.check().map_err(bad)?;
            if !seen.insert(p.sha256) {
                return Err(bad(format!("it names the pack {} twice", p.sha256)));
            }
            index_bytes += p.index.bytes;
        }
        if index_bytes > MAX_INDEX_BYTES {
            return Err(bad(format!(
                "its packs' indexes hold {index_bytes} bytes, more than the {MAX_INDEX_BYTES} a reader holds"
            )));
        }
        Ok(Some(record))
    }

    /// The body of a record or candidate list: `None` when there is none or it is of
    /// another format; refused when larger than `limit`; with a signing key, verified.
    async fn read_object(
        &self,
        path: &str,
        tier: &str,
        key: &Key,
        what: &'static str,
        limit: usize,
        format: u32,
    ) -> Result<Option<Vec<u8>>, RemoteError> {
        let Some(stored) = self.backend.get_at_most(path, limit).await? else {
            return Ok(None);
        };
        let Ok(stored) = stored else {
            return Err(RemoteError::TooLarge {
                remote: self.describe(),
                path: path.to_owned(),
                what,
                limit: limit as u64,
            });
        };
        let body = match &self.signing {
            None => sign::strip(&stored).into_owned(),
            Some(k) => k
                .verify(path, &stored)
                .map_err(|why| RemoteError::Unsigned {
                    remote: self.describe(),
                    path: path.to_owned(),
                    tier: tier.to_owned(),
                    key: key.to_string(),
                    why,
                })?,
        };
        let head: wire::Head =
            serde_json::from_slice(&body).map_err(|e| self.unusable(path, e.to_string()))?;
        if head.format != format {
            // Written by another version of tiers: not ours to read.
            tracing::debug!("ignoring `{path}` of format {}", head.format);
            return Ok(None);
        }
        Ok(Some(body))
    }

    fn unusable(&self, path: &str, why: String) -> RemoteError {
        RemoteError::Record {
            remote: self.describe(),
            path: path.to_owned(),
            why,
        }
    }

    /// `body` as stored: signed for `path` when this remote has a key.
    fn seal(&self, path: &str, body: Vec<u8>) -> Vec<u8> {
        match &self.signing {
            Some(k) => k.sign(path, &body),
            None => body,
        }
    }

    /// Whether a failure earlier in this run switched the remote off.
    fn off(&self, what: &str) -> bool {
        match self.backend.failed() {
            Some(why) => {
                tracing::debug!(
                    "shared cache `{}`: skipping {what}: it failed earlier in this run ({why})",
                    self.backend.remote()
                );
                true
            }
            None => false,
        }
    }

    /// The indexes of `record`'s packs: kept from before, or one ranged read each.
    async fn indexes(
        &self,
        record: &Record,
        state: &state::State,
    ) -> Result<Vec<packs::PackIndex>, RemoteError> {
        let mut out: Vec<Option<packs::PackIndex>> =
            record.packs.iter().map(|p| state.index(p)).collect();
        let missing: Vec<(usize, PackRef)> = out
            .iter()
            .enumerate()
            .filter(|(_, i)| i.is_none())
            .map(|(n, _)| (n, record.packs[n]))
            .collect();
        let fetched = self
            .in_flight(missing, |backend, (n, pack)| async move {
                let at = pack.index.offset..pack.bytes;
                let got = backend.get_range(&pack.path(), at).await;
                (n, pack, got)
            })
            .await;
        for (n, pack, got) in fetched {
            let bytes = got?.ok_or_else(|| self.missing(&pack.path(), record))?;
            if Digest::of(&bytes) != pack.index.sha256 {
                return Err(self.corrupt(&pack, "its index does not match its record", state));
            }
            let index = packs::PackIndex::decode(&bytes, pack.index.offset)
                .map_err(|why| self.unusable(&pack.path(), why))?;
            state.save_index(&pack, &bytes);
            out[n] = Some(index);
        }
        Ok(out
            .into_iter()
            .map(|i| i.expect("every index read"))
            .collect())
    }

    fn missing(&self, path: &str, record: &Record) -> RemoteError {
        RemoteError::MissingBlob {
            remote: self.describe(),
            path: path.to_owned(),
            record: Self::record_path(&record.tier, &record.key).unwrap_or_default(),
        }
    }

    /// A pack that does not hold what its record says (`why`): forgotten, so the
    /// next upload sends its blobs again.
    fn corrupt(&self, pack: &PackRef, why: &str, state: &state::State) -> RemoteError {
        state.forget(&pack.sha256);
        RemoteError::Digest {
            remote: self.describe(),
            path: pack.path(),
            why: why.to_owned(),
        }
    }

    /// Run `f` over `items`, [`IN_FLIGHT`] at a time; results in any order.
    async fn in_flight<I, F, Fut, T>(&self, items: Vec<I>, f: F) -> Vec<T>
    where
        I: Send + 'static,
        F: Fn(Arc<backend::Backend>, I) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let mut set = tokio::task::JoinSet::new();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if set.len() >= IN_FLIGHT {
                if let Some(Ok(t)) = set.join_next().await {
                    out.push(t);
                }
            }
            set.spawn(f(self.backend.clone(), item));
        }
        while let Some(joined) = set.join_next().await {
            if let Ok(t) = joined {
                out.push(t);
            }
        }
        out
    }

    /// Download the blobs of `wanted` from `record`'s packs, reading only the
    /// frames that hold them, and hand each to `got`, which checks it against its
    /// digest: `false` means the pack is damaged. What arrives is decompressed and
    /// handed over on a blocking thread, so that the reads still in flight are
    /// served meanwhile (a Redis connection answers within 500 ms or fails).
    async fn download(
        &self,
        record: &Record,
        indexes: &[packs::PackIndex],
        wanted: &HashSet<Digest>,
        state: &state::State,
        got: Got,
    ) -> Result<(), RemoteError> {
        // Each blob from the first pack that has it.
        let mut per_pack: Vec<Vec<(Digest, Range<u64>)>> = vec![Vec::new(); indexes.len()];
        for d in wanted {
            let (n, range) = indexes
                .iter()
                .enumerate()
                .find_map(|(n, i)| i.blobs.get(d).map(|r| (n, r.clone())))
                .ok_or_else(|| {
                    self.unusable(
                        &Self::record_path(&record.tier, &record.key).unwrap_or_default(),
                        format!("none of its packs holds the blob {d}"),
                    )
                })?;
            if range.is_empty() {
                // A blob of no bytes (an empty file) is in no frame: no read.
                if !got(*d, &[])? {
                    let why = format!("the blob {d} in it does not match its digest");
                    return Err(self.corrupt(&record.packs[n], &why, state));
                }
                continue;
            }
            per_pack[n].push((*d, range));
        }
        let mut reads = Vec::new();
        for (n, blobs) in per_pack.into_iter().enumerate() {
            for span in packs::plan(&indexes[n], blobs, MERGE_GAP, READ_BYTES, READ_RAW_BYTES) {
                let frames = indexes[n].frames[span.frames.clone()].to_vec();
                reads.push((record.packs[n], span, frames));
            }
        }
        let total: u64 = reads
            .iter()
            .map(|(_, s, _)| s.stored.end - s.stored.start)
            .sum();
        let progress = self.progress.of(&record.tier);
        progress.phase_with_total("downloading", total, Unit::Bytes);

        // Several reads in flight; each handled as it arrives.
        let mut set = tokio::task::JoinSet::new();
        let mut reads = reads.into_iter();
        loop {
            while set.len() < IN_FLIGHT {
                let Some((pack, span, frames)) = reads.next() else {
                    break;
                };
                let backend = self.backend.clone();
                set.spawn(async move {
                    let bytes = backend.get_range(&pack.path(), span.stored.clone()).await;
                    (pack, span, frames, bytes)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (pack, span, frames, bytes) =
                joined.map_err(|e| io_error(Path::new("packs"), std::io::Error::other(e)))?;
            let bytes = bytes?.ok_or_else(|| self.missing(&pack.path(), record))?;
            progress.advance(bytes.len() as u64);
            if bytes.len() as u64 != span.stored.end - span.stored.start {
                return Err(self.corrupt(&pack, "it is shorter than its index says", state));
            }
            let got = got.clone();
            let handled =
                tokio::task::spawn_blocking(move || hand_over(&frames, &bytes, span, &*got))
                    .await
                    .map_err(|e| io_error(Path::new("packs"), std::io::Error::other(e)))??;
            if let Err(why) = handled {
                return Err(self.corrupt(&pack, &why, state));
            }
        }
        Ok(())
    }

    async fn fetch_into(
        &self,
        tier: &str,
        key: &Key,
        dest: &Path,
        local: &Blobs,
    ) -> Result<Option<Marker>, RemoteError> {
        let Some(record) = self.record(tier, key).await? else {
            return Ok(None);
        };
        let record_path = Self::record_path(tier, key)?;
        let state = self.state(local);
        let indexes = self.indexes(&record, &state).await?;
        let reject = |source: UnpackError| RemoteError::Rejected {
            remote: self.describe(),
            record: record_path.clone(),
            source,
        };

        // The marker and the tree: chunks the last version had are taken from it.
        let mut chunks: HashMap<Digest, Vec<u8>> = HashMap::new();
        if let Some(base) = state.base(tier) {
            for bytes in [&base.marker, &base.tree] {
                for r in cdc::chunks(bytes) {
                    chunks.insert(Digest::of(&bytes[r.clone()]), bytes[r].to_vec());
                }
            }
        }
        let wanted: HashSet<Digest> = record
            .marker
            .chunks
            .iter()
            .chain(&record.tree.chunks)
            .filter(|d| !chunks.contains_key(d))
            .copied()
            .collect();
        // The chunks differ, so they hold no more than the two; a record whose
        // chunks say otherwise is refused before they fill the memory.
        let most = record.marker.bytes.saturating_add(record.tree.bytes);
        let fetched = Arc::new(std::sync::Mutex::new((chunks, 0u64)));
        let into = fetched.clone();
        let (remote, path) = (self.describe(), record_path.clone());
        let got: Got = Arc::new(move |d, b| {
            let mut into = into.lock().expect("not poisoned");
            into.1 += b.len() as u64;
            if into.1 > most {
                return Err(RemoteError::Record {
                    remote: remote.clone(),
                    path: path.clone(),
                    why: format!(
                        "its chunks hold more than the {most} bytes of its marker and tree"
                    ),
                });
            }
            let fine = Digest::of(b) == d;
            into.0.insert(d, b.to_vec());
            Ok(fine)
        });
        self.download(&record, &indexes, &wanted, &state, got)
            .await?;
        let chunks = std::mem::take(&mut fetched.lock().expect("not poisoned").0);
        let join = |c: &Chunked, what: &str| -> Result<Vec<u8>, RemoteError> {
            let bad = || {
                self.unusable(
                    &record_path,
                    format!("its {what}'s chunks do not make its {what}"),
                )
            };
            let mut out = Vec::new();
            for d in &c.chunks {
                let chunk = &chunks[d];
                if (out.len() + chunk.len()) as u64 > c.bytes {
                    return Err(bad());
                }
                out.extend_from_slice(chunk);
            }
            if Digest::of(&out) != c.sha256 || out.len() as u64 != c.bytes {
                return Err(bad());
            }
            Ok(out)
        };
        let marker_bytes = join(&record.marker, "marker")?;
        let tree_bytes = join(&record.tree, "tree")?;
        let marker: Marker = serde_json::from_slice(&marker_bytes)
            .map_err(|e| self.unusable(&record_path, format!("its marker: {e}")))?;
        check_marker(&marker, key).map_err(|why| self.unusable(&record_path, why))?;
        let tree = Tree::decode(&tree_bytes)
            .map_err(|why| self.unusable(&record_path, format!("its tree: {why}")))?;
        restore::prepare(dest, &tree).map_err(reject)?;

        // Files and named blobs: from the local store where it has them.
        let mut sinks: HashMap<Digest, Sink> = HashMap::new();
        for (n, f) in tree.files.iter().enumerate() {
            match local_bytes(local, &f.digest) {
                Some(bytes) => restore::write_file(dest, f, &bytes).map_err(reject)?,
                None => sinks.entry(f.digest).or_default().files.push(n),
            }
        }
        for d in &tree.named {
            if !local.contains(d) {
                sinks.entry(*d).or_default().carried = true;
            }
        }
        let wanted: HashSet<Digest> = sinks.keys().copied().collect();
        let tree = Arc::new(tree);
        let got: Got = {
            let (tree, local, dest) = (tree.clone(), local.clone(), dest.to_owned());
            let (remote, record) = (self.describe(), record_path.clone());
            Arc::new(move |d, bytes| {
                let sink = &sinks[&d];
                if sink.carried {
                    // Straight into the store, under the digest of what is written
                    // (the engine's lease keeps a sweep out until the entry is
                    // published): the store's hash is the check.
                    let stored = local
                        .put(bytes)
                        .map_err(|e| io_error(local.dir(), std::io::Error::other(e.to_string())))?;
                    if stored != d {
                        return Ok(false);
                    }
                } else if Digest::of(bytes) != d {
                    return Ok(false);
                }
                for n in &sink.files {
                    restore::write_file(&dest, &tree.files[*n], bytes).map_err(|source| {
                        RemoteError::Rejected {
                            remote: remote.clone(),
                            record: record.clone(),
                            source,
                        }
                    })?;
                }
                Ok(true)
            })
        };
        self.download(&record, &indexes, &wanted, &state, got)
            .await?;
        restore::write_links(dest, &tree).map_err(reject)?;
        let tree_path = dest.join(tiers_core::TREE);
        std::fs::write(&tree_path, &tree_bytes).map_err(|e| io_error(&tree_path, e))?;
        state.save_base(tier, &record, &marker_bytes, &tree_bytes);
        Ok(Some(marker))
    }

    async fn store_entry(
        &self,
        tier: &str,
        marker: &Marker,
        dir: &Path,
        tree: &Tree,
        local: &Blobs,
    ) -> Result<(), RemoteError> {
        let _one_at_a_time = self.uploading.lock().await;
        let record_path = Self::record_path(tier, &marker.key)?;
        let state = self.state(local);
        let progress = self.progress.of(tier);
        progress.phase("packing for the shared cache");

        // What the entry is made of, each blob once, in the order it is packed.
        let marker_bytes = serde_json::to_vec(marker).expect("a marker serializes");
        let tree_bytes = tree.encode();
        let (marker_chunks, marker_ranges) = Chunked::of(&marker_bytes);
        let (tree_chunks, tree_ranges) = Chunked::of(&tree_bytes);
        let mut parts: Vec<(Digest, Part)> = Vec::new();
        let mut seen = HashSet::new();
        for (d, r) in marker_chunks.chunks.iter().zip(marker_ranges) {
            if seen.insert(*d) {
                parts.push((*d, Part::Marker(r)));
            }
        }
        for (d, r) in tree_chunks.chunks.iter().zip(tree_ranges) {
            if seen.insert(*d) {
                parts.push((*d, Part::Tree(r)));
            }
        }
        let (mut files, mut bytes) = (0, 0);
        for f in &tree.files {
            let path = dir.join(&f.path);
            let n = file_len(&path)?;
            files += 1;
            bytes += n;
            if seen.insert(f.digest) {
                parts.push((f.digest, Part::File(path, n)));
            }
        }
        for d in &tree.named {
            if seen.insert(*d) {
                let path = local.path(d, false);
                let n = file_len(&path)?;
                parts.push((*d, Part::File(path, n)));
            }
        }

        // Which of them the server has: in packs this cache dir knows, each pack
        // checked once.
        let known = state.known();
        let mut uses: HashMap<Digest, (PackRef, usize)> = HashMap::new();
        for (d, _) in &parts {
            if let Some(pack) = known.get(d) {
                uses.entry(pack.sha256).or_insert((*pack, 0)).1 += 1;
            }
        }
        let mut reused: Vec<(PackRef, usize)> = uses.into_values().collect();
        reused.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.sha256.cmp(&b.0.sha256)));
        reused.truncate(MAX_REUSED_PACKS);
        let checked = self
            .in_flight(reused, |backend, (pack, _)| async move {
                let there = backend.check(&pack.path(), pack.bytes).await;
                (pack, there)
            })
            .await;
        let mut packs = Vec::new();
        for (pack, there) in checked {
            if there? {
                packs.push(pack);
            } else {
                tracing::debug!(
                    "shared cache `{}`: `{}` is gone; its blobs are sent again",
                    self.describe(),
                    pack.path()
                );
                state.forget(&pack.sha256);
            }
        }
        packs.sort_by_key(|p| p.sha256);
        let on_server: HashSet<Digest> = packs.iter().map(|p| p.sha256).collect();
        let new: Vec<(Digest, Part)> = parts
            .into_iter()
            .filter(|(d, _)| !known.get(d).is_some_and(|p| on_server.contains(&p.sha256)))
            .collect();

        // The rest, packed on a thread and sent as each pack is done: at most
        // two packs are in memory, however large the entry.
        let (limit, marker_arc, tree_arc) = (
            self.pack_bytes,
            Arc::new(marker_bytes),
            Arc::new(tree_bytes),
        );
        let raw: u64 = new.iter().map(|(_, p)| p.len()).sum();
        progress.phase_with_total("uploading", raw, Unit::Bytes);
        let (m, t) = (marker_arc.clone(), tree_arc.clone());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<packs::Packed>(1);
        let packing = tokio::task::spawn_blocking(move || {
            pack_parts(&new, &m, &t, limit, |p| tx.blocking_send(p).is_ok())
        });
        while let Some(p) = rx.recv().await {
            // What readers would refuse is not sent (nor the record naming it).
            let why = if packs.len() >= MAX_PACKS {
                Some(format!(
                    "it needs more than the {MAX_PACKS} packs readers accept"
                ))
            } else if p.pack.bytes > MAX_BLOB_BYTES {
                Some(format!(
                    "a pack of it holds {} bytes, and readers accept at most {MAX_BLOB_BYTES}",
                    p.pack.bytes
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(RemoteError::Pack {
                    dir: dir.to_owned(),
                    why,
                });
            }
            // Always written, even when a pack of that name exists: that is how a
            // damaged one is replaced.
            self.backend.put(&p.pack.path(), p.bytes).await?;
            progress.advance(p.raw);
            state.save_index(&p.pack, &p.index);
            packs.push(p.pack);
        }
        packing
            .await
            .map_err(|e| io_error(dir, std::io::Error::other(e)))??;
        let record = Record {
            format: RECORD_FORMAT,
            tier: tier.to_owned(),
            key: marker.key.clone(),
            files,
            bytes,
            marker: marker_chunks,
            tree: tree_chunks,
            packs,
        };
        let json = serde_json::to_vec_pretty(&record).expect("a record always serializes");
        let stored = self.seal(&record_path, json);
        if stored.len() > MAX_RECORD_BYTES {
            return Err(RemoteError::TooLarge {
                remote: self.describe(),
                path: record_path,
                what: "a record",
                limit: MAX_RECORD_BYTES as u64,
            });
        }
        self.backend.put(&record_path, stored).await?;
        state.save_base(tier, &record, &marker_arc, &tree_arc);
        Ok(())
    }

    /// Remove the pack at `path` from the server if it is damaged (its bytes do
    /// not hash to its name), so that uploads that knew it find it gone and send
    /// its blobs again. Read whole first: a record that misplaces a sound pack's
    /// index does not get it removed. Only a writable remote removes anything.
    async fn remove_if_damaged(&self, path: &str) {
        let Some(name) = path.strip_prefix("packs/").and_then(Digest::parse) else {
            return;
        };
        if !self.writable {
            return;
        }
        let damaged = match self.backend.get(path).await {
            Ok(Some(bytes)) => Digest::of(&bytes) != name,
            Ok(None) | Err(_) => false,
        };
        if damaged {
            match self.backend.delete(path).await {
                Ok(()) => tracing::debug!(
                    "shared cache `{}`: removed the damaged `{path}`",
                    self.describe()
                ),
                Err(e) => tracing::debug!("shared cache `{}`: {e}", self.describe()),
            }
        }
    }

    /// Delete an object (tests, and tools that prune the store).
    pub async fn delete(&self, path: &str) -> Result<(), RemoteError> {
        self.backend.delete(path).await
    }
}

/// A blob of an upload: where its bytes are.
enum Part {
    Marker(Range<usize>),
    Tree(Range<usize>),
    /// A file, and its length.
    File(PathBuf, u64),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Marker(r) | Part::Tree(r) => r.len() as u64,
            Part::File(_, len) => *len,
        }
    }
}

fn file_len(path: &Path) -> Result<u64, RemoteError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| io_error(path, e))
}

/// `parts` in packs of about `limit` bytes each, each handed to `emit` when
/// done; `emit` answers whether to go on.
fn pack_parts(
    parts: &[(Digest, Part)],
    marker: &[u8],
    tree: &[u8],
    limit: usize,
    mut emit: impl FnMut(packs::Packed) -> bool,
) -> Result<(), RemoteError> {
    let fail = |e: std::io::Error| io_error(Path::new("packs"), e);
    let stopped = || fail(std::io::Error::other("the upload stopped"));
    let mut writer = packs::PackWriter::new(limit);
    let mut chunks = true;
    for (d, part) in parts {
        if chunks && matches!(part, Part::File(..)) {
            // The marker's and tree's chunks in frames of their own: a restore
            // reads them first, then the frames of the blobs the tree names.
            chunks = false;
            writer.cut().map_err(fail)?;
        }
        let owned;
        let bytes: &[u8] = match part {
            Part::Marker(r) => &marker[r.clone()],
            Part::Tree(r) => &tree[r.clone()],
            Part::File(path, _) => {
                owned = std::fs::read(path).map_err(|e| io_error(path, e))?;
                // Nothing damaged leaves this machine: what the server has was
                // checked when it was sent, what is sent is checked here.
                if Digest::of(&owned) != *d {
                    return Err(RemoteError::Damaged {
                        path: path.clone(),
                        digest: d.to_string(),
                    });
                }
                &owned
            }
        };
        writer.add(*d, bytes).map_err(fail)?;
        if writer.is_full() {
            let full = std::mem::replace(&mut writer, packs::PackWriter::new(limit));
            if !emit(full.finish().map_err(fail)?) {
                return Err(stopped());
            }
        }
    }
    if !writer.is_empty() && !emit(writer.finish().map_err(fail)?) {
        return Err(stopped());
    }
    Ok(())
}

/// The local store's bytes of `digest`, whichever mode it was stored with.
fn local_bytes(local: &Blobs, digest: &Digest) -> Option<Vec<u8>> {
    [false, true].into_iter().find_map(|exec| {
        std::fs::read(local.path(digest, exec))
            .ok()
            .filter(|b| Digest::of(b) == *digest)
    })
}

/// What the checks of the key cannot tell: the marker is of this key, and its
/// paths stay inside the project.
fn check_marker(marker: &Marker, key: &Key) -> Result<(), String> {
    if marker.key != *key || marker.doc.key() != *key {
        return Err(format!(
            "it describes key {} (its key document hashes to {}), not {key}",
            marker.key,
            marker.doc.key()
        ));
    }
    let doc = &marker.doc;
    if let Some(p) = doc.inputs.keys().find(|p| !wire::is_input_path(p)) {
        return Err(format!("its key document names the input `{p}`"));
    }
    for p in marker.used_inputs.iter().flatten() {
        if !doc.inputs.contains_key(p) {
            return Err(format!(
                "it names `{p}` as a used input, which its key document does not have"
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl SharedCache for Remote {
    fn describe(&self) -> String {
        self.backend.remote().to_owned()
    }

    fn identity(&self) -> String {
        match &self.signing {
            Some(key) => format!("{} signed {}", self.describe(), key.fingerprint()),
            None => self.describe(),
        }
    }

    fn writable(&self) -> bool {
        self.writable
    }

    async fn fetch(
        &self,
        tier: &str,
        key: &Key,
        dest: &Path,
        local: &Blobs,
    ) -> tiers_core::Result<Option<Marker>> {
        if self.off("a fetch") {
            return Ok(None);
        }
        self.progress.of(tier).phase("asking the shared cache");
        let fetched = self.fetch_into(tier, key, dest, local).await;
        if let Err(RemoteError::Digest { path, .. }) = &fetched {
            self.remove_if_damaged(path).await;
        }
        Ok(self.miss_if_untrusted(fetched)?)
    }

    async fn contains(&self, tier: &str, key: &Key) -> tiers_core::Result<bool> {
        if self.off("a lookup") {
            return Ok(false);
        }
        let record = self.miss_if_untrusted(self.record(tier, key).await)?;
        Ok(record.is_some())
    }

    async fn store(
        &self,
        tier: &str,
        marker: &Marker,
        dir: &Path,
        tree: &Tree,
        local: &Blobs,
    ) -> tiers_core::Result<()> {
        if !self.writable {
            // The engine checks `writable` first; this keeps read-only true regardless.
            tracing::debug!(
                "shared cache `{}` is read-only: not uploading",
                self.describe()
            );
            return Ok(());
        }
        if self.off("an upload") {
            return Ok(());
        }
        Ok(self.store_entry(tier, marker, dir, tree, local).await?)
    }

    async fn candidates(
        &self,
        tier: &str,
        structure_key: &Key,
    ) -> tiers_core::Result<Vec<Candidate>> {
        if self.off("a candidate lookup") {
            return Ok(Vec::new());
        }
        let read = self.candidate_list(tier, structure_key).await;
        Ok(self.miss_if_untrusted(read)?.unwrap_or_default())
    }

    async fn store_candidates(
        &self,
        tier: &str,
        structure_key: &Key,
        list: &[Candidate],
    ) -> tiers_core::Result<()> {
        if !self.writable || self.off("a candidate upload") {
            return Ok(());
        }
        let path = Self::candidates_path(tier, structure_key)?;
        // What readers would drop is not written: candidates that name no used input.
        let mut list: Vec<Candidate> = list
            .iter()
            .filter(|c| !c.used.is_empty())
            .take(CANDIDATE_LIMIT)
            .cloned()
            .collect();
        loop {
            let json = serde_json::to_vec(&CandidateList {
                format: CANDIDATES_FORMAT,
                candidates: &list,
            })
            .expect("candidates always serialize");
            let stored = self.seal(&path, json);
            if stored.len() <= MAX_CANDIDATES_BYTES || list.is_empty() {
                return Ok(self.backend.put(&path, stored).await?);
            }
            // Newest first: the oldest goes.
            list.pop();
        }
    }

    fn traffic(&self) -> Option<String> {
        let t = self.backend.traffic();
        (!t.is_empty()).then(|| t.summary())
    }
}

impl Remote {
    /// The candidate list of `skey`, parsed and capped; `None` when there is none.
    async fn candidate_list(
        &self,
        tier: &str,
        skey: &Key,
    ) -> Result<Option<Vec<Candidate>>, RemoteError> {
        let path = Self::candidates_path(tier, skey)?;
        let Some(body) = self
            .read_object(
                &path,
                tier,
                skey,
                "a candidate list",
                MAX_CANDIDATES_BYTES,
                CANDIDATES_FORMAT,
            )
            .await?
        else {
            return Ok(None);
        };
        let mut list = serde_json::from_slice::<wire::CandidateList>(&body)
            .map_err(|e| self.unusable(&path, e.to_string()))?
            .candidates;
        let before = list.len();
        // A candidate that used no input would match every state of the project; no
        // writer of tiers uploads one, so one from the shared cache is not trusted.
        list.retain(|c| !c.used.is_empty());
        if list.len() < before {
            tracing::warn!(
                "shared cache {}: `{path}` (tier `{tier}`, key {skey}): {} candidates that name no used input are not used",
                self.describe(),
                before - list.len()
            );
        }
        Ok(Some(list))
    }

    /// An unsigned, mis-signed or oversized object is a miss with one warning; other
    /// errors go to the engine (which warns and builds locally).
    fn miss_if_untrusted<T: Default>(&self, got: Result<T, RemoteError>) -> Result<T, RemoteError> {
        match got {
            Err(e @ (RemoteError::Unsigned { .. } | RemoteError::TooLarge { .. })) => {
                tracing::warn!("shared cache {}: {e}", self.describe());
                Ok(T::default())
            }
            other => other,
        }
    }
}

/// A tier name as one path segment of an object name.
fn object_name(name: &str) -> Result<&str, RemoteError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(name)
    } else {
        Err(RemoteError::Name {
            name: name.to_owned(),
        })
    }
}

fn io_error(path: &Path, source: std::io::Error) -> RemoteError {
    RemoteError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod review_tests {
    //! Review of format 2 (issue 19): uploads and restores through a directory
    //! store, and records a hostile writer could leave there.

    use super::*;
    use tiers_core::KeyDoc;

    /// A cache dir and its blob store.
    struct Side {
        dir: tempfile::TempDir,
        blobs: Blobs,
    }

    fn side() -> Side {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::of_cache_dir(dir.path());
        Side { dir, blobs }
    }

    fn marker(seed: &str) -> Marker {
        let doc = KeyDoc::new("command", 1).option("seed", seed);
        Marker {
            format: 1,
            tier: "t".to_owned(),
            key: doc.key(),
            doc,
            created_unix: 1_700_000_000,
            build_seconds: 1.5,
            used_inputs: None,
            data: serde_json::Value::Null,
        }
    }

    fn remote(store: &Path) -> Remote {
        let loc = Location::parse(&format!("file://{}", store.display()), &|_| None).unwrap();
        Remote::at(&loc, true, Duration::from_secs(30), Retry::default()).unwrap()
    }

    /// `files` as an entry published in a fresh cache dir: the side, the entry
    /// dir and its tree.
    fn entry(files: &[(String, Vec<u8>)]) -> (Side, PathBuf, Tree) {
        let s = side();
        let dir = s.dir.path().join("t").join("entry");
        for (p, b) in files {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b).unwrap();
        }
        let tree = s
            .blobs
            .ingest(&s.dir.path().join("t"), &dir, vec![])
            .unwrap();
        (s, dir, tree)
    }

    /// Upload `files` under a key of `seed`; the upload's error, if any.
    async fn upload(r: &Remote, seed: &str, files: &[(String, Vec<u8>)]) -> Result<Marker, String> {
        let m = marker(seed);
        let (src, dir, tree) = entry(files);
        r.store_entry("t", &m, &dir, &tree, &src.blobs)
            .await
            .map_err(|e| e.to_string())?;
        Ok(m)
    }

    /// Restore `key` into a fresh cache dir: its files, or why not.
    async fn restore(r: &Remote, key: &Key) -> Result<Vec<(String, Vec<u8>)>, String> {
        let fresh = side();
        let dest = fresh.dir.path().join("stage");
        std::fs::create_dir(&dest).unwrap();
        let got = r
            .fetch_into("t", key, &dest, &fresh.blobs)
            .await
            .map_err(|e| e.to_string())?;
        assert!(got.is_some(), "no record");
        let tree = Tree::read(&dest).unwrap().unwrap();
        Ok(tree
            .files
            .iter()
            .map(|f| {
                let rel = f.path.display().to_string();
                (rel, std::fs::read(dest.join(&f.path)).unwrap())
            })
            .collect())
    }

    fn file(name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
        (name.to_owned(), bytes.to_vec())
    }

    /// An empty file is a blob of no bytes; packed last, it sits at the end of
    /// the pack's last frame. A store that lacks it restores it.
    #[tokio::test]
    async fn an_entry_ending_in_an_empty_file_restores_into_a_fresh_store() {
        let store = tempfile::tempdir().unwrap();
        let r = remote(store.path());
        let files = vec![file("a.txt", &b"alpha\n".repeat(100)), file("z.txt", b"")];
        let m = upload(&r, "tail", &files).await.unwrap();
        assert_eq!(restore(&r, &m.key).await.unwrap(), files);
    }

    /// An entry of one empty file (a stamp): its blob starts the frame after the
    /// marker's and tree's, and no frame holds it.
    #[tokio::test]
    async fn an_entry_of_one_empty_file_restores_into_a_fresh_store() {
        let store = tempfile::tempdir().unwrap();
        let r = remote(store.path());
        let files = vec![file("done", b"")];
        let m = upload(&r, "stamp", &files).await.unwrap();
        assert_eq!(restore(&r, &m.key).await.unwrap(), files);
    }

    fn numbered(n: usize) -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| file(&format!("f{i:04}"), format!("file {i}\n").as_bytes()))
            .collect()
    }

    /// A large entry is in many packs (here: one blob per pack). What the writer
    /// records, readers accept.
    #[tokio::test]
    async fn an_entry_in_a_hundred_packs_restores() {
        let store = tempfile::tempdir().unwrap();
        let r = remote(store.path()).with_pack_bytes(1);
        let files = numbered(100);
        let m = upload(&r, "hundred", &files).await.unwrap();
        assert_eq!(restore(&r, &m.key).await.unwrap(), files);
    }

    /// Past the number of packs a reader accepts, the upload is refused and no
    /// record is written that every reader would refuse.
    #[tokio::test]
    async fn an_entry_in_more_packs_than_readers_accept_is_not_recorded() {
        let store = tempfile::tempdir().unwrap();
        let r = remote(store.path()).with_pack_bytes(1);
        let files = numbered(1100);
        let m = marker("too-many");
        let (src, dir, tree) = entry(&files);
        let stored = r.store_entry("t", &m, &dir, &tree, &src.blobs).await;
        let record = Remote::record_path("t", &m.key).unwrap();
        assert!(!store.path().join(&record).exists(), "{stored:?}");
        assert!(stored.is_err());
    }

    /// How much the process's peak resident memory grows while `f` runs. The
    /// peak is reset first (Linux's `clear_refs`), and one such test runs at a
    /// time, so that another's peak neither hides nor adds to this one's.
    async fn growth<T>(f: impl std::future::Future<Output = T>) -> (T, u64) {
        static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one = ONE.lock().await;
        let peak = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap();
            kb * 1024
        };
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = peak();
        let out = f.await;
        (out, peak().saturating_sub(before))
    }

    /// Write `record` and `packs` as a writer with access to the store could.
    fn plant(store: &Path, record: &Record, packs: &[packs::Packed]) {
        for p in packs {
            let path = store.join(p.pack.path());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &p.bytes).unwrap();
        }
        let path = store.join(Remote::record_path(&record.tier, &record.key).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_vec(record).unwrap()).unwrap();
    }

    /// A real marker, chunked, with its chunks added to `w`.
    /// A record of `m`'s key in tier `t`, of no files, in no pack: what a hostile
    /// writer starts from.
    fn bare(m: &Marker) -> Record {
        let none = Chunked {
            sha256: Digest::of(b""),
            bytes: 0,
            chunks: Vec::new(),
        };
        Record {
            format: RECORD_FORMAT,
            tier: "t".into(),
            key: m.key.clone(),
            files: 0,
            bytes: 0,
            marker: none.clone(),
            tree: none,
            packs: Vec::new(),
        }
    }

    fn marker_chunks(m: &Marker, w: &mut packs::PackWriter) -> Chunked {
        let bytes = serde_json::to_vec(m).unwrap();
        let (chunked, ranges) = Chunked::of(&bytes);
        for (d, r) in chunked.chunks.iter().zip(ranges) {
            w.add(*d, &bytes[r]).unwrap();
        }
        chunked
    }

    /// A record whose tree repeats one chunk of 16 KiB sixty-five thousand times
    /// (its size says 64 MiB, its chunks make 1 GiB): the reader stops joining
    /// once the chunks pass the size the record gives.
    #[tokio::test]
    async fn a_record_repeating_one_chunk_does_not_make_a_reader_hold_a_gigabyte() {
        let store = tempfile::tempdir().unwrap();
        let m = marker("repeated-chunk");
        let mut w = packs::PackWriter::new(packs::PACK_BYTES);
        let marker = marker_chunks(&m, &mut w);
        let zeros = vec![0u8; cdc::MAX];
        w.add(Digest::of(&zeros), &zeros).unwrap();
        let packed = w.finish().unwrap();
        let bytes: u64 = 64 << 20;
        let record = Record {
            marker,
            tree: Chunked {
                sha256: Digest::of(b"not this"),
                bytes,
                chunks: vec![Digest::of(&zeros); (bytes / cdc::MIN as u64 + 1) as usize],
            },
            packs: vec![packed.pack],
            ..bare(&m)
        };
        plant(store.path(), &record, &[packed]);
        let (got, grew) = growth(restore(&remote(store.path()), &m.key)).await;
        assert!(got.is_err());
        assert!(grew < 512 << 20, "the peak grew by {} MiB", grew >> 20);
    }

    /// A record that names one pack over and over would make a reader read and
    /// hold its index as many times: refused before any index is read.
    #[tokio::test]
    async fn a_record_naming_a_pack_twice_is_refused() {
        let store = tempfile::tempdir().unwrap();
        let m = marker("pack-twice");
        let mut w = packs::PackWriter::new(packs::PACK_BYTES);
        let marker = marker_chunks(&m, &mut w);
        let packed = w.finish().unwrap();
        let record = Record {
            tree: marker.clone(),
            marker,
            packs: vec![packed.pack; 2],
            ..bare(&m)
        };
        plant(store.path(), &record, &[packed]);
        let r = remote(store.path());
        let e = r.record("t", &m.key).await.unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        assert_eq!(
            r.traffic().reads.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    /// A record whose tree says 600 KiB in 600 chunks, each chunk a different
    /// MiB in the pack (each frame of it a few bytes): the reader holds no more
    /// chunks than the marker and tree can be made of.
    #[tokio::test]
    async fn a_record_of_large_chunks_does_not_make_a_reader_hold_them_all() {
        let store = tempfile::tempdir().unwrap();
        let m = marker("large-chunks");
        let mut w = packs::PackWriter::new(usize::MAX);
        let marker = marker_chunks(&m, &mut w);
        let mut chunks = Vec::new();
        let mut big = vec![0u8; packs::FRAME_RAW];
        for n in 0..600u32 {
            big[..4].copy_from_slice(&n.to_le_bytes());
            chunks.push(Digest::of(&big));
            w.add(Digest::of(&big), &big).unwrap();
        }
        let packed = w.finish().unwrap();
        let record = Record {
            marker,
            tree: Chunked {
                sha256: Digest::of(b"not this"),
                bytes: 600 << 10,
                chunks,
            },
            packs: vec![packed.pack],
            ..bare(&m)
        };
        plant(store.path(), &record, &[packed]);
        let (got, grew) = growth(restore(&remote(store.path()), &m.key)).await;
        assert!(got.is_err());
        assert!(grew < 256 << 20, "the peak grew by {} MiB", grew >> 20);
    }

    /// A pack whose index says 512 blobs of 1 MiB are in frames of a few bytes
    /// each (1 MiB of zeros compresses to almost nothing): a reader inflates a
    /// bounded part of it per read, not all of it at once.
    #[tokio::test]
    async fn frames_that_inflate_far_beyond_their_size_are_read_a_bounded_part_at_a_time() {
        let store = tempfile::tempdir().unwrap();
        let m = marker("zip-bomb");
        // The marker's and tree's chunks in a pack of their own; the tree names
        // 512 files the other pack claims to hold.
        let names: Vec<Digest> = (0..512u32).map(|n| Digest::of(&n.to_le_bytes())).collect();
        let tree = Tree {
            format: 1,
            files: names
                .iter()
                .enumerate()
                .map(|(n, d)| tiers_core::TreeFile {
                    path: format!("f{n}").into(),
                    digest: *d,
                    exec: false,
                })
                .collect(),
            ..Tree::default()
        };
        let tree_bytes = tree.encode();
        let mut w = packs::PackWriter::new(packs::PACK_BYTES);
        let marker = marker_chunks(&m, &mut w);
        let (tree_chunks, ranges) = Chunked::of(&tree_bytes);
        for (d, r) in tree_chunks.chunks.iter().zip(ranges) {
            w.add(*d, &tree_bytes[r]).unwrap();
        }
        let first = w.finish().unwrap();
        let zeros = vec![0u8; packs::FRAME_RAW];
        let mut w = packs::PackWriter::new(usize::MAX);
        for d in &names {
            // Not the digest of its bytes: the reader finds out after inflating.
            w.add(*d, &zeros).unwrap();
        }
        let bomb = w.finish().unwrap();
        assert!(bomb.bytes.len() < 1 << 20, "{}", bomb.bytes.len());
        let record = Record {
            files: 512,
            bytes: 512 << 20,
            marker,
            tree: tree_chunks,
            packs: vec![first.pack, bomb.pack],
            ..bare(&m)
        };
        plant(store.path(), &record, &[first, bomb]);
        let (got, grew) = growth(restore(&remote(store.path()), &m.key)).await;
        assert!(got.is_err());
        assert!(grew < 256 << 20, "the peak grew by {} MiB", grew >> 20);
    }
}
