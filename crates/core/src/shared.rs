//! A second cache level behind the local store, shared between machines.
//!
//! The engine looks up local exact → local candidates → shared exact → shared
//! candidates → build, and after a local build uploads the entry (blobs first, the
//! record last, in the implementation) when the level is writable. The engine
//! hands the level its local blob store, so that it moves only the blobs one side
//! lacks. Any error of the
//! shared level is one warning and a miss: a build never fails because a server is
//! down, and the level is not switched off for later runs.
//!
//! `tiers-remote` implements this on OpenDAL; embedders may bring their own.

use std::path::Path;

use async_trait::async_trait;

use crate::blobs::{Blobs, Tree};
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

    /// Restore the entry of `key` into the empty dir `dest` — its files, its
    /// `entry.tree`, and the blobs the tree names that `local` lacks as
    /// `.tiers-blobs/<digest>` — and return its marker; `Ok(None)` when the level
    /// does not have it. Files whose blobs `local` holds need not be downloaded.
    /// Nothing may be written outside `dest` but what the level keeps about itself
    /// in the cache dir's `.remote/`.
    async fn fetch(
        &self,
        tier: &str,
        key: &Key,
        dest: &Path,
        local: &Blobs,
    ) -> Result<Option<Marker>>;

    /// Whether the level has the entry of `key` (for `tiers status`).
    async fn contains(&self, tier: &str, key: &Key) -> Result<bool>;

    /// Upload the published entry in `dir` with its marker and `tree` (its files
    /// are in `dir`, the blobs it names in `local`). Nothing that does not hash
    /// to the digest the tree gives may be sent: the upload fails instead.
    async fn store(
        &self,
        tier: &str,
        marker: &Marker,
        dir: &Path,
        tree: &Tree,
        local: &Blobs,
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

    /// What this run asked of the level: one line (`12 requests (…), 3 bytes up,
    /// …`) for `tiers -v`; `None` when it asked nothing.
    fn traffic(&self) -> Option<String> {
        None
    }
}
