//! Reading what `codeql database create` left: `codeql-database.yml` and the names
//! in `src.zip`. Neither needs a YAML or zip library: the metadata keys the tier
//! reads are plain top-level scalars, and a zip's central directory lists every
//! name without decompressing anything.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The metadata file at the root of every database.
pub const METADATA: &str = "codeql-database.yml";
/// The source archive: every extracted file under its absolute path.
pub const SOURCE_ARCHIVE: &str = "src.zip";

/// The keys of `codeql-database.yml` the tier uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// `finalised: true`: the database is complete and can be queried.
    pub finalised: bool,
    pub source_location_prefix: Option<String>,
    pub primary_language: Option<String>,
    /// `creationMetadata.cliVersion`
    pub cli_version: Option<String>,
}

impl Metadata {
    pub fn read(db: &Path) -> io::Result<Metadata> {
        Ok(Metadata::parse(&std::fs::read_to_string(
            db.join(METADATA),
        )?))
    }

    /// Top-level `key: value` lines, and `cliVersion` under `creationMetadata`.
    pub fn parse(text: &str) -> Metadata {
        let mut m = Metadata::default();
        let mut section = "";
        for line in text.lines() {
            let indented = line.starts_with([' ', '\t']);
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            let value = unquote(value.trim());
            if !indented {
                section = key;
                match key {
                    "finalised" => m.finalised = value == "true",
                    "sourceLocationPrefix" => m.source_location_prefix = Some(value.to_owned()),
                    "primaryLanguage" => m.primary_language = Some(value.to_owned()),
                    _ => {}
                }
            } else if section == "creationMetadata" && key == "cliVersion" {
                m.cli_version = Some(value.to_owned());
            }
        }
        m
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

/// The file names in a zip archive, from its central directory (zip64 included).
pub fn zip_names(path: &Path) -> io::Result<Vec<String>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    // The end record is 22 bytes plus a comment of at most 65535.
    let tail_len = len.min(22 + 65535);
    let mut tail = vec![0u8; tail_len as usize];
    f.seek(SeekFrom::Start(len - tail_len))?;
    f.read_exact(&mut tail)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| le32(&tail, i) == 0x0605_4b50)
        .ok_or_else(|| bad("no end of central directory record"))?;
    let mut count = u64::from(le16(&tail, eocd + 10));
    let mut cd_size = u64::from(le32(&tail, eocd + 12));
    let mut cd_offset = u64::from(le32(&tail, eocd + 16));
    if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        // Zip64: a locator just before the end record points at the zip64 end record.
        let loc = eocd
            .checked_sub(20)
            .filter(|&l| le32(&tail, l) == 0x0706_4b50)
            .ok_or_else(|| bad("zip64 sizes without a zip64 locator"))?;
        let rec_offset = le64(&tail, loc + 8);
        let mut rec = [0u8; 56];
        f.seek(SeekFrom::Start(rec_offset))?;
        f.read_exact(&mut rec)?;
        if le32(&rec, 0) != 0x0606_4b50 {
            return Err(bad("no zip64 end of central directory record"));
        }
        count = le64(&rec, 32);
        cd_size = le64(&rec, 40);
        cd_offset = le64(&rec, 48);
    }
    if cd_offset.checked_add(cd_size).is_none_or(|end| end > len) {
        return Err(bad("the central directory lies outside the file"));
    }
    let mut cd = vec![0u8; cd_size as usize];
    f.seek(SeekFrom::Start(cd_offset))?;
    f.read_exact(&mut cd)?;
    let mut names = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        if at + 46 > cd.len() || le32(&cd, at) != 0x0201_4b50 {
            return Err(bad("a central directory entry is truncated"));
        }
        let name_len = usize::from(le16(&cd, at + 28));
        let extra_len = usize::from(le16(&cd, at + 30));
        let comment_len = usize::from(le16(&cd, at + 32));
        let name = cd
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| bad("a file name runs past the central directory"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        if !name.ends_with('/') {
            names.push(name);
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(names)
}

fn bad(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a readable zip: {why}"),
    )
}

fn le16(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn le32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// A `src.zip` name as a path relative to one of `roots` (absolute, `/`-separated).
/// The CLI stores `/home/me/p/a.py` as `home/me/p/a.py`.
pub fn relative_to(name: &str, roots: &[String]) -> Option<String> {
    let name = name.trim_start_matches('/');
    roots.iter().find_map(|root| {
        let root = root.trim_matches('/');
        let rest = if root.is_empty() {
            name
        } else {
            name.strip_prefix(root)?.strip_prefix('/')?
        };
        (!rest.is_empty()).then(|| rest.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_reads_the_documented_keys() {
        let text = "---\nsourceLocationPrefix: /src/p\nbaselineLinesOfCode: 49\n\
                    primaryLanguage: \"python\"\ncreationMetadata:\n  sha: d10d\n  \
                    cliVersion: 2.14.2\n  creationTime: 2023-08-22T17:17:17Z\nfinalised: true\n";
        let m = Metadata::parse(text);
        assert_eq!(
            m,
            Metadata {
                finalised: true,
                source_location_prefix: Some("/src/p".into()),
                primary_language: Some("python".into()),
                cli_version: Some("2.14.2".into()),
            }
        );
        assert!(!Metadata::parse("finalised: false\n").finalised);
        // Only the top-level key counts.
        assert!(!Metadata::parse("other:\n  finalised: true\n").finalised);
    }

    #[test]
    fn names_map_back_under_the_source_root() {
        let roots = ["/home/me/p".to_owned()];
        assert_eq!(
            relative_to("home/me/p/pkg/a.py", &roots).as_deref(),
            Some("pkg/a.py")
        );
        assert_eq!(
            relative_to("/home/me/p/a.py", &roots).as_deref(),
            Some("a.py")
        );
        assert_eq!(relative_to("home/me/pp/a.py", &roots), None);
        assert_eq!(relative_to("usr/lib/python3/os.py", &roots), None);
    }

    /// A zip written by Python's `zipfile`, the format the real CLI's Java writer shares.
    #[test]
    fn zip_names_lists_a_python_made_archive() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("src.zip");
        let status = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, zipfile\n\
                 z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\n\
                 z.writestr('tmp/p/a.py', 'x = 1\\n' * 100)\n\
                 z.writestr('tmp/p/dir/', '')\n\
                 z.writestr('tmp/p/pkg/\u{e9}.py', 'y = 2\\n')\n\
                 z.comment = b'a comment'\n\
                 z.close()",
            )
            .arg(&zip)
            .status()
            .expect("python3 runs");
        assert!(status.success());
        assert_eq!(
            zip_names(&zip).unwrap(),
            ["tmp/p/a.py", "tmp/p/pkg/\u{e9}.py"]
        );
    }

    #[test]
    fn zip_names_follows_the_zip64_end_record() {
        // One stored entry, then a zip64 end record, its locator, and an end record
        // whose count and offsets say "see zip64".
        let name = b"tmp/p/a.py";
        let mut z = Vec::new();
        let local = z.len() as u64;
        z.extend(0x0403_4b50u32.to_le_bytes());
        z.extend([0u8; 22]);
        z.extend((name.len() as u16).to_le_bytes());
        z.extend(0u16.to_le_bytes());
        z.extend(name);
        let cd_offset = z.len() as u64;
        z.extend(0x0201_4b50u32.to_le_bytes());
        z.extend([0u8; 24]);
        z.extend((name.len() as u16).to_le_bytes());
        z.extend([0u8; 12]);
        z.extend((local as u32).to_le_bytes());
        z.extend(name);
        let cd_size = z.len() as u64 - cd_offset;
        let rec = z.len() as u64;
        z.extend(0x0606_4b50u32.to_le_bytes());
        z.extend(44u64.to_le_bytes());
        z.extend([0u8; 20]);
        z.extend(1u64.to_le_bytes());
        z.extend(cd_size.to_le_bytes());
        z.extend(cd_offset.to_le_bytes());
        z.extend(0x0706_4b50u32.to_le_bytes());
        z.extend(0u32.to_le_bytes());
        z.extend(rec.to_le_bytes());
        z.extend(1u32.to_le_bytes());
        z.extend(0x0605_4b50u32.to_le_bytes());
        z.extend([0u8; 4]);
        z.extend([0xFF; 4]);
        z.extend([0xFF; 8]);
        z.extend(0u16.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src.zip");
        std::fs::write(&path, z).unwrap();
        assert_eq!(zip_names(&path).unwrap(), ["tmp/p/a.py"]);
    }

    #[test]
    fn zip_names_rejects_what_is_not_a_zip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src.zip");
        std::fs::write(&path, b"PK\x05\x06 too short").unwrap();
        assert!(zip_names(&path).is_err());
        std::fs::write(&path, b"").unwrap();
        assert!(zip_names(&path).is_err());
    }
}
