//! Pack objects: the blobs one upload adds, concatenated, compressed in frames,
//! and followed by their index.
//!
//! ```text
//! packs/<sha256 of the whole object>
//!   frame 0 … frame n-1   zstd frames of up to FRAME_RAW bytes of the blobs'
//!                         concatenation; a blob that does not fit in the current
//!                         frame starts the next one
//!   index                 "TPAK", version, the frames' stored and raw sizes,
//!                         then every blob as its digest and length, in order
//! ```
//!
//! A record names the packs its entry's blobs are in, with each index's place and
//! digest, so a reader fetches an index with one ranged read and then only the
//! frames holding the blobs it lacks. Blob lengths are stored; offsets follow from
//! the order, so no index can point outside its pack. Every blob read back is
//! checked against its digest.

use std::collections::HashMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use tiers_core::{ByteReader, Digest};

/// Raw bytes per frame: large enough that zstd finds the repeats between small
/// blobs, small enough that a reader of one blob decompresses little else.
pub const FRAME_RAW: usize = 1 << 20;

/// A pack is closed once its frames hold this many bytes (one request each,
/// bounded memory, far under Redis's 512 MiB value limit).
pub const PACK_BYTES: usize = 32 << 20;

/// zstd level: fast, and most of the gain on text-like artifacts.
const ZSTD_LEVEL: i32 = 3;

const MAGIC: &[u8; 4] = b"TPAK";
const VERSION: u32 = 1;

/// Where a pack's index is and what it hashes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRef {
    pub offset: u64,
    pub bytes: u64,
    pub sha256: Digest,
}

/// A pack a record names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRef {
    pub sha256: Digest,
    pub bytes: u64,
    pub index: IndexRef,
}

impl PackRef {
    /// Its place on the remote.
    pub fn path(&self) -> String {
        format!("packs/{}", self.sha256)
    }

    /// Sizes that no pack written by tiers has are refused before any request.
    pub fn check(&self) -> Result<(), String> {
        let end = self.index.offset.checked_add(self.index.bytes);
        if end != Some(self.bytes) || self.index.bytes < 12 || self.bytes > crate::MAX_BLOB_BYTES {
            return Err(format!(
                "its pack {} of {} bytes has an index at {}+{}",
                self.sha256, self.bytes, self.index.offset, self.index.bytes
            ));
        }
        Ok(())
    }
}

/// A frame: its place in the pack and in the blobs' concatenation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub stored: u64,
    pub stored_len: u32,
    pub raw: u64,
    pub raw_len: u32,
}

/// A pack's index, read back and checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackIndex {
    pub frames: Vec<Frame>,
    /// Every blob: its place in the concatenation.
    pub blobs: HashMap<Digest, Range<u64>>,
}

impl PackIndex {
    /// The index of a pack whose frames end at `frames_end`, or why not.
    pub fn decode(bytes: &[u8], frames_end: u64) -> Result<PackIndex, String> {
        let mut r = ByteReader::new(bytes, "the index");
        if r.take(4)? != MAGIC {
            return Err("it is not a pack index".into());
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!("pack index version {version} is not {VERSION}"));
        }
        let mut index = PackIndex::default();
        let (mut stored, mut raw) = (0u64, 0u64);
        for _ in 0..r.count(8)? {
            let (stored_len, raw_len) = (r.u32()?, r.u32()?);
            if stored_len == 0 || raw_len == 0 || raw_len as usize > FRAME_RAW {
                return Err(format!("a frame of {stored_len} bytes holds {raw_len}"));
            }
            index.frames.push(Frame {
                stored,
                stored_len,
                raw,
                raw_len,
            });
            stored += u64::from(stored_len);
            raw += u64::from(raw_len);
        }
        if stored != frames_end {
            return Err(format!(
                "its frames end at byte {stored}, its index starts at {frames_end}"
            ));
        }
        let mut at = 0u64;
        for _ in 0..r.count(36)? {
            let digest = r.digest()?;
            let len = u64::from(r.u32()?);
            if len > crate::MAX_BLOB_BYTES {
                return Err(format!("it holds a blob of {len} bytes"));
            }
            index.blobs.insert(digest, at..at + len);
            at += len;
        }
        if at != raw {
            return Err(format!("its blobs hold {at} bytes, its frames {raw}"));
        }
        if !r.is_done() {
            return Err("trailing bytes after the index".into());
        }
        Ok(index)
    }

    /// The frames that hold `range` of the concatenation.
    pub fn frames_of(&self, range: &Range<u64>) -> Range<usize> {
        let first = self
            .frames
            .partition_point(|f| f.raw + u64::from(f.raw_len) <= range.start);
        let end = self.frames.partition_point(|f| f.raw < range.end);
        first..end.max(first)
    }
}

/// One ranged read of a pack: consecutive frames and the blobs wanted from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub frames: Range<usize>,
    /// The bytes of the pack to read.
    pub stored: Range<u64>,
    /// The blobs wanted, each with its place in the concatenation.
    pub blobs: Vec<(Digest, Range<u64>)>,
}

/// Ranged reads that hold `wanted` (blobs of `index`): frames that hold wanted
/// blobs, joined where less than `gap` bytes lie between them, each read at most
/// `most` bytes, inflating to at most `most_raw`, unless a blob needs more; no
/// frame is in two reads but where a read would pass `most_raw` (frames can
/// inflate a thousandfold, and a read is inflated whole). A blob of no bytes is
/// in no frame (it may sit where one starts, or at the pack's end) and in no
/// read: its reader has it already.
pub fn plan(
    index: &PackIndex,
    mut wanted: Vec<(Digest, Range<u64>)>,
    gap: u64,
    most: u64,
    most_raw: u64,
) -> Vec<Span> {
    wanted.retain(|(_, r)| !r.is_empty());
    wanted.sort_by_key(|(_, r)| r.start);
    let raw_end = |end: usize| {
        end.checked_sub(1)
            .and_then(|last| index.frames.get(last))
            .map_or(0, |f| f.raw + u64::from(f.raw_len))
    };
    let mut spans: Vec<Span> = Vec::new();
    for (d, r) in wanted {
        let frames = index.frames_of(&r);
        let stored = match (index.frames.get(frames.start), frames.end.checked_sub(1)) {
            (Some(first), Some(last)) => {
                let last = &index.frames[last];
                first.stored..last.stored + u64::from(last.stored_len)
            }
            _ => 0..0,
        };
        let joins = spans.last().is_some_and(|s| {
            let raw_start = index.frames.get(s.frames.start).map_or(0, |f| f.raw);
            let raw = raw_end(s.frames.end.max(frames.end)).saturating_sub(raw_start);
            // A frame is read once: a blob in the last span's last frame joins it.
            let shares = frames.start < s.frames.end;
            let near = stored.start <= s.stored.end.saturating_add(gap)
                && stored.end.saturating_sub(s.stored.start) <= most;
            (shares || near) && raw <= most_raw
        });
        match spans.last_mut() {
            Some(s) if joins => {
                s.frames.end = s.frames.end.max(frames.end);
                s.stored.end = s.stored.end.max(stored.end);
                s.blobs.push((d, r));
            }
            _ => spans.push(Span {
                frames,
                stored,
                blobs: vec![(d, r)],
            }),
        }
    }
    spans
}

/// Decompress consecutive `frames` read as `stored` (which starts at the first
/// one): the raw bytes they hold, starting at `frames[0].raw`.
pub fn inflate(frames: &[Frame], stored: &[u8]) -> Result<Vec<u8>, String> {
    let Some(first) = frames.first() else {
        return Ok(Vec::new());
    };
    let total: usize = frames.iter().map(|f| f.raw_len as usize).sum();
    let mut out = Vec::with_capacity(total);
    for f in frames {
        let from = (f.stored - first.stored) as usize;
        let part = stored
            .get(from..from + f.stored_len as usize)
            .ok_or("the pack is shorter than its index says")?;
        let raw = zstd::bulk::decompress(part, f.raw_len as usize)
            .map_err(|e| format!("a frame at byte {} does not decompress: {e}", f.stored))?;
        if raw.len() != f.raw_len as usize {
            return Err(format!(
                "a frame at byte {} holds {} bytes, not {}",
                f.stored,
                raw.len(),
                f.raw_len
            ));
        }
        out.extend_from_slice(&raw);
    }
    Ok(out)
}

/// Every blob of a whole pack, checked against its digest (for tools that read
/// a store through, and tests that rewrite one).
pub fn unpack_all(bytes: &[u8], pack: &PackRef) -> Result<Vec<(Digest, Vec<u8>)>, String> {
    if Digest::of(bytes) != pack.sha256 || bytes.len() as u64 != pack.bytes {
        return Err(format!("the pack {} is damaged", pack.sha256));
    }
    let at = pack.index.offset as usize;
    let index = PackIndex::decode(&bytes[at..], pack.index.offset)?;
    let raw = inflate(&index.frames, &bytes[..at])?;
    let mut out: Vec<(Digest, Vec<u8>)> = index
        .blobs
        .iter()
        .map(|(d, r)| (*d, raw[r.start as usize..r.end as usize].to_vec()))
        .collect();
    out.sort_by_key(|(d, _)| *d);
    Ok(out)
}

/// One pack being written.
pub struct PackWriter {
    limit: usize,
    out: Vec<u8>,
    frame: Vec<u8>,
    frames: Vec<(u32, u32)>,
    blobs: Vec<(Digest, u32)>,
}

/// A pack written, with what it holds.
pub struct Packed {
    pub bytes: Vec<u8>,
    /// The bytes of the blobs in it, uncompressed.
    pub raw: u64,
    pub pack: PackRef,
    pub index: Vec<u8>,
}

impl PackWriter {
    /// A pack that is full once its frames hold `limit` bytes.
    pub fn new(limit: usize) -> Self {
        PackWriter {
            limit,
            out: Vec::new(),
            frame: Vec::with_capacity(FRAME_RAW),
            frames: Vec::new(),
            blobs: Vec::new(),
        }
    }
}

impl PackWriter {
    /// Add a blob (at most 4 GiB: every blob tiers writes is far smaller).
    pub fn add(&mut self, digest: Digest, mut bytes: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
        self.blobs.push((digest, len));
        if self.frame.len() + bytes.len() > FRAME_RAW {
            // A blob that does not fit starts a frame: only blobs larger than a
            // frame cross a frame's end, so reads split between whole frames.
            self.flush()?;
        }
        while !bytes.is_empty() {
            let n = bytes.len().min(FRAME_RAW - self.frame.len());
            self.frame.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.frame.len() == FRAME_RAW {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// End the current frame here, so that what comes next is read apart from
    /// what came before.
    pub fn cut(&mut self) -> std::io::Result<()> {
        self.flush()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Whether the pack is as large as a pack gets (counting the frame being
    /// filled at its raw size).
    pub fn is_full(&self) -> bool {
        self.out.len() + self.frame.len() >= self.limit
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.frame.is_empty() {
            return Ok(());
        }
        let z = zstd::bulk::compress(&self.frame, ZSTD_LEVEL)?;
        self.frames.push((z.len() as u32, self.frame.len() as u32));
        self.out.extend_from_slice(&z);
        self.frame.clear();
        Ok(())
    }

    /// The pack's bytes, its reference, and its index's bytes.
    pub fn finish(mut self) -> std::io::Result<Packed> {
        self.flush()?;
        let mut index = Vec::with_capacity(16 + self.frames.len() * 8 + self.blobs.len() * 36);
        index.extend_from_slice(MAGIC);
        index.extend_from_slice(&VERSION.to_le_bytes());
        index.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        for (stored, raw) in &self.frames {
            index.extend_from_slice(&stored.to_le_bytes());
            index.extend_from_slice(&raw.to_le_bytes());
        }
        index.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        for (digest, len) in &self.blobs {
            index.extend_from_slice(digest.as_bytes());
            index.extend_from_slice(&len.to_le_bytes());
        }
        let offset = self.out.len() as u64;
        self.out.extend_from_slice(&index);
        let pack = PackRef {
            sha256: Digest::of(&self.out),
            bytes: self.out.len() as u64,
            index: IndexRef {
                offset,
                bytes: index.len() as u64,
                sha256: Digest::of(&index),
            },
        };
        let raw = self.blobs.iter().map(|(_, len)| u64::from(*len)).sum();
        Ok(Packed {
            bytes: self.out,
            raw,
            pack,
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
            .collect()
    }

    #[test]
    fn blobs_read_back_from_the_frames_that_hold_them() {
        let blobs: Vec<Vec<u8>> = vec![
            blob(10, 1),
            blob(FRAME_RAW + 17, 3),
            blob(0, 5),
            blob(3 * FRAME_RAW, 7),
            blob(999, 9),
        ];
        let mut w = PackWriter::new(PACK_BYTES);
        for b in &blobs {
            w.add(Digest::of(b), b).unwrap();
        }
        let packed = w.finish().unwrap();
        let at = packed.pack.index.offset as usize;
        assert_eq!(Digest::of(&packed.bytes), packed.pack.sha256);
        assert_eq!(&packed.bytes[at..], &packed.index[..]);
        let index = PackIndex::decode(&packed.index, at as u64).unwrap();
        for b in &blobs {
            let range = index.blobs[&Digest::of(b)].clone();
            let frames = &index.frames[index.frames_of(&range)];
            let (from, to) = match (frames.first(), frames.last()) {
                (Some(f), Some(l)) => (
                    f.stored as usize,
                    (l.stored + u64::from(l.stored_len)) as usize,
                ),
                _ => (0, 0),
            };
            let raw = inflate(frames, &packed.bytes[from..to]).unwrap();
            let skip = frames.first().map_or(0, |f| range.start - f.raw) as usize;
            assert_eq!(&raw[skip..skip + b.len()], &b[..]);
        }
    }

    #[test]
    fn reads_join_near_frames_and_stay_bounded() {
        let mut w = PackWriter::new(PACK_BYTES);
        let blobs: Vec<Vec<u8>> = (0..6u8).map(|n| blob(FRAME_RAW, n * 2 + 1)).collect();
        for b in &blobs {
            w.add(Digest::of(b), b).unwrap();
        }
        let packed = w.finish().unwrap();
        let index = PackIndex::decode(&packed.index, packed.pack.index.offset).unwrap();
        let want = |ns: &[usize]| -> Vec<(Digest, Range<u64>)> {
            ns.iter()
                .map(|n| {
                    let d = Digest::of(&blobs[*n]);
                    (d, index.blobs[&d].clone())
                })
                .collect()
        };
        let frames = |spans: &[Span]| -> Vec<(usize, usize)> {
            spans
                .iter()
                .map(|s| (s.frames.start, s.frames.end))
                .collect()
        };
        // Neighbours join; a frame between two wanted ones is read if the gap allows.
        assert_eq!(
            frames(&plan(&index, want(&[1, 0, 2]), 0, u64::MAX, u64::MAX)),
            [(0, 3)]
        );
        assert_eq!(
            frames(&plan(&index, want(&[0, 2]), 0, u64::MAX, u64::MAX)),
            [(0, 1), (2, 3)]
        );
        assert_eq!(
            frames(&plan(&index, want(&[0, 2]), u64::MAX, u64::MAX, u64::MAX)),
            [(0, 3)]
        );
        // At most `most` bytes per read, but never less than a frame.
        let one = index.frames[0].stored_len as u64;
        assert_eq!(
            frames(&plan(&index, want(&[0, 1, 2]), 0, one, u64::MAX)),
            [(0, 1), (1, 2), (2, 3)]
        );
        // Blobs that share a frame share its read.
        let half = FRAME_RAW as u64 / 2;
        let halves: Vec<(Digest, Range<u64>)> = (0..6u64)
            .map(|n| (Digest::of(&n.to_le_bytes()), n * half..(n + 1) * half))
            .collect();
        assert_eq!(
            frames(&plan(&index, halves, 0, 1, u64::MAX)),
            [(0, 1), (1, 2), (2, 3)]
        );
    }

    #[test]
    fn reads_of_frames_that_inflate_far_stay_bounded_in_raw_bytes() {
        // Eight frames of zeros, a few bytes each; blobs of 1.5 frames, so that
        // each shares a frame with the next.
        let zeros = vec![0u8; FRAME_RAW * 8];
        let mut w = PackWriter::new(PACK_BYTES);
        w.add(Digest::of(b"all"), &zeros).unwrap();
        let packed = w.finish().unwrap();
        let index = PackIndex::decode(&packed.index, packed.pack.index.offset).unwrap();
        let step = FRAME_RAW as u64 * 3 / 2;
        let blobs: Vec<(Digest, Range<u64>)> = (0..5u64)
            .map(|n| (Digest::of(&n.to_le_bytes()), n * step..(n + 1) * step))
            .collect();
        let spans = plan(&index, blobs, u64::MAX, u64::MAX, 3 * FRAME_RAW as u64);
        assert!(spans.len() > 1, "{spans:?}");
        for s in &spans {
            let raw: u64 = index.frames[s.frames.clone()]
                .iter()
                .map(|f| u64::from(f.raw_len))
                .sum();
            assert!(raw <= 3 * FRAME_RAW as u64, "{s:?}");
        }
    }

    /// Review of issue 19: a blob of no bytes (an empty file) where a frame
    /// starts, or at the pack's end, is in no frame. Every read still covers
    /// exactly the frames it names, and holds every wanted blob that has bytes.
    #[test]
    fn an_empty_blob_where_a_frame_starts_breaks_no_read() {
        let blobs: Vec<Vec<u8>> = (0..4u8).map(|n| blob(FRAME_RAW, n * 2 + 1)).collect();
        let mut w = PackWriter::new(PACK_BYTES);
        for b in &blobs {
            w.add(Digest::of(b), b).unwrap();
        }
        let packed = w.finish().unwrap();
        let index = PackIndex::decode(&packed.index, packed.pack.index.offset).unwrap();
        let at = |n: u64| n * FRAME_RAW as u64;
        let d = |n: usize| Digest::of(&blobs[n]);
        let empty = Digest::of(b"");
        let cases: Vec<Vec<(Digest, Range<u64>)>> = vec![
            // After a read that does not start the pack: where the next frame
            // starts, and at the pack's end.
            vec![(d(1), at(1)..at(2)), (empty, at(2)..at(2))],
            vec![(d(1), at(1)..at(2)), (empty, at(4)..at(4))],
            // Before a blob of the frame it starts.
            vec![(empty, at(2)..at(2)), (d(2), at(2)..at(3))],
            // Alone.
            vec![(empty, at(3)..at(3))],
        ];
        for wanted in cases {
            for gap in [0, u64::MAX] {
                let spans = plan(&index, wanted.clone(), gap, 4 << 20, 32 << 20);
                for s in &spans {
                    let frames = &index.frames[s.frames.clone()];
                    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
                        panic!("a read of no frame: {s:?} for {wanted:?}");
                    };
                    let end = last.stored + u64::from(last.stored_len);
                    assert_eq!(s.stored, first.stored..end, "{wanted:?}, gap {gap}");
                    for (_, r) in &s.blobs {
                        assert!(first.raw <= r.start, "{wanted:?}");
                        assert!(r.end <= last.raw + u64::from(last.raw_len), "{wanted:?}");
                    }
                }
                let read: Vec<Digest> = spans
                    .iter()
                    .flat_map(|s| s.blobs.iter().map(|(d, r)| (*d, r.clone())))
                    .filter(|(_, r)| !r.is_empty())
                    .map(|(d, _)| d)
                    .collect();
                let with_bytes: Vec<Digest> = wanted
                    .iter()
                    .filter(|(_, r)| !r.is_empty())
                    .map(|(d, _)| *d)
                    .collect();
                assert_eq!(read, with_bytes, "{wanted:?}");
            }
        }
    }

    /// Review of issue 19: no blob tiers writes is larger than MAX_BLOB_BYTES
    /// (nor a pack holding it); an index claiming one is refused before a reader
    /// inflates gigabytes of zeros stored in a few bytes per frame.
    #[test]
    fn an_index_claiming_a_blob_larger_than_any_tiers_writes_is_refused() {
        let frames = (crate::MAX_BLOB_BYTES / FRAME_RAW as u64 + 1) as u32;
        let mut index = Vec::new();
        index.extend_from_slice(MAGIC);
        index.extend_from_slice(&VERSION.to_le_bytes());
        index.extend_from_slice(&frames.to_le_bytes());
        for _ in 0..frames {
            index.extend_from_slice(&1u32.to_le_bytes());
            index.extend_from_slice(&(FRAME_RAW as u32).to_le_bytes());
        }
        index.extend_from_slice(&1u32.to_le_bytes());
        index.extend_from_slice(Digest::of(b"big").as_bytes());
        index.extend_from_slice(&(frames * FRAME_RAW as u32).to_le_bytes());
        assert!(PackIndex::decode(&index, u64::from(frames)).is_err());
    }

    #[test]
    fn a_damaged_index_is_refused() {
        let mut w = PackWriter::new(PACK_BYTES);
        w.add(Digest::of(b"x"), b"x").unwrap();
        let packed = w.finish().unwrap();
        let end = packed.pack.index.offset;
        for (at, value) in [(0, b'X'), (8, 9), (12, 0), (packed.index.len() - 1, 7)] {
            let mut bad = packed.index.clone();
            bad[at] = value;
            assert!(PackIndex::decode(&bad, end).is_err(), "byte {at}");
        }
        assert!(PackIndex::decode(&packed.index, end + 1).is_err());
        let mut long = packed.index.clone();
        long.push(0);
        assert!(PackIndex::decode(&long, end).is_err());
    }
}
