//! tiers as a library: the engine of `tiers-core` with every built-in kind registered.
//!
//! ```no_run
//! # async fn demo() -> tiers::Result<()> {
//! let mut registry = tiers::registry();
//! // registry.register("my-kind", |spec| Ok(Box::new(MyKind::from_spec(spec)?)));
//! let options = tiers::EngineOptions {
//!     config: tiers::ConfigSource { project: ".".into(), env: true, ..Default::default() },
//!     verbose: false,
//! };
//! let engine = tiers::Engine::open(options, &registry)?;
//! let report = engine.build(&tiers::BuildRequest::default()).await?;
//! for tier in &report.tiers {
//!     println!("{} {} {:?}", tier.name, tier.status.as_str(), tier.path);
//! }
//! # Ok(()) }
//! ```

pub use tiers_core::*;

pub mod display;

/// A registry holding every built-in kind.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    tiers_command::register(&mut r);
    tiers_venv_uv::register(&mut r);
    tiers_venv_pip::register(&mut r);
    tiers_venv_poetry::register(&mut r);
    tiers_venv::register_auto(
        &mut r,
        vec![
            tiers_venv_poetry::backend(),
            tiers_venv_uv::backend(),
            tiers_venv_pip::backend(),
        ],
    );
    tiers_codeql::register(&mut r);
    tiers_symtab::register(&mut r);
    r
}
