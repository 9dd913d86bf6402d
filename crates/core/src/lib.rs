//! The core of tiers: the [`Tier`] trait and the [`Engine`] that runs it.
//!
//! The one big decision: **kinds are small, the engine owns everything that must be
//! right once.** A kind says what its key is made of ([`Tier::key`]), how to build
//! ([`Tier::build`]), how to check health ([`Tier::probe`]) and where its artifact is
//! ([`Tier::path`]). The engine hashes inputs, turns key-document differences into
//! [`Reason`]s, locks each key, publishes entries atomically (marker last), applies
//! the `rebuild`/`eager` policy and `after` ordering, and reports.
//!
//! It also owns the one store of a cache dir ([`Blobs`]): every file an entry holds
//! and every part a kind names is a blob named by its SHA-256, stored once for all
//! tiers; an entry is its marker plus a [`Tree`]. Retention removes entries, and
//! only the engine's mark-and-sweep removes blobs, never one a live entry or a
//! running build may name (see `blobs.rs` for the layout and who deletes what).
//!
//! Kinds that ask a tool who it is (an interpreter's identity, a CLI's version) keep
//! the answer in one [`ToolCache`] ([`probe`]), valid while the binary's stat data is
//! unchanged, so a warm check runs no process.
//!
//! Embedders open a project with [`Engine::open`], passing a [`Registry`] that holds
//! the built-in kinds and any of their own, then call [`Engine::build`] or
//! [`Engine::status`] and read the [`Report`] — the same data `--json` prints.

mod blobs;
mod candidates;
mod config;
mod engine;
mod error;
mod fsutil;
mod inputs;
mod key;
pub mod probe;
pub mod process;
mod progress;
mod registry;
mod report;
mod shared;
mod statcache;
mod store;
mod tier;

pub use blobs::{
    Blobs, ByteReader, Digest, Lease, Present, Swept, Tree, TreeFile, TreeLink, CARRIED, TREE,
};
pub use candidates::{Candidate, CANDIDATE_LIMIT};
pub use config::{
    load as load_config, Config, ConfigSource, Rebuild, RemoteConfig, RemoteMode, TierCommon,
    TierSpec, DEFAULT_TOML,
};
pub use engine::{
    BuildRequest, CandidateVerdict, Collected, Engine, EngineOptions, Explanation, Force, Removed,
};
pub use error::{Error, Result};
pub use fsutil::write_atomic;
pub use inputs::{hash_file, InputSet, InputSpec, InputStats, Inputs};
pub use key::{Freshness, Key, KeyDoc, Reason, KEY_FORMAT};
pub use probe::{Fingerprint, Probe, ToolCache};
pub use progress::{Progress, ProgressDisplay, ProgressLine, Reporter, Unit};
pub use registry::{Factory, Registry};
pub use report::{PathsReport, ReasonReport, Report, Status, TierPath, TierReport};
pub use shared::SharedCache;
pub use store::{Marker, MarkerHead, Store, MARKER};
pub use tier::{BuildOutcome, Context, Entry, Tier, Upstream};

pub use async_trait::async_trait;
