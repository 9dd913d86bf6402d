//! The `tiers` command: a thin clap layer over `tiers-core`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{ArgAction, Parser, Subcommand};

mod init;
use tiers::display::Terminal;
use tiers::{BuildRequest, ConfigSource, Engine, EngineOptions, Force, Report, Reporter};

/// The symtab build allocates and frees from every core at once: a full build
/// of the Python library took 4.7 s of user CPU with mimalloc against 5.9 s
/// with glibc's allocator. Its arenas are not advised to use transparent huge
/// pages (feature `no_thp`): where the kernel honours that advice, it zeroes a
/// whole 2 MiB page on first touch. In ten alternating one-file symtab edits
/// the CPU time per build ranged 151-325 ms with huge pages and 189-247 ms
/// without; the full build's peak RSS fell from 258-267 MB to 193-205 MB, its
/// wall time unchanged.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tiers",
    version,
    about = "A content-addressed cache of code-analysis artifacts, one tier per artifact"
)]
struct Cli {
    /// The project directory.
    #[arg(
        short = 'C',
        long = "directory",
        value_name = "DIR",
        default_value = ".",
        global = true
    )]
    project: PathBuf,
    /// The configuration file [default: <project>/tiers.toml].
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Where every tier keeps its entries [default: <project>/.tiers].
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Hash every input, trusting no stat data (for filesystems whose timestamps lie).
    #[arg(long, global = true)]
    no_stat_cache: bool,
    /// Skip the shared cache (`[remote]`) for this run: local entries and builds only.
    #[arg(long, global = true)]
    no_remote: bool,
    /// More logging on stderr (-v, -vv).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the tiers that are not fresh (all, or the named ones and their upstreams).
    Build {
        tiers: Vec<String>,
        /// Force these tiers (comma-separated), or `all`.
        #[arg(long, value_name = "TIER,…|all", value_delimiter = ',')]
        rebuild: Vec<String>,
        /// Force every tier whose `eager` policy is true (venvs are not, by default).
        #[arg(long)]
        eager: bool,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// What `build` would do, and why. Builds nothing.
    Status {
        tiers: Vec<String>,
        /// Say what `build --rebuild …` would do.
        #[arg(long, value_name = "TIER,…|all", value_delimiter = ',')]
        rebuild: Vec<String>,
        /// Say what `build --eager` would do.
        #[arg(long)]
        eager: bool,
        #[arg(long)]
        json: bool,
    },
    /// The key document of a tier against its last entry's.
    Explain { tier: String },
    /// The entry each tier last resolved to, for embedders.
    Paths {
        #[arg(long)]
        json: bool,
    },
    /// Write a tier's artifact as one document (the symbol table as JSON).
    Export {
        tier: String,
        /// Write to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Write a tiers.toml for this project (venv, symtab and codeql tiers as it fits).
    Init,
    /// Apply retention (`keep`, `max_bytes`): remove least recently used entries.
    Gc {
        /// List what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `println!` that ends the process quietly when stdout is closed (`tiers paths | head`).
macro_rules! out {
    ($($arg:tt)*) => { emit(format_args!($($arg)*)) };
}

fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

fn main() -> ExitCode {
    // `tiers __tiers-supervise TOOL ARGS…`: this binary supervising one tool of a
    // build (see `tiers_core::process`), not a command for people.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == tiers::process::SUPERVISE_ARG)
    {
        tiers::process::supervise(&args[2..]);
    }
    // `/proc/self/exe` still runs this binary when its file was removed or
    // replaced meanwhile (an upgrade, `pip uninstall`); elsewhere, its path.
    let me = std::path::Path::new("/proc/self/exe");
    if me.exists() {
        tiers::process::supervise_with(me.to_owned());
    } else if let Ok(me) = std::env::current_exe() {
        tiers::process::supervise_with(me);
    }
    let cli = Cli::parse();
    let json = matches!(
        cli.command,
        Command::Build { json: true, .. }
            | Command::Status { json: true, .. }
            | Command::Paths { json: true }
    );
    let display = Terminal::wanted(cli.quiet, json).then(Terminal::new);
    init_logging(&cli, json, display.as_deref());
    match run(cli, display) {
        Ok(code) => code,
        Err(err) => {
            let usage = err
                .downcast_ref::<tiers::Error>()
                .is_some_and(tiers::Error::is_usage);
            eprintln!("error: {}", render_error(&err));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The error and its causes, each once: most messages already embed their source,
/// which `{:#}` would print a second time.
fn render_error(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// Logs go to stderr; above the progress display when there is one.
fn init_logging(cli: &Cli, json: bool, display: Option<&Terminal>) {
    use tracing::Level;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => Level::ERROR,
        (false, 0) if !json && std::io::stderr().is_terminal() => Level::INFO,
        (false, 0) => Level::WARN,
        (false, 1) => Level::DEBUG,
        (false, _) => Level::TRACE,
    };
    let writer = match display {
        Some(d) => BoxMakeWriter::new(d.log_writer()),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && !tiers::display::plain())
        .without_time()
        .init();
}

fn run(cli: Cli, display: Option<Arc<Terminal>>) -> anyhow::Result<ExitCode> {
    if let Command::Init = cli.command {
        let file = cli
            .config
            .clone()
            .unwrap_or_else(|| cli.project.join("tiers.toml"));
        let tiers = init::init(&cli.project, &file)?;
        out!(
            "wrote {} with tiers: {}",
            file.display(),
            if tiers.is_empty() {
                "none (see the commented example)".to_owned()
            } else {
                tiers.join(", ")
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let options = EngineOptions {
        config: ConfigSource {
            project: cli.project.clone(),
            file: cli.config.clone(),
            cache_dir: cli.cache_dir.clone(),
            env: true,
            toml: None,
            no_stat_cache: cli.no_stat_cache,
        },
        verbose: cli.verbose > 0,
    };
    let reporter = match &display {
        Some(d) => Reporter::new(d.clone()),
        None => Reporter::default(),
    };
    let mut engine = Engine::open(options, &tiers::registry())?.with_progress(reporter.clone());
    let mut shared = None;
    if !cli.no_remote && engine.remote_config().url.is_some() {
        let remote = tiers_remote::Remote::open(engine.remote_config())
            .map_err(tiers::Error::from)?
            .with_progress(reporter);
        let remote: Arc<dyn tiers::SharedCache> = Arc::new(remote);
        shared = Some(remote.clone());
        engine = engine.with_shared(Some(remote));
    }
    if engine.tier_names().next().is_none() {
        let message = match engine.config_file() {
            Some(file) => format!(
                "no tiers are configured: `{}` has no `[tiers.NAME]` table\nhint: add one (see the README's tiers.toml reference), or run `tiers init`",
                file.display()
            ),
            None => format!(
                "no tiers are configured: `{}` has no tiers.toml\nhint: write one (see the README's tiers.toml reference), run `tiers init`, or pass --config FILE",
                engine.project().display()
            ),
        };
        return Err(tiers::Error::config(message).into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = dispatch(cli.command, engine, &runtime);
    if let Some(shared) = &shared {
        if let Some(traffic) = shared.traffic() {
            tracing::debug!("shared cache {}: {traffic}", shared.describe());
        }
    }
    outcome
}

/// Run `command` on the opened engine.
fn dispatch(
    command: Command,
    engine: Engine,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build {
            tiers,
            rebuild,
            eager,
            json,
        } => {
            let req = request(tiers, rebuild, eager);
            let report = match runtime.block_on(interruptible(engine.build(&req))) {
                Ok(report) => report?,
                // Now, not when the runtime ends: a blocking task may be waiting
                // for another build's lock.
                Err(code) => std::process::exit(code),
            };
            print_report(&report, json)?;
            Ok(exit_for(&report))
        }
        Command::Status {
            tiers,
            rebuild,
            eager,
            json,
        } => {
            let req = request(tiers, rebuild, eager);
            let report = runtime.block_on(engine.status_of(&req))?;
            print_report(&report, json)?;
            Ok(exit_for(&report))
        }
        Command::Explain { tier } => {
            let ex = runtime.block_on(engine.explain(&tier))?;
            print_explanation(&ex);
            Ok(ExitCode::SUCCESS)
        }
        Command::Paths { json } => {
            let paths = engine.paths();
            if json {
                out!("{}", serde_json::to_string_pretty(&paths)?);
            } else {
                for (name, p) in &paths.tiers {
                    let path = p
                        .path
                        .as_ref()
                        .map_or("-".into(), |p| p.display().to_string());
                    out!("{name:<16} {path}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { tier, output } => {
            // Export is what the symtab library offers on its entries: the
            // engine finds the entry, the kind's library writes the document.
            let (kind, entry) = engine.last_entry(&tier)?;
            if kind != tiers_symtab::KIND {
                return Err(tiers::Error::config(format!(
                    "tier `{tier}` is of kind `{kind}`, which has nothing to export"
                ))
                .into());
            }
            let blobs = engine.blobs();
            let export = |out: &mut dyn std::io::Write| {
                tiers_symtab::export(&entry.dir, &blobs, out)
                    .with_context(|| format!("cannot export tier `{tier}`"))
            };
            match output {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create `{}`", path.display()))?;
                    let mut out = std::io::BufWriter::new(file);
                    export(&mut out)?;
                    std::io::Write::flush(&mut out)
                        .with_context(|| format!("cannot write `{}`", path.display()))?;
                }
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    export(&mut out)?;
                    std::io::Write::flush(&mut out).context("cannot write to stdout")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Init => unreachable!("handled before the engine opens"),
        Command::Gc { dry_run } => {
            let collected = engine.gc(dry_run)?;
            let removed = &collected.removed;
            let verb = if dry_run { "would remove" } else { "removed" };
            for r in removed {
                out!("{verb} {} {} ({} bytes)", r.tier, r.key.short(), r.bytes);
            }
            let total: u64 = removed.iter().map(|r| r.bytes).sum();
            out!("{verb} {} entries, {total} bytes", removed.len());
            match collected.swept {
                Some(s) => out!("swept {} blobs no entry names, {} bytes", s.blobs, s.bytes),
                None if dry_run => {}
                None => {
                    out!("blobs not swept: a build is running (the next gc or build sweeps them)")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn request(tiers: Vec<String>, rebuild: Vec<String>, eager: bool) -> BuildRequest {
    let rebuild = if rebuild.iter().any(|r| r == "all") {
        Force::All
    } else if rebuild.is_empty() {
        Force::None
    } else {
        Force::Tiers(rebuild)
    };
    BuildRequest {
        tiers,
        rebuild,
        eager,
    }
}

/// Run a build until it ends or tiers gets SIGINT or SIGTERM. On a signal every
/// tool tiers started is killed with its process group, the build is dropped (which
/// removes its staging dirs; nothing half-built is published) and the exit code is
/// 130 or 143, as a shell reports a process those signals ended.
async fn interruptible<T>(build: impl std::future::Future<Output = T>) -> Result<T, i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return Ok(build.await);
    };
    let code = tokio::select! {
        done = build => return Ok(done),
        _ = int.recv() => 130,
        _ = term.recv() => 143,
    };
    tiers::process::kill_all();
    eprintln!("error: interrupted: the build was stopped and nothing was published");
    Err(code)
}

fn exit_for(report: &Report) -> ExitCode {
    if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let width = report.tiers.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in &report.tiers {
        let key = t.key.as_ref().map_or("-", |k| k.short());
        let why: Vec<&str> = t.reasons.iter().map(|r| r.message.as_str()).collect();
        let why = if why.is_empty() {
            String::new()
        } else {
            format!("  ({})", why.join("; "))
        };
        out!(
            "{:<8} {:<width$}  {key:<12}  {:>6.2}s{why}",
            t.status.as_str(),
            t.name,
            t.seconds
        );
        if let Some(summary) = &t.summary {
            out!("         {summary}");
        }
        if let Some(err) = &t.error {
            eprintln!("error: tier `{}` failed: {err}", t.name);
        }
    }
    Ok(())
}

fn print_explanation(ex: &tiers::Explanation) {
    out!("tier {} (kind {})", ex.tier, ex.kind);
    out!("key        {}", ex.key);
    match &ex.last_key {
        Some(k) if *k == ex.key => out!("last entry {k} (the same key)"),
        Some(k) => out!("last entry {k}"),
        None => out!("last entry none: this tier was never built"),
    }
    if let Some(from) = &ex.restored_from {
        out!("restored: reuses entry {from}, built for other inputs:");
        for r in &ex.reasons {
            out!("  - {r}");
        }
    } else if let (true, Some(by)) = (ex.fresh, &ex.served_by) {
        out!("fresh: served by entry {by}, built for inputs that differ only in ones its build did not use");
    } else if ex.fresh && !ex.uncovered.is_empty() {
        out!("fresh: nothing the key covers changed");
        for u in &ex.uncovered {
            out!("  - {u}");
        }
    } else if ex.fresh {
        out!("fresh: nothing changed");
    } else if ex.reasons.is_empty() {
        out!("missing: no entry to compare with");
    } else {
        out!("stale:");
        for r in &ex.reasons {
            out!("  - {r}");
        }
    }
    match &ex.used_inputs {
        Some(used) => out!(
            "used inputs (reported by the last build): {}",
            used.join(", ")
        ),
        None => out!("used inputs: all declared inputs (the build reported none)"),
    }
    for c in &ex.candidates {
        let verdict = if !c.present {
            "rejected: its entry is gone".to_owned()
        } else if !c.changed.is_empty() {
            format!("rejected: {} changed", c.changed.join(", "))
        } else if !c.consistent {
            "rejected: it does not list the inputs its entry's marker says the build used"
                .to_owned()
        } else {
            "matches: every input it used is unchanged".to_owned()
        };
        out!(
            "candidate {} (used {}): {verdict}",
            c.entry.short(),
            c.used.join(", ")
        );
    }
    let d = &ex.doc;
    out!(
        "key document: kind {} v{}, {} inputs, {} options, {} toolchain entries, {} upstream",
        d.kind,
        d.kind_version,
        d.inputs.len(),
        d.options.len(),
        d.toolchain.len(),
        d.upstream.len()
    );
    for (what, id) in &d.toolchain {
        out!("  toolchain {what} = {id}");
    }
    for (name, v) in &d.options {
        out!("  option {name} = {v}");
    }
    for (name, k) in &d.upstream {
        out!("  upstream {name} = {}", k.short());
    }
}
