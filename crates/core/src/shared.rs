//! A second cache level behind the local store, shared between machines.
//!
//! The engine looks up local exact → local candidates → shared exact → shared
//! candidates → build, and after a local build uploads the entry (blobs first, the
//! record last, in the implementation) when the level is writable. Any error of the
//! shared level is one warning and a miss: a build never fails because a server is
//! down, and the level is not switched off for later runs.
//!
//! `tiers-remote` implements this on OpenDAL; embedders may bring their own.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::candidates::Candidate;
use crate::error::Result;
use crate::key::Key;
use crate::store::Marker;

#[async_trait]
pub trait SharedCache: Send + Sync {
    /// Where it is, for messages (`redis://127.0.0.1:6379/0`).
    fn describe(&self) -> String;

    /// What an upload to this level is remembered against: where it is, and how
    /// entries are written there (a remote that signs with a new key, or starts
    /// signing, lacks what was uploaded before). Defaults to [`describe`](Self::describe).
    fn identity(&self) -> String {
        self.describe()
    }

    /// Whether this run may upload (`mode = "read-write"`).
    fn writable(&self) -> bool;

    /// Unpack the entry of `key` into the empty dir `dest` (its artifact files, not
    /// `entry.json`) and return its marker; `Ok(None)` when the level does not have it.
    /// Nothing may be written outside `dest`.
    async fn fetch(&self, tier: &str, key: &Key, dest: &Path) -> Result<Option<Marker>>;

    /// Whether the level has the entry of `key` (for `tiers status`).
    async fn contains(&self, tier: &str, key: &Key) -> Result<bool>;

    /// Upload the published entry in `dir` (`entry.json` excluded) with its marker,
    /// and with the blob files in `carried` (those the entry names without holding
    /// them), each as `.tiers-blobs/<its file name>`, which [`fetch`](Self::fetch)
    /// gives back in `dest`.
    async fn store(
        &self,
        tier: &str,
        marker: &Marker,
        dir: &Path,
        carried: &[PathBuf],
    ) -> Result<()>;

    /// The discovered-inputs candidates of `structure_key`, newest first.
    async fn candidates(&self, tier: &str, structure_key: &Key) -> Result<Vec<Candidate>>;

    /// Replace the candidates of `structure_key`.
    async fn store_candidates(
        &self,
        tier: &str,
        structure_key: &Key,
        list: &[Candidate],
    ) -> Result<()>;
}
