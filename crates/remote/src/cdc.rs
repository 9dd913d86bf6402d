//! Content-defined chunking: bounds chosen by the bytes around them (a gear
//! rolling hash, as in FastCDC), so an insertion moves only the chunks it touches
//! and every later bound stays where it was. An entry's marker and tree — a line
//! or a digest changed among megabytes of them — are cut this way, so an edit
//! uploads the few chunks around its change.
//!
//! The bounds are part of the remote format: the gear table and the sizes below
//! never change within one [`RECORD_FORMAT`](crate::RECORD_FORMAT).

use std::ops::Range;

/// No chunk is shorter, but the last.
pub const MIN: usize = 1 << 10;
/// The size a chunk has on average (a bound where the hash's low 12 bits are 0).
pub const AVERAGE: usize = 4 << 10;
/// No chunk is longer.
pub const MAX: usize = 16 << 10;

const MASK: u64 = (AVERAGE as u64 - 1) << 52;

/// The gear table: 256 fixed pseudo-random words (SplitMix64 from 0).
const GEAR: [u64; 256] = gear();

const fn gear() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state: u64 = 0;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

/// The chunks of `bytes`, in order, covering them exactly; none for no bytes.
pub fn chunks(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(bytes.len() / AVERAGE + 1);
    let mut start = 0;
    while start < bytes.len() {
        let end = next_bound(&bytes[start..]) + start;
        out.push(start..end);
        start = end;
    }
    out
}

/// The length of the chunk that starts `rest`.
fn next_bound(rest: &[u8]) -> usize {
    if rest.len() <= MIN {
        return rest.len();
    }
    let limit = rest.len().min(MAX);
    let mut hash: u64 = 0;
    for (i, &b) in rest[..limit].iter().enumerate().skip(MIN) {
        hash = (hash << 1).wrapping_add(GEAR[b as usize]);
        if hash & MASK == 0 {
            return i + 1;
        }
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_bytes_within_their_bounds() {
        for n in [0, 1, MIN, MIN + 1, MAX, 3 * MAX + 7, 1 << 20] {
            let bytes = noise(n, n as u64 + 3);
            let cut = chunks(&bytes);
            let mut at = 0;
            for (i, c) in cut.iter().enumerate() {
                assert_eq!(c.start, at);
                assert!(c.len() <= MAX, "{c:?}");
                assert!(c.len() >= MIN || i + 1 == cut.len(), "{c:?}");
                at = c.end;
            }
            assert_eq!(at, n);
        }
        let big = chunks(&noise(1 << 20, 9));
        let average = (1 << 20) / big.len();
        assert!((2 * 1024..10 * 1024).contains(&average), "{average}");
    }

    /// The bounds are part of format 2: records name chunks by digest, and a
    /// reader re-cuts its last marker and tree to find the ones it has. These
    /// were computed apart from this code (a Python transcription of it).
    #[test]
    fn the_bounds_of_format_2_never_change() {
        assert_eq!(GEAR[0], 0xe220_a839_7b1d_cdaf);
        assert_eq!(GEAR[255], 0x5a58_32bb_47bc_f19e);
        let ends: Vec<usize> = chunks(&noise(64 << 10, 42)).iter().map(|r| r.end).collect();
        assert_eq!(
            ends,
            [
                7211, 9197, 10942, 17767, 20200, 24705, 29071, 39526, 43877, 53468, 56250, 65124,
                65536
            ]
        );
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let before = noise(512 << 10, 5);
        let mut after = before.clone();
        after.splice(
            200_000..200_000,
            b"print('one line more')\n".iter().copied(),
        );
        let set = |b: &[u8]| -> std::collections::HashSet<Vec<u8>> {
            chunks(b).into_iter().map(|r| b[r].to_vec()).collect()
        };
        let (old, new) = (set(&before), set(&after));
        let changed = new.difference(&old).count();
        assert!(
            (1..=3).contains(&changed),
            "{changed} of {} chunks",
            new.len()
        );
    }
}
