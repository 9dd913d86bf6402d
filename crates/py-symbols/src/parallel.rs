//! Full extraction of many files on every core, with `std::thread::scope`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::extract::{ExtractOptions, Extractor};
use crate::{Error, FileError, FileSymbols};

/// Extracts every `(path, content)` pair, one thread per available core. The
/// result is in input order; the path is only carried along for the caller.
pub fn extract_many<P: Sync, B: AsRef<[u8]> + Sync>(files: &[(P, B)]) -> Vec<FileSymbols> {
    run(files.len(), |extractor, i| {
        extractor.extract(files[i].1.as_ref())
    })
}

/// Reads and extracts every file, one thread per available core, handing each
/// result to `map` on the worker thread (so that a caller writing results out
/// need not hold them all). The result is in input order.
pub fn extract_files<T, F>(paths: &[PathBuf], options: &ExtractOptions, map: F) -> Vec<T>
where
    T: Send,
    F: Fn(&Path, Result<FileSymbols, Error>) -> T + Sync,
{
    run_with(paths.len(), options, |extractor, i| {
        let path = &paths[i];
        map(
            path,
            read_and_extract(extractor, path, options.max_file_bytes),
        )
    })
}

fn read_and_extract(
    extractor: &mut Extractor,
    path: &Path,
    limit: usize,
) -> Result<FileSymbols, Error> {
    match read_source(path, limit) {
        Ok(Ok(bytes)) => Ok(extractor.extract(&bytes)),
        Ok(Err(too_large)) => Ok(too_large),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The bytes of the file at `path`, to [`extract`](crate::extract); or, when
/// it is over `limit` bytes, the symbols that say so
/// ([`FileError::TooLarge`]), without reading it (not a file read only to
/// refuse it). [`extract_files`] reads files this way.
pub fn read_source(path: &Path, limit: usize) -> std::io::Result<Result<Vec<u8>, FileSymbols>> {
    let size = std::fs::metadata(path)?.len();
    if size > limit as u64 {
        return Ok(Err(FileSymbols {
            errors: vec![FileError::TooLarge {
                size,
                limit: limit as u64,
            }],
            ..FileSymbols::default()
        }));
    }
    std::fs::read(path).map(Ok)
}

fn run<T: Send>(n: usize, job: impl Fn(&mut Extractor, usize) -> T + Sync) -> Vec<T> {
    run_with(n, &ExtractOptions::default(), job)
}

/// The cores this process may use, asked once (the answer reads cgroup
/// files): the threads of [`extract_files`] and [`extract_many`], and what a
/// caller running its own pool beside them can size it by.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `job` for `0..n` on a pool of scoped threads taking indices from a
/// shared counter (file sizes vary a lot, so static chunks would idle a core).
fn run_with<T: Send>(
    n: usize,
    options: &ExtractOptions,
    job: impl Fn(&mut Extractor, usize) -> T + Sync,
) -> Vec<T> {
    let threads = cores().min(n).max(1);
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut extractor = Extractor::new(options.clone());
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            done.push((i, job(&mut extractor, i)));
        }
        done
    };
    let mut slots: Vec<Option<T>> = std::iter::repeat_with(|| None).take(n).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, worker).ok())
            .collect();
        for (i, value) in worker() {
            slots[i] = Some(value);
        }
        for handle in handles {
            if let Ok(done) = handle.join() {
                for (i, value) in done {
                    slots[i] = Some(value);
                }
            }
        }
    });
    // A worker that died took its indices with it: redo them here.
    let mut extractor = Extractor::new(options.clone());
    slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| slot.unwrap_or_else(|| job(&mut extractor, i)))
        .collect()
}
