//! Tiny pure-Python wheels and an in-tree build backend, made by the tests themselves
//! so that pip, uv and poetry install offline (`--no-index --find-links`), and the
//! PATH the venv tests run with (uv and poetry from `scripts/ensure-tools`).
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `NAME-VERSION-py3-none-any.whl` for each `[name, version, [requires…]]` of
/// the JSON in argv[2] into the directory argv[1]: a package `NAME` whose `VERSION`
/// is the wheel's version, with a valid METADATA, WHEEL and RECORD.
const WHEEL_SCRIPT: &str = r#"
import base64, hashlib, json, os, sys, zipfile

def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (path, digest, len(data))

def wheel(outdir, name, version, requires):
    dist = "%s-%s.dist-info" % (name, version)
    meta = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)
    meta += "".join("Requires-Dist: %s\n" % r for r in requires)
    files = {
        "%s/__init__.py" % name: ('VERSION = "%s"\n' % version).encode(),
        dist + "/METADATA": meta.encode(),
        dist + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: tiers-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    lines = [record_line(p, d) for p, d in files.items()] + [dist + "/RECORD,,"]
    files[dist + "/RECORD"] = ("\n".join(lines) + "\n").encode()
    path = os.path.join(outdir, "%s-%s-py3-none-any.whl" % (name, version))
    with zipfile.ZipFile(path, "w") as z:
        for p, d in files.items():
            z.writestr(zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0)), d)

outdir = sys.argv[1]
os.makedirs(outdir, exist_ok=True)
for name, version, requires in json.loads(sys.argv[2]):
    wheel(outdir, name, version, requires)
"#;

/// Write tiny wheels `(name, version, requires)` into `dir`.
pub fn write_wheels(dir: &Path, wheels: &[(&str, &str, &[&str])]) {
    let spec = serde_json::to_string(wheels).expect("wheel spec");
    let out = Command::new("python3")
        .arg("-c")
        .arg(WHEEL_SCRIPT)
        .arg(dir)
        .arg(spec)
        .output()
        .expect("the venv tests need python3 on PATH");
    assert!(
        out.status.success(),
        "writing wheels failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PEP 517 build backend to keep in the project (`backend-path = ["_backend"]`,
/// `build-backend = "tiny_backend"`): it needs nothing from an index. Its editable
/// wheel is a `.pth` file naming the project, as setuptools' and hatchling's are;
/// its METADATA lists `[project] dependencies`.
pub const TINY_BACKEND: &str = r#"
import base64, hashlib, os, zipfile
import tomllib

def _project():
    with open("pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]

def _wheel(wheel_directory, files):
    project = _project()
    name, version = project["name"], project["version"]
    dist = "%s-%s.dist-info" % (name, version)
    meta = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)
    meta += "".join("Requires-Dist: %s\n" % r for r in project.get("dependencies", []))
    files = dict(files)
    files[dist + "/METADATA"] = meta.encode()
    files[dist + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tiny\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    lines = []
    for p, d in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
        lines.append("%s,sha256=%s,%d" % (p, digest, len(d)))
    lines.append(dist + "/RECORD,,")
    files[dist + "/RECORD"] = ("\n".join(lines) + "\n").encode()
    filename = "%s-%s-py3-none-any.whl" % (name, version)
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
    return filename

def get_requires_for_build_wheel(config_settings=None):
    return []

def get_requires_for_build_editable(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("the tests install this project editable only")

def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name = _project()["name"]
    return _wheel(wheel_directory, {name + ".pth": (os.path.abspath(".") + "\n").encode()})
"#;

/// Where `scripts/ensure-tools` installs uv and poetry when the machine has neither.
fn tools_bin() -> Option<PathBuf> {
    let home = std::env::var_os("TIERS_TOOLS_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|c| Path::new(&c).join("tiers-test-tools"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/tiers-test-tools"))
        })?;
    Some(home.join("bin")).filter(|b| b.is_dir())
}

/// PATH for the venv tests: the test's own, then the tools dir of
/// `scripts/ensure-tools`, so `cargo test --test venv` works after one `scripts/test`.
pub fn tools_path() -> OsString {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(tools_bin());
    std::env::join_paths(dirs).expect("PATH")
}

/// The real `uv` or `poetry` binary on [`tools_path`]; panics with how to get it.
pub fn tool(name: &str) -> PathBuf {
    std::env::split_paths(&tools_path())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("the venv tests need `{name}`: run `scripts/test` (or `source scripts/ensure-tools`)")
        })
}
