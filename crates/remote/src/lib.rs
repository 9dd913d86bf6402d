//! The shared cache level of tiers, on storage people already run — Redis, WebDAV or
//! plain HTTP GET/PUT, S3, a directory — through Apache OpenDAL.
//!
//! # The big decision: content-addressed blobs, named by a small record written last
//!
//! ```text
//! <root>/blobs/<sha256>                         tar + zstd of an entry (in chunks)
//! <root>/records/<tier>/<key>.json              the marker and the blobs' digests
//! <root>/candidates/<tier>/<structure key>.json discovered-inputs candidates
//! <root>/.tmp/tiers-<host>-<pid>-<start>-<n>     a directory store's uploads in progress
//! ```
//!
//! An upload puts the blobs first and the record last, so a reader that finds a
//! record finds its blobs — unless something removed or damaged them, which the
//! SHA-256 in the blob's name catches: a blob whose bytes do not hash to its name is
//! a miss (one warning, a local build), and the upload after that build writes it
//! again. Packing is deterministic, so machines that build the same bytes share blobs.
//!
//! Nothing read from the remote is trusted. Records and candidate lists are refused
//! unparsed above a byte cap ([`MAX_RECORD_BYTES`], [`MAX_CANDIDATES_BYTES`]) and
//! parsed into types (keys are 64 hex digits, paths relative without `..`); a list
//! is read up to [`CANDIDATE_LIMIT`] candidates. A blob must have the size its record
//! gives and hash to its name. [`pack::unpack`] refuses absolute
//! paths, `..`, symlinks leaving the entry, hard links and devices, and never writes
//! through a symlink. But a read-write remote can still place *valid* files that later
//! runs use as their artifacts: give write access to trusted CI only, and with
//! `signing_key_env` ([`sign`]) readers holding the key accept only what a holder
//! of the key wrote.
//!
//! Failure is a miss, never a failed build: see [`backend`] for timeouts, retries and
//! how one failure switches the remote off for the rest of the run (not for later
//! runs). Venv entries are never offered here: their kinds are not
//! [`shareable`](tiers_core::Tier::shareable).

pub mod backend;
mod error;
pub mod fs_write;
pub mod location;
pub mod pack;
pub mod sign;
mod wire;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tiers_core::{
    async_trait, Candidate, Key, Marker, Progress, RemoteConfig, RemoteMode, Reporter, SharedCache,
    Unit, CANDIDATE_LIMIT,
};

pub use backend::Retry;
pub use error::{RemoteError, UnpackError};
pub use location::Location;
pub use sign::SigningKey;

/// Version of the record and candidate-list layout; another version is a miss.
pub const RECORD_FORMAT: u32 = 1;

/// Packed entries are cut into blobs of at most this many bytes: one request each,
/// bounded memory, and under Redis's 512 MiB value limit.
pub const CHUNK_BYTES: usize = 32 << 20;

/// A record larger than this is refused before it is parsed (it is still downloaded
/// whole: nginx's WebDAV and Redis answer no size without a body). A record is dominated by
/// its key document, about 150 bytes per input: 64 MiB holds some 400,000 inputs,
/// ten times the largest project tiers is measured on, while bounding what one hostile
/// record costs a reader. A writer does not upload a record it would refuse.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// A candidate list larger than this is refused before it is parsed: 32 candidates of
/// some 1,500 used inputs each. A writer drops its oldest candidates to stay below.
pub const MAX_CANDIDATES_BYTES: usize = 8 << 20;

/// No blob is larger: Redis's value limit, and far above [`CHUNK_BYTES`].
pub const MAX_BLOB_BYTES: u64 = 512 << 20;

/// `records/<tier>/<key>.json`: what a fetch needs to restore an entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub tier: String,
    pub key: Key,
    /// The chunks of the packed entry, in order.
    pub blobs: Vec<BlobRef>,
    /// Files and their bytes in the entry, unpacked.
    pub files: u64,
    pub bytes: u64,
    pub marker: Marker,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub sha256: Key,
    pub bytes: u64,
}

#[derive(Serialize)]
struct CandidateList<'a> {
    format: u32,
    candidates: &'a [Candidate],
}

/// The shared cache at one location. Usually reached through [`open`] as an
/// `Arc<dyn SharedCache>`.
pub struct Remote {
    backend: backend::Backend,
    writable: bool,
    chunk_bytes: usize,
    /// With a key, records and lists are signed, and unsigned ones are misses.
    signing: Option<SigningKey>,
    /// Where the bytes moved for a tier are reported: on that tier's line.
    progress: Reporter,
}

/// Open the shared cache `config` names. Connects to nothing yet: the first request
/// does, so an unreachable server is a warning at the first lookup, not an error here.
pub fn open(config: &RemoteConfig) -> Result<Arc<dyn SharedCache>, RemoteError> {
    Ok(Arc::new(Remote::open(config)?))
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
            backend: backend::Backend::open(loc, timeout, retry)?,
            writable,
            chunk_bytes: CHUNK_BYTES,
            signing: None,
            progress: Reporter::default(),
        })
    }

    /// Report the bytes downloaded, unpacked and uploaded for a tier on that
    /// tier's progress line (the engine's [`Reporter`]).
    pub fn with_progress(mut self, reporter: Reporter) -> Self {
        self.progress = reporter;
        self
    }

    /// Sign what this remote writes with `key` and accept only what it signed.
    pub fn with_signing(mut self, key: Option<SigningKey>) -> Self {
        self.signing = key;
        self
    }

    /// Cut packed entries into blobs of `bytes` (tests of multi-blob entries).
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(1);
        self
    }

    fn record_path(tier: &str, key: &Key) -> Result<String, RemoteError> {
        Ok(format!("records/{}/{key}.json", object_name(tier)?))
    }

    fn candidates_path(tier: &str, skey: &Key) -> Result<String, RemoteError> {
        Ok(format!("candidates/{}/{skey}.json", object_name(tier)?))
    }

    fn blob_path(digest: &Key) -> String {
        format!("blobs/{digest}")
    }

    /// The record of `key`, checked against it; `None` when there is none.
    pub async fn record(&self, tier: &str, key: &Key) -> Result<Option<Record>, RemoteError> {
        let path = Self::record_path(tier, key)?;
        let Some(body) = self
            .read_object(&path, tier, key, "a record", MAX_RECORD_BYTES)
            .await?
        else {
            return Ok(None);
        };
        let bad = |why: String| self.unusable(&path, why);
        let record: Record = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        if record.key != *key || record.marker.key != *key || record.marker.doc.key() != *key {
            return Err(bad(format!(
                "it describes key {} (its key document hashes to {}), not {key}",
                record.marker.key,
                record.marker.doc.key()
            )));
        }
        check_record(&record, tier).map_err(bad)?;
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
        if head.format != RECORD_FORMAT {
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

    async fn fetch_into(
        &self,
        tier: &str,
        key: &Key,
        dest: &Path,
    ) -> Result<Option<Marker>, RemoteError> {
        let Some(record) = self.record(tier, key).await? else {
            return Ok(None);
        };
        let record_path = Self::record_path(tier, key)?;
        let remote = self.backend.remote().to_owned();
        let progress = self.progress.of(tier);
        let packed: u64 = record.blobs.iter().map(|b| b.bytes).sum();
        progress.phase_with_total("downloading", packed, Unit::Bytes);
        let spool_dir = dest.parent().unwrap_or(dest);
        let mut spool = tempfile::tempfile_in(spool_dir)
            .or_else(|_| tempfile::tempfile())
            .map_err(|e| io_error(spool_dir, e))?;
        for blob in &record.blobs {
            let path = Self::blob_path(&blob.sha256);
            let bytes = self
                .backend
                .get(&path)
                .await?
                .ok_or_else(|| RemoteError::MissingBlob {
                    remote: remote.clone(),
                    path: path.clone(),
                    record: record_path.clone(),
                })?;
            let actual = Key::of_bytes(&bytes);
            if actual != blob.sha256 || bytes.len() as u64 != blob.bytes {
                return Err(RemoteError::Digest {
                    remote: remote.clone(),
                    path,
                    actual: actual.to_string(),
                });
            }
            spool
                .write_all(&bytes)
                .map_err(|e| io_error(spool_dir, e))?;
            progress.advance(bytes.len() as u64);
        }
        progress.phase_with_total("unpacking", packed, Unit::Bytes);
        spool
            .seek(SeekFrom::Start(0))
            .map_err(|e| io_error(spool_dir, e))?;
        let dest_owned = dest.to_owned();
        let unpacked = tokio::task::spawn_blocking(move || {
            pack::unpack(
                std::io::BufReader::new(Counted {
                    inner: spool,
                    progress,
                }),
                &dest_owned,
                tiers_core::MARKER,
            )
        })
        .await
        .map_err(|e| io_error(dest, std::io::Error::other(e)))?;
        unpacked.map_err(|source| RemoteError::Rejected {
            remote,
            record: record_path,
            source,
        })?;
        Ok(Some(record.marker))
    }

    async fn store_entry(
        &self,
        tier: &str,
        marker: &Marker,
        dir: &Path,
        carried: &[std::path::PathBuf],
    ) -> Result<(), RemoteError> {
        let carried = carried.to_vec();
        let record_path = Self::record_path(tier, &marker.key)?;
        let progress = self.progress.of(tier);
        progress.phase("packing for the shared cache");
        let dir_owned = dir.to_owned();
        let packed = tokio::task::spawn_blocking(move || {
            let spool_dir = dir_owned.parent().unwrap_or(&dir_owned);
            let mut spool = tempfile::tempfile_in(spool_dir)
                .or_else(|_| tempfile::tempfile())
                .map_err(|e| io_error(spool_dir, e))?;
            let counts = pack::pack(
                &dir_owned,
                tiers_core::MARKER,
                &carried,
                tiers_core::CARRIED,
                std::io::BufWriter::new(&mut spool),
            )?;
            spool
                .seek(SeekFrom::Start(0))
                .map_err(|e| io_error(&dir_owned, e))?;
            Ok::<_, RemoteError>((spool, counts))
        })
        .await
        .map_err(|e| io_error(dir, std::io::Error::other(e)))?;
        let (mut spool, counts) = packed?;
        if progress.is_on() {
            let packed = spool.metadata().map_or(0, |m| m.len());
            progress.phase_with_total("uploading", packed, Unit::Bytes);
        }
        let mut blobs = Vec::new();
        loop {
            let chunk = read_chunk(&mut spool, self.chunk_bytes).map_err(|e| io_error(dir, e))?;
            if chunk.is_empty() {
                break;
            }
            let digest = Key::of_bytes(&chunk);
            blobs.push(BlobRef {
                sha256: digest.clone(),
                bytes: chunk.len() as u64,
            });
            // Always written, even when a blob of that name exists: that is how a
            // corrupt one is replaced.
            let sent = chunk.len() as u64;
            self.backend.put(&Self::blob_path(&digest), chunk).await?;
            progress.advance(sent);
        }
        let record = Record {
            format: RECORD_FORMAT,
            tier: tier.to_owned(),
            key: marker.key.clone(),
            blobs,
            files: counts.files,
            bytes: counts.bytes,
            marker: marker.clone(),
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
        self.backend.put(&record_path, stored).await
    }

    /// Delete an object (tests, and tools that prune the store).
    pub async fn delete(&self, path: &str) -> Result<(), RemoteError> {
        self.backend.delete(path).await
    }
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
    ) -> tiers_core::Result<Option<Marker>> {
        if self.off("a fetch") {
            return Ok(None);
        }
        self.progress.of(tier).phase("asking the shared cache");
        Ok(self.miss_if_untrusted(self.fetch_into(tier, key, dest).await)?)
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
        carried: &[std::path::PathBuf],
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
        Ok(self.store_entry(tier, marker, dir, carried).await?)
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
                format: RECORD_FORMAT,
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
            .read_object(&path, tier, skey, "a candidate list", MAX_CANDIDATES_BYTES)
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

/// What the checks of the key cannot tell: the record is of this tier, its blobs have
/// sane sizes, and its paths stay inside the project.
fn check_record(record: &Record, tier: &str) -> Result<(), String> {
    if record.tier != tier {
        return Err(format!("it is a record of tier `{}`", record.tier));
    }
    if let Some(b) = record
        .blobs
        .iter()
        .find(|b| b.bytes == 0 || b.bytes > MAX_BLOB_BYTES)
    {
        return Err(format!(
            "its blob {} has {} bytes (from 1 to {MAX_BLOB_BYTES})",
            b.sha256, b.bytes
        ));
    }
    let doc = &record.marker.doc;
    if let Some(p) = doc.inputs.keys().find(|p| !wire::is_input_path(p)) {
        return Err(format!("its key document names the input `{p}`"));
    }
    for p in record.marker.used_inputs.iter().flatten() {
        if !doc.inputs.contains_key(p) {
            return Err(format!(
                "it names `{p}` as a used input, which its key document does not have"
            ));
        }
    }
    Ok(())
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

/// A reader that reports the bytes read through it.
struct Counted<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

fn read_chunk(file: &mut File, max: usize) -> std::io::Result<Vec<u8>> {
    let mut chunk = Vec::new();
    Read::by_ref(file)
        .take(max as u64)
        .read_to_end(&mut chunk)?;
    Ok(chunk)
}

fn io_error(path: &Path, source: std::io::Error) -> RemoteError {
    RemoteError::Io {
        path: path.to_owned(),
        source,
    }
}
