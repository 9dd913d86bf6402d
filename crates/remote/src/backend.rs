//! One OpenDAL operator per location, and the requests the cache makes of it —
//! read (whole or a byte range), write, delete — each under a timeout, retried with
//! backoff when the failure is worth retrying (a timeout, HTTP 429 or 5xx), and never
//! stat or list: nginx's WebDAV module and bazel-remote answer GET and PUT, not
//! PROPFIND. Whether an object is there is asked with a ranged read of its last byte.
//!
//! A request that still fails marks the remote failed **for this process**: later
//! requests of the same run are answered as misses at once, so a server that is down
//! costs one warning and one timeout per run, not one per tier. Nothing is recorded:
//! the next run tries again.
//!
//! Writes to a directory go through [`crate::fs_write`], not OpenDAL, so that a
//! killed upload leaves nothing a later one cannot remove.

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use opendal::{ErrorKind, Operator};

use crate::error::RemoteError;
use crate::location::{Auth, Location};

/// How many times one request is tried, and the backoff between tries.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl Retry {
    fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = 1u32 << failed_attempts.saturating_sub(1).min(16);
        (self.first_backoff * factor).min(self.max_backoff)
    }
}

pub struct Backend {
    /// The OpenDAL operator of every store but a directory, which is read and
    /// written here directly (OpenDAL's would make its root as it opens, and
    /// `tiers status` writes nothing).
    op: Option<Operator>,
    /// WebDAV with MKCOL: the operator that creates missing parent collections.
    mkcol: Option<Operator>,
    remote: String,
    timeout: Duration,
    retry: Retry,
    /// The first failure of this run; once set, requests are not sent.
    failed: Mutex<Option<String>>,
    /// Redis: `host:port` to try a plain TCP connection to first. The Redis client
    /// keeps reconnecting on its own, so a server that is down would otherwise cost
    /// every attempt its whole timeout instead of one refused connection.
    probe: Option<String>,
    reached: AtomicBool,
    /// A directory store: written through [`crate::fs_write`].
    fs_root: Option<PathBuf>,
    /// Whether this run removed dead writers' temporaries yet (directory stores).
    swept: AtomicBool,
    traffic: Traffic,
}

/// The requests of this run and the bytes they moved.
#[derive(Debug, Default)]
pub struct Traffic {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub checks: AtomicU64,
    pub up: AtomicU64,
    pub down: AtomicU64,
}

impl Traffic {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `N requests (r reads, w writes, c checks), U bytes up, D bytes down`.
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (r, w, c) = (get(&self.reads), get(&self.writes), get(&self.checks));
        format!(
            "{} requests ({r} reads, {w} writes, {c} checks), {} bytes up, {} bytes down",
            r + w + c,
            get(&self.up),
            get(&self.down)
        )
    }

    /// Whether no request was made.
    pub fn is_empty(&self) -> bool {
        [&self.reads, &self.writes, &self.checks]
            .iter()
            .all(|c| c.load(Ordering::Relaxed) == 0)
    }
}

/// TLS for https, rediss and S3 through rustls with the ring provider, installed once
/// per process together with OpenDAL's HTTP transport.
fn install_transport() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err: the embedding program installed a provider already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal_http_transport_reqwest::install_default();
    });
}

impl Backend {
    pub fn open(loc: &Location, timeout: Duration, retry: Retry) -> Result<Backend, RemoteError> {
        install_transport();
        let remote = loc.describe();
        let open_err = |source: opendal::Error, hint: &str| RemoteError::Open {
            remote: remote.clone(),
            hint: hint.to_owned(),
            source: Box::new(source),
        };
        let probe = match loc {
            Location::Redis { endpoint, .. } => {
                endpoint.split_once("://").map(|(_, a)| a.to_owned())
            }
            _ => None,
        };
        let (op, mkcol) = match loc {
            Location::Fs { .. } => (None, None),
            Location::Redis {
                endpoint,
                db,
                root,
                auth,
            } => {
                let mut b = opendal::services::Redis::default()
                    .endpoint(endpoint)
                    .db(*db)
                    .root(root);
                if let Some(u) = &auth.username {
                    b = b.username(u);
                }
                if let Some(p) = &auth.password {
                    b = b.password(p);
                }
                (Some(Operator::new(b).map_err(|e| open_err(e, ""))?), None)
            }
            Location::Webdav {
                endpoint,
                root,
                mkcol,
                auth,
            } => {
                let build = |create_dir: bool| {
                    let mut b = opendal::services::Webdav::default()
                        .endpoint(endpoint)
                        .root(root)
                        .disable_create_dir(!create_dir);
                    b = with_auth(b, auth);
                    Operator::new(b).map_err(|e| open_err(e, ""))
                };
                // PUT first; parents are made (MKCOL) only when the server says they
                // are missing (409), since nginx and bazel-remote have no PROPFIND.
                (
                    Some(build(false)?),
                    if *mkcol { Some(build(true)?) } else { None },
                )
            }
            Location::S3 { bucket, root } => {
                let mut b = opendal::services::S3::default().bucket(bucket).root(root);
                let env = crate::location::process_env;
                let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
                if region.is_none() && env("AWS_ENDPOINT_URL").is_some() {
                    // S3-compatible servers (MinIO, Ceph) take any region; AWS's own
                    // endpoint needs the bucket's, from AWS_REGION.
                    b = b.region("us-east-1");
                }
                let hint =
                    "\nhint: set AWS_REGION (and AWS_ENDPOINT_URL for an S3-compatible server)";
                (Some(Operator::new(b).map_err(|e| open_err(e, hint))?), None)
            }
        };
        let fs_root = match loc {
            Location::Fs { root } => Some(root.clone()),
            _ => None,
        };
        Ok(Backend {
            op,
            mkcol,
            remote,
            timeout,
            retry,
            failed: Mutex::new(None),
            probe,
            reached: AtomicBool::new(false),
            fs_root,
            swept: AtomicBool::new(false),
            traffic: Traffic::default(),
        })
    }

    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// The requests made so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// `range` of the object at `path`; `None` when there is no object. Fewer
    /// bytes than asked for mean the object is shorter.
    pub async fn get_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> Result<Option<Vec<u8>>, RemoteError> {
        self.counted_read(path, Some(range)).await
    }

    /// Whether an object of `bytes` bytes is at `path`: one ranged read of its
    /// last byte (an object cut short answers none).
    pub async fn check(&self, path: &str, bytes: u64) -> Result<bool, RemoteError> {
        Traffic::add(&self.traffic.checks, 1);
        let Some(last) = bytes.checked_sub(1) else {
            return Ok(false);
        };
        Ok(self
            .read(path, Some(last..bytes))
            .await?
            .is_some_and(|b| b.len() == 1))
    }

    /// [`Backend::read`], counted in the traffic.
    async fn counted_read(
        &self,
        path: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<Vec<u8>>, RemoteError> {
        Traffic::add(&self.traffic.reads, 1);
        let got = self.read(path, range).await;
        if let Ok(Some(b)) = &got {
            Traffic::add(&self.traffic.down, b.len() as u64);
        }
        got
    }

    /// The object at `path`, or `range` of it; `None` when there is no object.
    async fn read(
        &self,
        path: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<Vec<u8>>, RemoteError> {
        if let Some(root) = &self.fs_root {
            let got = self
                .fs_call(root, "read", path, move |file| {
                    use std::io::{Read, Seek, SeekFrom};
                    let mut f = match std::fs::File::open(&file) {
                        Ok(f) => f,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    let mut bytes = Vec::new();
                    match range {
                        Some(range) => {
                            f.seek(SeekFrom::Start(range.start))?;
                            f.take(range.end - range.start).read_to_end(&mut bytes)?
                        }
                        None => f.read_to_end(&mut bytes)?,
                    };
                    Ok(Some(bytes))
                })
                .await;
            if let Err(e) = &got {
                self.fail(e);
            }
            return got;
        }
        let got = self
            .call("read", path, || async {
                let mut read = self.op().read_with(path);
                if let Some(range) = &range {
                    read = read.range(range.clone());
                }
                match read.await {
                    Ok(buf) => Ok(Some(buf.to_vec())),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                    // Asked past the end: an object shorter than its record says.
                    Err(e) if e.kind() == ErrorKind::RangeNotSatisfied => Ok(Some(Vec::new())),
                    Err(e) => Err(e),
                }
            })
            .await;
        if let Err(e) = &got {
            self.fail(e);
        }
        got
    }

    /// The failure that switched the remote off for this run, if one did.
    pub fn failed(&self) -> Option<String> {
        self.failed.lock().map(|f| f.clone()).unwrap_or(None)
    }

    fn fail(&self, e: &RemoteError) {
        if let Ok(mut f) = self.failed.lock() {
            if f.is_none() {
                *f = Some(e.to_string());
            }
        }
    }

    /// The operator of a store that is not a directory.
    fn op(&self) -> &Operator {
        self.op
            .as_ref()
            .expect("every store but a directory has an operator")
    }

    /// A directory store's file for `path`: read, or removed.
    async fn fs_call<T: Send + 'static>(
        &self,
        root: &std::path::Path,
        op: &'static str,
        path: &str,
        f: impl FnOnce(PathBuf) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, RemoteError> {
        let file = root.join(path);
        let done = tokio::task::spawn_blocking(move || f(file));
        match tokio::time::timeout(self.timeout, done).await {
            Ok(joined) => joined
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| RemoteError::Request {
                    remote: self.remote.clone(),
                    op,
                    path: path.to_owned(),
                    status: None,
                    why: e.to_string(),
                }),
            Err(_) => Err(RemoteError::Timeout {
                remote: self.remote.clone(),
                op,
                path: path.to_owned(),
                secs: self.timeout.as_secs_f64(),
                attempts: 1,
            }),
        }
    }

    /// The object at `path` if it holds at most `limit` bytes: `Err(size)` when it
    /// holds more. A directory store checks the size before reading; the servers
    /// send the object whole (Redis and nginx tell no size without the body).
    pub async fn get_at_most(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<Option<Result<Vec<u8>, u64>>, RemoteError> {
        if let Some(root) = &self.fs_root {
            Traffic::add(&self.traffic.reads, 1);
            let got = self
                .fs_call(root, "read", path, move |file| {
                    use std::io::Read;
                    let f = match std::fs::File::open(&file) {
                        Ok(f) => f,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    let size = f.metadata()?.len();
                    if size > limit as u64 {
                        return Ok(Some(Err(size)));
                    }
                    let mut bytes = Vec::with_capacity(size as usize);
                    // Bounded, should it grow meanwhile.
                    f.take(limit as u64 + 1).read_to_end(&mut bytes)?;
                    Ok(Some(match bytes.len() > limit {
                        true => Err(bytes.len() as u64),
                        false => Ok(bytes),
                    }))
                })
                .await;
            if let Ok(Some(Ok(b))) = &got {
                Traffic::add(&self.traffic.down, b.len() as u64);
            }
            if let Err(e) = &got {
                self.fail(e);
            }
            return got;
        }
        Ok(self
            .get(path)
            .await?
            .map(|bytes| match bytes.len() > limit {
                true => Err(bytes.len() as u64),
                false => Ok(bytes),
            }))
    }

    /// The object at `path`; `None` when there is none.
    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        self.counted_read(path, None).await
    }

    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), RemoteError> {
        Traffic::add(&self.traffic.writes, 1);
        Traffic::add(&self.traffic.up, bytes.len() as u64);
        if let Some(root) = &self.fs_root {
            let put = self.fs_put(root, path, bytes).await;
            if let Err(e) = &put {
                self.fail(e);
            }
            return put;
        }
        let buf = opendal::Buffer::from(bytes);
        let mut put = self
            .call("write", path, || async {
                self.op().write(path, buf.clone()).await.map(|_| ())
            })
            .await;
        if let (
            Err(RemoteError::Request {
                status: Some(409), ..
            }),
            Some(mkcol),
        ) = (&put, &self.mkcol)
        {
            // 409 Conflict: the parent collection is missing (RFC 4918 9.7.1).
            if let Some((parent, _)) = path.rsplit_once('/') {
                let dir = format!("{parent}/");
                self.call("create the collection", &dir, || async {
                    mkcol.create_dir(&dir).await
                })
                .await?;
                put = self
                    .call("write", path, || async {
                        self.op().write(path, buf.clone()).await.map(|_| ())
                    })
                    .await;
            }
        }
        if let Err(e) = &put {
            self.fail(e);
        }
        put
    }

    async fn fs_put(
        &self,
        root: &std::path::Path,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), RemoteError> {
        let first = !self.swept.swap(true, Ordering::Relaxed);
        let (store, name) = (root.to_owned(), path.to_owned());
        self.fs_call(root, "write", path, move |_| {
            if first {
                let (n, bytes) = crate::fs_write::sweep(&store);
                if n > 0 {
                    tracing::debug!(
                        "removed {n} temporaries ({bytes} bytes) of killed uploads from `{}`",
                        store.join(crate::fs_write::TMP_DIR).display()
                    );
                }
            }
            crate::fs_write::put(&store, &name, &bytes)
        })
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<(), RemoteError> {
        if let Some(root) = &self.fs_root {
            return self
                .fs_call(root, "delete", path, |file| {
                    match std::fs::remove_file(&file) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    }
                })
                .await;
        }
        self.call("delete", path, || async { self.op().delete(path).await })
            .await
    }

    /// Run one request under the timeout, retrying what is worth retrying.
    async fn call<T, F, Fut>(&self, op: &'static str, path: &str, f: F) -> Result<T, RemoteError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = opendal::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(addr) = &self.probe {
                // Before the first request of the run, and again after a failure.
                if attempt > 1 || !self.reached.load(Ordering::Relaxed) {
                    if let Err(why) = self.reach(addr).await {
                        return Err(RemoteError::Request {
                            remote: self.remote.clone(),
                            op,
                            path: path.to_owned(),
                            status: None,
                            why,
                        });
                    }
                    self.reached.store(true, Ordering::Relaxed);
                }
            }
            let outcome = tokio::time::timeout(self.timeout, f()).await;
            let retry = match &outcome {
                Ok(Ok(_)) => false,
                Ok(Err(e)) => retryable(e),
                Err(_elapsed) => true,
            };
            if retry && attempt < self.retry.attempts {
                let wait = self.retry.backoff(attempt);
                tracing::debug!(
                    "shared cache `{}`: {op} `{path}` failed (attempt {attempt}), retrying in {wait:?}",
                    self.remote
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return match outcome {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => {
                    tracing::debug!("shared cache `{}`: {op} `{path}`: {e}", self.remote);
                    Err(RemoteError::Request {
                        remote: self.remote.clone(),
                        op,
                        path: path.to_owned(),
                        status: http_status(&e),
                        why: summarize(&e, attempt),
                    })
                }
                Err(_) => Err(RemoteError::Timeout {
                    remote: self.remote.clone(),
                    op,
                    path: path.to_owned(),
                    secs: self.timeout.as_secs_f64(),
                    attempts: attempt,
                }),
            };
        }
    }
}

impl Backend {
    /// Whether a TCP connection to `addr` can be made now.
    async fn reach(&self, addr: &str) -> Result<(), String> {
        let limit = self.timeout.min(Duration::from_secs(5));
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
            Err(_) => Err(format!(
                "cannot connect to {addr}: no answer within {} s",
                limit.as_secs_f64()
            )),
        }
    }
}

fn with_auth(mut b: opendal::services::Webdav, auth: &Auth) -> opendal::services::Webdav {
    if let Some(t) = &auth.token {
        b = b.token(t);
    }
    if let Some(u) = &auth.username {
        b = b.username(u);
    }
    if let Some(p) = &auth.password {
        b = b.password(p);
    }
    b
}

/// A timeout, a rate limit or a server error: the same request may succeed later.
/// Refused connections, 4xx and bad credentials are not retried.
fn retryable(e: &opendal::Error) -> bool {
    if e.kind() == ErrorKind::RateLimited {
        return true;
    }
    match http_status(e) {
        Some(s) => s == 429 || (500..600).contains(&s),
        // A timeout, however the service words it (Redis: "I/O error: timed out").
        None => {
            let text = e.to_string().to_ascii_lowercase();
            e.is_temporary() && (text.contains("timeout") || text.contains("timed out"))
        }
    }
}

/// The HTTP status of the response an OpenDAL error came from, if it came from one.
/// OpenDAL keeps the response parts only as text in the error's context.
pub(crate) fn http_status(e: &opendal::Error) -> Option<u16> {
    let text = e.to_string();
    let at = text.find("status: ")? + "status: ".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (digits.len() == 3).then(|| digits.parse().ok()).flatten()
}

/// One line for a warning: the HTTP status or the deepest cause, not the headers.
fn summarize(e: &opendal::Error, attempts: u32) -> String {
    let mut why = match http_status(e) {
        Some(s) => {
            let body = e.message().lines().next().unwrap_or("").trim();
            let body: String = body.chars().take(120).collect();
            if body.is_empty() || body.starts_with('<') {
                format!("the server answered HTTP {s}")
            } else {
                format!("the server answered HTTP {s}: {body}")
            }
        }
        None => {
            let mut deepest = None;
            let mut cur = std::error::Error::source(e);
            while let Some(c) = cur {
                deepest = Some(c.to_string());
                cur = c.source();
            }
            match deepest {
                Some(cause) => format!("{}: {cause}", e.message()),
                None => format!("{} ({})", e.message(), e.kind()),
            }
        }
    };
    if attempts > 1 {
        why.push_str(&format!(" (after {attempts} attempts)"));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry::default();
        let waits: Vec<u128> = (1..=6).map(|a| r.backoff(a).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn status_is_read_from_the_response_context() {
        let e = opendal::Error::new(ErrorKind::Unexpected, "slow down").with_context(
            "response",
            "Parts { status: 429, version: HTTP/1.1, headers: {} }",
        );
        assert_eq!(http_status(&e), Some(429));
        assert!(retryable(&e));
        let e = opendal::Error::new(ErrorKind::PermissionDenied, "no")
            .with_context("response", "Parts { status: 403, version: HTTP/1.1 }");
        assert!(!retryable(&e));
        let e = opendal::Error::new(ErrorKind::Unexpected, "send http request").set_temporary();
        assert_eq!(http_status(&e), None);
        assert!(!retryable(&e), "a refused connection is not retried");
        assert_eq!(summarize(&e, 1), "send http request (Unexpected)");
    }
}
