//! An embedder's own kind, registered beside the built-in ones.
//!
//! `wordcount` counts the words of its input files. Run it on any directory:
//! `cargo run --example custom_kind -- examples/demo`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tiers::{
    async_trait, BuildOutcome, BuildRequest, ConfigSource, Context, Engine, EngineOptions, Entry,
    InputSpec, KeyDoc, Report, Result, Tier,
};

/// The kind's own, strict table in `tiers.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WordCountOptions {
    inputs: Vec<String>,
}

struct WordCount {
    inputs: InputSpec,
}

#[async_trait]
impl Tier for WordCount {
    async fn key(&self, cx: &Context) -> Result<KeyDoc> {
        let inputs = cx.inputs(&self.inputs)?;
        Ok(KeyDoc::new("wordcount", 1)
            .option("inputs", self.inputs.patterns())
            .inputs(&inputs))
    }

    async fn build(&self, cx: &Context, entry: &Entry) -> Result<BuildOutcome> {
        let mut total = 0;
        for rel in entry.doc.inputs.keys() {
            let path = cx.project().join(rel);
            let text = std::fs::read_to_string(&path).map_err(|e| tiers::Error::io(&path, e))?;
            total += text.split_whitespace().count();
        }
        let out = entry.build_dir.join("words.txt");
        std::fs::write(&out, format!("{total}\n")).map_err(|e| tiers::Error::io(&out, e))?;
        Ok(BuildOutcome::default())
    }

    fn path(&self, entry: &Entry) -> PathBuf {
        entry.dir.join("words.txt")
    }
}

/// Count the words of `project`'s `.py` files through the engine, with the project's
/// cache dir under `cache_dir`.
pub fn run(project: &Path, cache_dir: &Path) -> Result<Report> {
    let mut registry = tiers::registry();
    registry.register("wordcount", |spec| {
        let o: WordCountOptions = spec.options()?;
        Ok(Box::new(WordCount {
            inputs: InputSpec::new(spec.name, &o.inputs, &[])?,
        }))
    });
    let options = EngineOptions {
        config: ConfigSource {
            project: project.to_owned(),
            // Inline configuration, layered above the project's own tiers.toml.
            toml: Some("[tiers.words]\nkind = \"wordcount\"\ninputs = [\"**/*.py\"]\n".into()),
            cache_dir: Some(cache_dir.to_owned()),
            ..Default::default()
        },
        verbose: false,
    };
    let engine = Engine::open(options, &registry)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| tiers::Error::io(project, e))?;
    runtime.block_on(engine.build(&BuildRequest {
        tiers: vec!["words".into()],
        ..Default::default()
    }))
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let project = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let cache = std::env::temp_dir().join("tiers-custom-kind-example");
    let report = run(&project, &cache)?;
    let words = report.tier("words").expect("the words tier ran");
    println!("{} {:?}", words.status.as_str(), words.path);
    if let Some(path) = &words.path {
        print!(
            "words: {}",
            std::fs::read_to_string(path).unwrap_or_default()
        );
    }
    Ok(())
}
