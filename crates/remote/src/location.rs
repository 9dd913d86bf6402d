//! `[remote] url` read into the OpenDAL service it names.
//!
//! | url | service | credentials |
//! | --- | --- | --- |
//! | `file:///dir` | fs | none |
//! | `redis://host:port/db`, `rediss://…` | redis | `TIERS_REMOTE_USERNAME`, `TIERS_REMOTE_PASSWORD` (or the url's user info) |
//! | `webdav+http://host/path`, `webdav+https://…` | webdav (MKCOL for missing parents) | `TIERS_REMOTE_USERNAME`/`TIERS_REMOTE_PASSWORD`, or `TIERS_REMOTE_TOKEN` (bearer) |
//! | `http://host/path`, `https://…` | plain GET/PUT (bazel-remote, nginx `dav_methods PUT`) | the same |
//! | `s3://bucket/prefix` | s3 | the AWS environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL` |
//!
//! Secrets never appear in [`Location::describe`], which is what messages show.

use std::path::PathBuf;

use url::Url;

use crate::error::RemoteError;

/// Where the shared cache lives, with its service-specific settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Fs {
        root: PathBuf,
    },
    Redis {
        /// `redis://host:port` or `rediss://host:port`, without user info or db.
        endpoint: String,
        db: i64,
        /// Key prefix (the path after the db), `/` when none.
        root: String,
        auth: Auth,
    },
    /// WebDAV, or plain GET/PUT when `mkcol` is false.
    Webdav {
        /// `http(s)://host[:port]`
        endpoint: String,
        root: String,
        /// Create missing parent collections (MKCOL) when a PUT says they are missing.
        mkcol: bool,
        auth: Auth,
    },
    S3 {
        bucket: String,
        root: String,
    },
}

/// Credentials for Redis, WebDAV and HTTP.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Reads an environment variable; a seam so tests need not touch the process env.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, empty values counting as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Location {
    /// Parse `[remote] url`. Credentials come from the url's user info, overridden by
    /// `TIERS_REMOTE_USERNAME`, `TIERS_REMOTE_PASSWORD` and `TIERS_REMOTE_TOKEN`.
    pub fn parse(raw: &str, env: Env<'_>) -> Result<Location, RemoteError> {
        let bad = |why: String| RemoteError::Url {
            url: redact(raw),
            why,
        };
        let url = Url::parse(raw.trim()).map_err(|e| bad(e.to_string()))?;
        let auth = || {
            let user = (!url.username().is_empty()).then(|| decode(url.username()));
            Auth {
                username: env("TIERS_REMOTE_USERNAME").or(user),
                password: env("TIERS_REMOTE_PASSWORD").or(url.password().map(decode)),
                token: env("TIERS_REMOTE_TOKEN"),
            }
        };
        match url.scheme() {
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
                    return Err(bad(
                        "a file url names a local directory: `file:///absolute/dir`".into(),
                    ));
                }
                let root = url
                    .to_file_path()
                    .map_err(|()| bad("it is not an absolute directory path".into()))?;
                Ok(Location::Fs { root })
            }
            "redis" | "rediss" => {
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("it names no host: `redis://host:6379/0`".into()))?;
                let port = url.port().unwrap_or(6379);
                let mut segments = url.path().split('/').filter(|s| !s.is_empty());
                let db = match segments.next() {
                    None => 0,
                    Some(s) => s.parse::<i64>().map_err(|_| {
                        bad(format!(
                            "`{s}` is not a database number: `redis://host:port/0`"
                        ))
                    })?,
                };
                let rest: Vec<&str> = segments.collect();
                Ok(Location::Redis {
                    endpoint: format!("{}://{}:{port}", url.scheme(), bracket(host)),
                    db,
                    root: root_of(&rest),
                    auth: auth(),
                })
            }
            "webdav+http" | "webdav+https" | "http" | "https" => {
                let mkcol = url.scheme().starts_with("webdav+");
                let scheme = url.scheme().trim_start_matches("webdav+");
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("it names no host".into()))?;
                let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(bad("a query or fragment has no meaning here".into()));
                }
                let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
                Ok(Location::Webdav {
                    endpoint: format!("{scheme}://{}{port}", bracket(host)),
                    root: root_of(&segments),
                    mkcol,
                    auth: auth(),
                })
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("it names no bucket: `s3://bucket/prefix`".into()))?;
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(bad(
                        "S3 credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY…), not the url".into(),
                    ));
                }
                let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
                Ok(Location::S3 {
                    bucket: bucket.to_owned(),
                    root: root_of(&segments),
                })
            }
            other => Err(bad(format!(
                "the scheme `{other}` is not supported (use redis://, rediss://, webdav+http://, webdav+https://, http://, https://, s3:// or file://)"
            ))),
        }
    }

    /// The location for messages: no credentials.
    pub fn describe(&self) -> String {
        match self {
            Location::Fs { root } => format!("file://{}", root.display()),
            Location::Redis {
                endpoint, db, root, ..
            } => format!("{endpoint}/{db}{}", root.trim_end_matches('/')),
            Location::Webdav {
                endpoint,
                root,
                mkcol,
                ..
            } => {
                let prefix = if *mkcol { "webdav+" } else { "" };
                format!("{prefix}{endpoint}{}", root.trim_end_matches('/'))
            }
            Location::S3 { bucket, root } => {
                format!("s3://{bucket}{}", root.trim_end_matches('/'))
            }
        }
    }
}

/// `/a/b/` from `["a", "b"]`; `/` when empty. OpenDAL roots are absolute, `/`-ended.
fn root_of(segments: &[&str]) -> String {
    let mut root = String::from("/");
    for s in segments {
        root.push_str(s);
        root.push('/');
    }
    root
}

/// IPv6 hosts go back into brackets when put into an endpoint.
fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `%XX` escapes of user info decoded (`+` stays `+`: this is not a form).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `raw` without its password, for an error message about it.
pub fn redact(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(url: &str) -> Location {
        Location::parse(url, &no_env).unwrap()
    }

    fn error(url: &str) -> String {
        Location::parse(url, &no_env).unwrap_err().to_string()
    }

    #[test]
    fn file_url_is_a_directory() {
        assert_eq!(
            parse("file:///srv/tiers-cache"),
            Location::Fs {
                root: "/srv/tiers-cache".into()
            }
        );
        assert!(error("file://server/share").contains("file:///absolute/dir"));
    }

    #[test]
    fn redis_url_splits_endpoint_db_and_prefix() {
        assert_eq!(
            parse("redis://127.0.0.1:6380/2"),
            Location::Redis {
                endpoint: "redis://127.0.0.1:6380".into(),
                db: 2,
                root: "/".into(),
                auth: Auth::default(),
            }
        );
        let Location::Redis {
            endpoint,
            db,
            root,
            auth,
        } = parse("rediss://ci:s%40c+ret@cache.example:7000/1/team-a")
        else {
            panic!("not redis")
        };
        assert_eq!(endpoint, "rediss://cache.example:7000");
        assert_eq!((db, root.as_str()), (1, "/team-a/"));
        assert_eq!(auth.username.as_deref(), Some("ci"));
        assert_eq!(auth.password.as_deref(), Some("s@c+ret"));
        assert_eq!(
            parse("redis://localhost"),
            Location::Redis {
                endpoint: "redis://localhost:6379".into(),
                db: 0,
                root: "/".into(),
                auth: Auth::default(),
            }
        );
        assert!(error("redis://h/zero").contains("`zero` is not a database number"));
    }

    #[test]
    fn environment_credentials_win_over_the_url() {
        let env = |name: &str| match name {
            "TIERS_REMOTE_PASSWORD" => Some("from-env".to_owned()),
            "TIERS_REMOTE_TOKEN" => Some("tok".to_owned()),
            _ => None,
        };
        let Location::Webdav { auth, .. } =
            Location::parse("webdav+https://u:p@dav.example/cache", &env).unwrap()
        else {
            panic!("not webdav")
        };
        assert_eq!(auth.username.as_deref(), Some("u"));
        assert_eq!(auth.password.as_deref(), Some("from-env"));
        assert_eq!(auth.token.as_deref(), Some("tok"));
        assert!(!format!("{auth:?}").contains("from-env"));
    }

    #[test]
    fn webdav_and_plain_http_differ_in_mkcol() {
        assert_eq!(
            parse("webdav+http://127.0.0.1:8080/dav/tiers"),
            Location::Webdav {
                endpoint: "http://127.0.0.1:8080".into(),
                root: "/dav/tiers/".into(),
                mkcol: true,
                auth: Auth::default(),
            }
        );
        assert_eq!(
            parse("https://cache.example/"),
            Location::Webdav {
                endpoint: "https://cache.example".into(),
                root: "/".into(),
                mkcol: false,
                auth: Auth::default(),
            }
        );
    }

    #[test]
    fn s3_url_is_bucket_and_prefix() {
        assert_eq!(
            parse("s3://my-bucket/ci/tiers"),
            Location::S3 {
                bucket: "my-bucket".into(),
                root: "/ci/tiers/".into()
            }
        );
        assert!(error("s3://key:secret@bucket/x").contains("AWS environment"));
    }

    #[test]
    fn unknown_schemes_and_garbage_are_errors_naming_the_url() {
        let e = error("ftp://host/x");
        assert!(e.contains("`ftp`") && e.contains("ftp://host/x"), "{e}");
        assert!(error("not a url").contains("`not a url`"));
    }

    #[test]
    fn describe_never_shows_secrets() {
        let loc = parse("redis://user:hunter2@10.0.0.5:6379/3/p");
        assert_eq!(loc.describe(), "redis://10.0.0.5:6379/3/p");
        assert_eq!(
            parse("webdav+http://u:pw@h:81/a/").describe(),
            "webdav+http://h:81/a"
        );
        assert_eq!(parse("s3://b/x").describe(), "s3://b/x");
        assert!(!error("gopher://u:hunter2@h/").contains("hunter2"));
    }
}
