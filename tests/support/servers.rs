//! Real storage servers for the shared-cache tests, on 127.0.0.1 with free ports, in a
//! temp dir, stopped on drop: `redis-server`, `nginx` with a WebDAV location, and
//! moto's S3 server. The first two come from the machine's package manager, moto from
//! the Python package index (`scripts/ensure-tools` installs them all).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Where a program is, for a clear failure when the machine lacks it.
pub fn require(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("`{program}` is not installed: run `source scripts/ensure-tools` (it installs redis-server, nginx and moto_server)")
    })
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the server exited with {status} before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port} after 20 s");
}

/// A server process owned by a test.
struct Process {
    child: Option<Child>,
}

impl Process {
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `redis-server --port N --save ''` in a temp dir.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Process,
}

impl Redis {
    pub fn start() -> Redis {
        let bin = require("redis-server");
        let dir = tempfile::Builder::new()
            .prefix("tiers-redis-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let log = dir.path().join("redis.log");
        let mut child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_for_port(port, &mut child, &log);
        Redis {
            port,
            dir,
            process: Process { child: Some(child) },
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.child.as_ref().map_or(0, Child::id)
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Run one command, its arguments as bytes; the reply, decoded.
    pub fn command(&self, args: &[&[u8]]) -> Reply {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).expect("send to redis");
        read_reply(&mut std::io::BufReader::new(s))
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = match self.command(&[b"KEYS", b"*"]) {
            Reply::Array(items) => items
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                    _ => None,
                })
                .collect(),
            other => panic!("KEYS answered {other:?}"),
        };
        keys.sort();
        keys
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.command(&[b"GET", key.as_bytes()]) {
            Reply::Bulk(b) => b,
            other => panic!("GET answered {other:?}"),
        }
    }

    pub fn set(&self, key: &str, value: &[u8]) {
        let r = self.command(&[b"SET", key.as_bytes(), value]);
        assert_eq!(r, Reply::Status("OK".into()));
    }

    /// Every key with a digest of its value, for "nothing was written".
    pub fn snapshot(&self) -> Vec<(String, usize)> {
        self.keys()
            .into_iter()
            .map(|k| {
                let len = self.get(&k).map_or(0, |v| v.len());
                (k, len)
            })
            .collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A RESP reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

fn read_line(r: &mut impl std::io::BufRead) -> String {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).expect("read from redis");
    String::from_utf8_lossy(&line).trim_end().to_owned()
}

fn read_reply(r: &mut impl std::io::BufRead) -> Reply {
    let line = read_line(r);
    let (tag, rest) = line.split_at(1);
    match tag {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(rest.parse().expect("integer reply")),
        "$" => {
            let n: i64 = rest.parse().expect("bulk length");
            if n < 0 {
                return Reply::Bulk(None);
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).expect("bulk body");
            buf.truncate(n as usize);
            Reply::Bulk(Some(buf))
        }
        "*" => {
            let n: i64 = rest.parse().expect("array length");
            Reply::Array((0..n.max(0)).map(|_| read_reply(r)).collect())
        }
        _ => panic!("unexpected redis reply `{line}`"),
    }
}

/// `nginx` serving a WebDAV location (`dav_methods PUT DELETE MKCOL COPY MOVE`,
/// `create_full_put_path on`) from `<temp>/dav` on 127.0.0.1.
pub struct Nginx {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Process,
}

impl Nginx {
    pub fn start() -> Nginx {
        let bin = require("nginx");
        let dir = tempfile::Builder::new()
            .prefix("tiers-nginx-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("dav")).unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        let port = free_port();
        // One process (no master, no workers switching user), in the foreground, every
        // path inside the temp dir: runs the same as root or not.
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            root {d}/dav;
            dav_methods PUT DELETE MKCOL COPY MOVE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"#,
            d = d.display()
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let log = d.join("error.log");
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-e")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        wait_for_port(port, &mut child, &log);
        Nginx {
            port,
            dir,
            process: Process { child: Some(child) },
        }
    }

    /// `webdav+http://127.0.0.1:N/<path>`
    pub fn webdav_url(&self, path: &str) -> String {
        format!("webdav+http://127.0.0.1:{}/{path}", self.port)
    }

    /// `http://127.0.0.1:N/<path>`: plain GET/PUT.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The directory nginx serves: the store's objects as files.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("dav")
    }

    pub fn pid(&self) -> u32 {
        self.process.child.as_ref().map_or(0, Child::id)
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// The request lines nginx logged (method and path), in order.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
            .collect()
    }
}

/// moto's S3 server (`moto_server`, from `$TIERS_TEST_MOTO` or PATH) holding one
/// bucket, [`S3::BUCKET`], in memory.
///
/// Its requests here carry a dummy `Authorization` header: moto checks no signature,
/// but answers 403 to an anonymous request for an object that exists. Bodies go as
/// `application/octet-stream`: moto reads a form-encoded body as a form, storing
/// nothing.
pub struct S3 {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Process,
}

impl S3 {
    pub const BUCKET: &'static str = "tiers";

    pub fn start() -> S3 {
        let bin = std::env::var_os("TIERS_TEST_MOTO")
            .map(PathBuf::from)
            .unwrap_or_else(|| require("moto_server"));
        let dir = tempfile::Builder::new()
            .prefix("tiers-moto-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).expect("moto log");
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stderr(out.try_clone().expect("moto log"))
            .stdout(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start `{}`: {e}", bin.display()));
        wait_for_port(port, &mut child, &log);
        let s3 = S3 {
            port,
            dir,
            process: Process { child: Some(child) },
        };
        let (status, body) = s3.request("PUT", &format!("/{}", S3::BUCKET), &[]);
        assert_eq!(
            status,
            200,
            "create the bucket: {}",
            String::from_utf8_lossy(&body)
        );
        s3
    }

    /// `s3://tiers/<prefix>`
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", S3::BUCKET)
    }

    /// `http://127.0.0.1:N`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS environment a `tiers` process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    pub fn pid(&self) -> u32 {
        self.process.child.as_ref().map_or(0, Child::id)
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Every object whose key starts with `prefix` (keys are whole, without a leading
    /// `/`), with its size, sorted by key.
    pub fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = format!("list-type=2&prefix={}", query_escape(prefix));
            if let Some(t) = &token {
                query.push_str(&format!("&continuation-token={}", query_escape(t)));
            }
            let (status, body) = self.request("GET", &format!("/{}?{query}", S3::BUCKET), &[]);
            let xml = String::from_utf8_lossy(&body);
            assert_eq!(status, 200, "list `{prefix}`: {xml}");
            for item in xml.split("<Contents>").skip(1) {
                let key = xml_unescape(xml_field(item, "Key").expect("a listed key"));
                let size = xml_field(item, "Size").and_then(|s| s.parse().ok());
                objects.push((key, size.expect("a listed size")));
            }
            token = match xml_field(&xml, "IsTruncated") {
                Some("true") => xml_field(&xml, "NextContinuationToken").map(xml_unescape),
                _ => None,
            };
            if token.is_none() {
                break;
            }
        }
        objects.sort();
        objects
    }

    /// The object at `key`; `None` when there is none.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let (status, body) = self.request("GET", &self.object(key), &[]);
        match status {
            200 => Some(body),
            404 => None,
            s => panic!(
                "GET `{key}` answered {s}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// Write (or overwrite) the object at `key`.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let (status, body) = self.request("PUT", &self.object(key), bytes);
        assert_eq!(
            status,
            200,
            "PUT `{key}`: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Remove the object at `key`; nothing when there is none.
    pub fn delete(&self, key: &str) {
        let (status, body) = self.request("DELETE", &self.object(key), &[]);
        assert_eq!(
            status,
            204,
            "DELETE `{key}`: {}",
            String::from_utf8_lossy(&body)
        );
    }

    fn object(&self, key: &str) -> String {
        let key: String = key
            .split('/')
            .map(query_escape)
            .collect::<Vec<_>>()
            .join("/");
        format!("/{}/{key}", S3::BUCKET)
    }

    /// One HTTP/1.1 request, the connection closed after it: the status and the body.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
             Connection: close\r\n\r\n",
            port = self.port,
            len = body.len()
        );
        s.write_all(head.as_bytes()).expect("send to moto");
        s.write_all(body).expect("send to moto");
        let mut response = Vec::new();
        s.read_to_end(&mut response).expect("read from moto");
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response head");
        let head = String::from_utf8_lossy(&response[..end]);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("an HTTP status line: {head}"));
        (status, response[end + 4..].to_vec())
    }
}

/// The text of the first `<name>…</name>` in `xml`.
fn xml_field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + len])
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Percent-encode all but unreserved characters (RFC 3986).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
