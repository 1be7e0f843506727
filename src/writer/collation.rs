//! A text collation as the key encoding needs it: when are two strings
//! the same key? (See "Keys and collations" in `docs/architecture.md`.)
//!
//! # Why per-character weights are exact
//!
//! The server decides equality of two strings under a collation by
//! comparing their weight strings (`WEIGHT_STRING()`), after padding the
//! shorter one with spaces for a PAD SPACE collation. For the collations
//! reshard accepts (see [`crate::source::collation`]) the weight string of
//! a string is the concatenation of the weight strings of its characters:
//! they have no contractions (no two characters weigh differently together
//! than apart) and one level of weights. So [`Collation::weigh`] looks each
//! character up in a table learned from the server once, concatenates, and
//! for PAD SPACE drops the trailing characters that weigh like spaces
//! (or nothing); two strings are equal under the collation exactly when
//! their outputs are equal. Expansions (`ß` = `ss` under `unicode_ci`)
//! come out right because the table holds both weights for `ß`.
//!
//! `*_bin` collations compare code points, which for UTF-8 and the
//! single-byte character sets is comparing bytes: no table, only the
//! trailing spaces of PAD SPACE are dropped.
//!
//! The tables are built once at start-up and shared (`Arc`); weighing a
//! string is one table look-up per character, writing into the caller's
//! buffer.

/// One weight string per character index, packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightTable {
    /// Character `i`'s weight is `pool[offsets[i] & OFFSET..offsets[i + 1]
    /// & OFFSET]`; [`ABSENT`] set in `offsets[i + 1]` marks a character the
    /// server gave no weight for (not in the character set).
    offsets: Vec<u32>,
    pool: Vec<u8>,
}

/// The flag of an absent character in [`WeightTable::offsets`].
const ABSENT: u32 = 1 << 31;
/// The offset bits.
const OFFSET: u32 = ABSENT - 1;

impl WeightTable {
    /// A table of the weights of characters `0, 1, 2, …` in order (`None`:
    /// absent). `None` when the weights do not fit (2 GiB).
    pub fn from_sequence<'a>(
        weights: impl IntoIterator<Item = Option<&'a [u8]>>,
    ) -> Option<WeightTable> {
        let mut offsets = vec![0];
        let mut pool = Vec::new();
        for w in weights {
            let flag = match w {
                Some(w) => {
                    pool.extend_from_slice(w);
                    0
                }
                None => ABSENT,
            };
            let end = u32::try_from(pool.len()).ok().filter(|e| *e <= OFFSET)?;
            offsets.push(end | flag);
        }
        Some(WeightTable { offsets, pool })
    }

    /// The weight of character `c`, `None` when absent.
    fn get(&self, c: u32) -> Option<&[u8]> {
        let c = usize::try_from(c).ok()?;
        let end = *self.offsets.get(c + 1)?;
        if end & ABSENT != 0 {
            return None;
        }
        let start = self.offsets[c] & OFFSET;
        self.pool.get(start as usize..end as usize)
    }

    /// Characters in the table.
    fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// `count u32 | (len u8 | weight)…` with len 0xFF for an absent
    /// character; `None` when a weight is 255 bytes or longer.
    fn to_bytes(&self, out: &mut Vec<u8>) -> Option<()> {
        out.extend_from_slice(&u32::try_from(self.len()).ok()?.to_be_bytes());
        for c in 0..self.len() {
            match self.get(c as u32) {
                Some(w) => {
                    out.push(u8::try_from(w.len()).ok().filter(|l| *l != 0xFF)?);
                    out.extend_from_slice(w);
                }
                None => out.push(0xFF),
            }
        }
        Some(())
    }

    /// The inverse of [`WeightTable::to_bytes`]; `None` for bytes it cannot
    /// have written.
    fn from_bytes(b: &[u8]) -> Option<WeightTable> {
        let (n, mut rest) = b.split_first_chunk::<4>()?;
        let n = u32::from_be_bytes(*n) as usize;
        let mut weights = Vec::with_capacity(n.min(rest.len()));
        for _ in 0..n {
            let (&len, tail) = rest.split_first()?;
            if len == 0xFF {
                weights.push(None);
                rest = tail;
            } else {
                let (w, tail) = tail.split_at_checked(usize::from(len))?;
                weights.push(Some(w));
                rest = tail;
            }
        }
        if !rest.is_empty() {
            return None;
        }
        WeightTable::from_sequence(weights)
    }
}

/// How a collation's strings are turned into comparable bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weights {
    /// `*_bin`: the bytes themselves (code point order).
    Bytes,
    /// A single-byte character set: one weight per byte value.
    SingleByte(WeightTable),
    /// UTF-8 (`utf8mb3`, `utf8mb4`): one weight per code point.
    Utf8(WeightTable),
}

/// A collation reshard can compare keys under exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collation {
    /// e.g. `utf8mb4_general_ci`
    pub name: String,
    /// The collation id, as TABLE_MAP events carry it (0 when unknown).
    pub id: u16,
    /// PAD SPACE: trailing spaces do not count.
    pub pad_space: bool,
    weights: Weights,
    /// The weight of a space (what PAD SPACE pads with).
    space: Vec<u8>,
}

/// Written, followed by the character's bytes, for a character the table
/// has no weight for or a byte that is not valid in the character set (the
/// server stores neither in a text column; this only keeps different inputs
/// apart).
const INVALID: [u8; 3] = [0xFF, 0xFF, 0xFF];

impl Collation {
    pub fn new(name: impl Into<String>, id: u16, pad_space: bool, weights: Weights) -> Collation {
        let space = match &weights {
            Weights::Bytes => vec![b' '],
            Weights::SingleByte(t) | Weights::Utf8(t) => {
                t.get(u32::from(b' ')).unwrap_or(b" ").to_vec()
            }
        };
        Collation {
            name: name.into(),
            id,
            pad_space,
            weights,
            space,
        }
    }

    /// The weight tables as bytes, to keep them (see
    /// [`crate::control::collations`]); `None` when they cannot be kept.
    pub fn weights_to_bytes(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match &self.weights {
            Weights::Bytes => out.push(0),
            Weights::SingleByte(t) => {
                out.push(1);
                t.to_bytes(&mut out)?;
            }
            Weights::Utf8(t) => {
                out.push(2);
                t.to_bytes(&mut out)?;
            }
        }
        Some(out)
    }

    /// A collation from [`Collation::weights_to_bytes`]; `None` for bytes
    /// it cannot have written.
    pub fn from_weight_bytes(name: &str, id: u16, pad_space: bool, b: &[u8]) -> Option<Collation> {
        let (&kind, rest) = b.split_first()?;
        let weights = match kind {
            0 if rest.is_empty() => Weights::Bytes,
            1 => Weights::SingleByte(WeightTable::from_bytes(rest)?),
            2 => Weights::Utf8(WeightTable::from_bytes(rest)?),
            _ => return None,
        };
        Some(Collation::new(name, id, pad_space, weights))
    }

    /// Whether weight `w` is what PAD SPACE pads with: nothing, or spaces.
    fn is_pad(&self, w: &[u8]) -> bool {
        !self.space.is_empty()
            && w.chunks(self.space.len())
                .all(|c| c == self.space.as_slice())
    }

    /// Appends the comparable form of `text` to `out`: equal outputs
    /// exactly when the server finds the strings equal (see the module
    /// docs).
    pub fn weigh(&self, text: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut keep = start;
        match &self.weights {
            Weights::Bytes => {
                out.extend_from_slice(text);
                let end = if self.pad_space {
                    text.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1)
                } else {
                    text.len()
                };
                keep = start + end;
            }
            Weights::SingleByte(t) => {
                for (i, &b) in text.iter().enumerate() {
                    self.push(t.get(u32::from(b)), &text[i..=i], out, &mut keep);
                }
            }
            Weights::Utf8(t) => {
                let mut rest = text;
                while !rest.is_empty() {
                    let (cp, len) = utf8_char(rest);
                    let (ch, tail) = rest.split_at(len);
                    self.push(cp.and_then(|c| t.get(c)), ch, out, &mut keep);
                    rest = tail;
                }
            }
        }
        if self.pad_space {
            out.truncate(keep);
        }
    }

    /// Appends one character's weight (or, without one, the invalid marker
    /// and the character's bytes `ch`) and moves `keep` past it unless it
    /// is padding.
    fn push(&self, w: Option<&[u8]>, ch: &[u8], out: &mut Vec<u8>, keep: &mut usize) {
        match w {
            Some(w) => {
                out.extend_from_slice(w);
                if !self.is_pad(w) {
                    *keep = out.len();
                }
            }
            None => {
                out.extend_from_slice(&INVALID);
                out.extend_from_slice(ch);
                *keep = out.len();
            }
        }
    }
}

/// The code point at the start of `b` and its length in bytes; `(None, 1)`
/// for a byte that does not start a valid UTF-8 sequence (overlong forms
/// and surrogates are invalid, as for the server).
fn utf8_char(b: &[u8]) -> (Option<u32>, usize) {
    let lead = b[0];
    let (len, min, init) = match lead {
        0x00..=0x7F => return (Some(u32::from(lead)), 1),
        0xC2..=0xDF => (2, 0x80, u32::from(lead & 0x1F)),
        0xE0..=0xEF => (3, 0x800, u32::from(lead & 0x0F)),
        0xF0..=0xF4 => (4, 0x1_0000, u32::from(lead & 0x07)),
        _ => return (None, 1),
    };
    if b.len() < len {
        return (None, 1);
    }
    let mut cp = init;
    for &c in &b[1..len] {
        if c & 0xC0 != 0x80 {
            return (None, 1);
        }
        cp = (cp << 6) | u32::from(c & 0x3F);
    }
    if cp < min || cp > 0x10_FFFF || (0xD800..=0xDFFF).contains(&cp) {
        return (None, 1);
    }
    (Some(cp), len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy case-insensitive collation over ASCII: weight = upper case.
    fn ascii_ci(pad_space: bool) -> Collation {
        let upper: Vec<[u8; 1]> = (0u8..128).map(|c| [c.to_ascii_uppercase()]).collect();
        let table = WeightTable::from_sequence(upper.iter().map(|w| Some(&w[..]))).unwrap();
        Collation::new("ascii_ci", 11, pad_space, Weights::SingleByte(table))
    }

    fn weigh(c: &Collation, s: &[u8]) -> Vec<u8> {
        let mut out = vec![9];
        c.weigh(s, &mut out);
        out
    }

    #[test]
    fn case_and_pad_spaces_do_not_count() {
        let c = ascii_ci(true);
        assert_eq!(weigh(&c, b"abc"), weigh(&c, b"ABC"));
        assert_eq!(weigh(&c, b"abc"), weigh(&c, b"abc   "));
        assert_ne!(weigh(&c, b"abc"), weigh(&c, b"ab c"));
        assert_ne!(weigh(&c, b"abc"), weigh(&c, b"abc\t"));
        assert_eq!(weigh(&c, b"  "), weigh(&c, b""));
        assert_eq!(weigh(&c, b"abc"), vec![9, b'A', b'B', b'C']);
        // no pad: trailing spaces count
        let c = ascii_ci(false);
        assert_ne!(weigh(&c, b"abc"), weigh(&c, b"abc "));
    }

    #[test]
    fn binary_collations_compare_bytes() {
        let pad = Collation::new("utf8mb4_bin", 46, true, Weights::Bytes);
        assert_eq!(weigh(&pad, b"a b  "), weigh(&pad, b"a b"));
        assert_ne!(weigh(&pad, b"a"), weigh(&pad, b"A"));
        assert_ne!(weigh(&pad, b"a\0"), weigh(&pad, b"a"));
        let nopad = Collation::new("utf8mb4_nopad_bin", 1070, false, Weights::Bytes);
        assert_ne!(weigh(&nopad, b"a "), weigh(&nopad, b"a"));
    }

    #[test]
    fn utf8_looks_up_code_points_and_expands() {
        // 'ß' (U+00DF) weighs like "ss"; 'é' like 'e'; case-insensitive
        let weights: Vec<Vec<u8>> = (0u32..0x100)
            .map(|c| match c {
                0xDF => b"SS".to_vec(),
                0xE9 | 0xC9 => b"E".to_vec(),
                c if c < 0x80 => vec![(c as u8).to_ascii_uppercase()],
                c => vec![0xC0, c as u8],
            })
            .collect();
        let table = WeightTable::from_sequence(weights.iter().map(|w| Some(w.as_slice())));
        let c = Collation::new("t", 0, true, Weights::Utf8(table.unwrap()));
        assert_eq!(
            weigh(&c, "straße".as_bytes()),
            weigh(&c, "STRASSE".as_bytes())
        );
        assert_eq!(weigh(&c, "café".as_bytes()), weigh(&c, "CAFE  ".as_bytes()));
        // beyond the table, invalid sequences: a marker per byte, never
        // equal to a valid character
        assert_ne!(
            weigh(&c, "\u{4e2d}".as_bytes()),
            weigh(&c, "\u{4e2e}".as_bytes())
        );
        assert_ne!(weigh(&c, &[0xC3]), weigh(&c, &[0xC4]));
    }

    #[test]
    fn utf8_decoding_rejects_what_the_server_rejects() {
        assert_eq!(utf8_char("é".as_bytes()), (Some(0xE9), 2));
        assert_eq!(utf8_char("😀".as_bytes()), (Some(0x1F600), 4));
        assert_eq!(utf8_char(&[0xC0, 0x80]), (None, 1), "overlong");
        assert_eq!(utf8_char(&[0xED, 0xA0, 0x80]), (None, 1), "surrogate");
        assert_eq!(utf8_char(&[0xE2, 0x82]), (None, 1), "truncated");
        assert_eq!(utf8_char(&[0xF5, 0x80, 0x80, 0x80]), (None, 1));
    }

    #[test]
    fn weights_round_trip_through_bytes() {
        for c in [
            ascii_ci(true),
            Collation::new("utf8mb4_bin", 46, true, Weights::Bytes),
        ] {
            let b = c.weights_to_bytes().unwrap();
            let back = Collation::from_weight_bytes(&c.name, c.id, c.pad_space, &b).unwrap();
            assert_eq!(back, c);
            assert!(
                Collation::from_weight_bytes("x", 0, true, &b[..b.len() - 1]).is_none()
                    || b.len() == 1
            );
        }
        let w: [Option<&[u8]>; 3] = [Some(&[1, 2]), None, Some(&[])];
        let c = Collation::new(
            "t",
            1,
            false,
            Weights::Utf8(WeightTable::from_sequence(w).unwrap()),
        );
        let b = c.weights_to_bytes().unwrap();
        assert_eq!(Collation::from_weight_bytes("t", 1, false, &b).unwrap(), c);
        assert!(Collation::from_weight_bytes("t", 1, false, &[9]).is_none());
        let mut extra = b.clone();
        extra.push(0);
        assert!(Collation::from_weight_bytes("t", 1, false, &extra).is_none());
    }

    #[test]
    fn weight_tables_find_each_characters_weight() {
        let w: [Option<&[u8]>; 5] = [Some(&[1]), Some(&[]), None, Some(&[3, 3, 3]), None];
        let t = WeightTable::from_sequence(w).unwrap();
        assert_eq!(t.get(0), Some(&[1u8][..]));
        assert_eq!(t.get(1), Some(&[][..]));
        assert_eq!(t.get(2), None);
        assert_eq!(t.get(3), Some(&[3u8, 3, 3][..]));
        assert_eq!(t.get(4), None);
        assert_eq!(t.get(5), None);
    }
}
