//! Kinds by name: each a factory that reads its tier's table and returns a [`Tier`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::TierSpec;
use crate::error::Result;
use crate::tier::Tier;

/// Makes a tier of one kind from its configuration table.
pub type Factory = Arc<dyn Fn(&TierSpec<'_>) -> Result<Box<dyn Tier>> + Send + Sync>;

/// The kinds an [`Engine`](crate::Engine) knows. The driver registers the built-in
/// kinds; embedders register their own beside them.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, Factory>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `kind`; a later registration of the same name replaces the earlier.
    pub fn register<F>(&mut self, kind: &str, factory: F) -> &mut Self
    where
        F: Fn(&TierSpec<'_>) -> Result<Box<dyn Tier>> + Send + Sync + 'static,
    {
        self.kinds.insert(kind.to_owned(), Arc::new(factory));
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Factory> {
        self.kinds.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }
}
