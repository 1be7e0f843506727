//! Byte encodings of a row key.
//!
//! * [`encode`] / [`decode`]: the key's values, losslessly (the initial
//!   copy saves the last key it copied and resumes after it).
//! * [`canonical`]: the key's **identity** on the target: equal exactly
//!   when the target's primary key finds the keys equal. It is the
//!   tombstone key, picks the lane ([`lane_hash`]) and finds two
//!   operations on one key within a batch. The bound values of upserts and
//!   deletes stay the real bytes; only the identity is canonical.
//!
//! Each value is a type tag followed by a self-delimiting body, so two
//! different keys never encode to the same bytes ("ab","c" ≠ "a","bc").
//! A column always decodes to the same value type, so one key has one
//! encoding.
//!
//! # The canonical key (see "Keys and collations" in `docs/architecture.md`)
//!
//! A key column of a non-binary text type compares under its collation:
//! under `utf8mb4_general_ci`, 'a' = 'A' = 'a ' (PAD SPACE) = 'á'. Its part
//! of the canonical key is the collation's comparable form
//! ([`Collation::weigh`], tag 8), so collation-equal spellings of one key
//! share one tombstone and one lane and collapse within a batch. Every
//! other column (integers, dates, `binary` strings, `BINARY(n)` with its
//! padding restored by the decoder) is part of the key as [`encode`]
//! writes it: their equality is byte equality.
//!
//! A canonical key longer than [`KEY_MAX`] bytes (the tombstone key column
//! is `VARBINARY(2048)`; MySQL keys may be 3072 bytes, and collation
//! weights can be longer than the text) is replaced by a tag byte and its
//! SHA-256 digest, never truncated: two keys share a digest only by a
//! SHA-256 collision.

use std::sync::Arc;

use mysql_common::value::Value;
use sha2::{Digest, Sha256};

use super::collation::Collation;

/// How one key column takes part in the canonical key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// Equal values have equal bytes (as [`encode`] writes them).
    Exact,
    /// Text compared under a collation.
    Collated(Arc<Collation>),
}

/// The longest canonical key stored as it is (the width of the tombstone
/// key column); longer ones are digested.
pub const KEY_MAX: usize = 2048;

/// Tag of a collated text part (its weights).
const TAG_COLLATED: u8 = 8;
/// Tag of a digested key: SHA-256 of the canonical key.
const TAG_DIGEST: u8 = 0xFE;

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::NULL => out.push(0),
        Value::Int(i) => {
            out.push(1);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::UInt(u) => {
            out.push(2);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Value::Bytes(b) => {
            out.push(3);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        Value::Float(f) => {
            out.push(4);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Double(f) => {
            out.push(5);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Date(y, m, d, h, mi, s, us) => {
            out.push(6);
            out.extend_from_slice(&y.to_be_bytes());
            out.extend_from_slice(&[*m, *d, *h, *mi, *s]);
            out.extend_from_slice(&us.to_be_bytes());
        }
        Value::Time(neg, d, h, mi, s, us) => {
            out.push(7);
            out.push(u8::from(*neg));
            out.extend_from_slice(&d.to_be_bytes());
            out.extend_from_slice(&[*h, *mi, *s]);
            out.extend_from_slice(&us.to_be_bytes());
        }
    }
}

/// Encodes key values losslessly.
pub fn encode(key: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * key.len());
    for v in key {
        encode_value(v, &mut out);
    }
    out
}

/// The canonical key of `key` whose columns take part as `parts` say (a
/// missing part is [`KeyPart::Exact`]); see the module docs. For keys
/// without collated text it is [`encode`]'s bytes.
pub fn canonical(key: &[Value], parts: &[KeyPart]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * key.len());
    canonical_into(key, parts, &mut out);
    out
}

/// [`canonical`] of the key values `key` yields, written into `out`
/// (cleared first): the router compares a key without allocating.
pub fn canonical_into<'a>(
    key: impl IntoIterator<Item = &'a Value>,
    parts: &[KeyPart],
    out: &mut Vec<u8>,
) {
    out.clear();
    for (i, v) in key.into_iter().enumerate() {
        match (v, parts.get(i)) {
            (Value::Bytes(b), Some(KeyPart::Collated(c))) => {
                out.push(TAG_COLLATED);
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                c.weigh(b, out);
                let len = (out.len() - at - 4) as u32;
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
            _ => encode_value(v, out),
        }
    }
    if out.len() > KEY_MAX {
        let digest = Sha256::digest(&*out);
        out.clear();
        out.push(TAG_DIGEST);
        out.extend_from_slice(&digest);
    }
}

/// Inverse of [`encode`] (for resuming a copy after its last key);
/// `None` for bytes [`encode`] cannot have produced.
pub fn decode(mut b: &[u8]) -> Option<Vec<Value>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn be<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
        take(b, N)?.try_into().ok()
    }
    let mut out = Vec::new();
    while let Some((&tag, rest)) = b.split_first() {
        b = rest;
        out.push(match tag {
            0 => Value::NULL,
            1 => Value::Int((u64::from_be_bytes(be(&mut b)?) ^ (1 << 63)) as i64),
            2 => Value::UInt(u64::from_be_bytes(be(&mut b)?)),
            3 => {
                let n = u32::from_be_bytes(be(&mut b)?) as usize;
                Value::Bytes(take(&mut b, n)?.to_vec())
            }
            4 => Value::Float(f32::from_bits(u32::from_be_bytes(be(&mut b)?))),
            5 => Value::Double(f64::from_bits(u64::from_be_bytes(be(&mut b)?))),
            6 => {
                let y = u16::from_be_bytes(be(&mut b)?);
                let f: [u8; 5] = be(&mut b)?;
                let us = u32::from_be_bytes(be(&mut b)?);
                Value::Date(y, f[0], f[1], f[2], f[3], f[4], us)
            }
            7 => {
                let neg = take(&mut b, 1)?[0] != 0;
                let d = u32::from_be_bytes(be(&mut b)?);
                let f: [u8; 3] = be(&mut b)?;
                let us = u32::from_be_bytes(be(&mut b)?);
                Value::Time(neg, d, f[0], f[1], f[2], us)
            }
            _ => return None,
        });
    }
    Some(out)
}

/// FNV-1a over the table name and the encoded key: picks a lane.
pub fn lane_hash(table: &str, key_enc: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in table.as_bytes().iter().chain([0u8].iter()).chain(key_enc) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_self_delimiting() {
        let a = encode(&[Value::Bytes(b"ab".to_vec()), Value::Bytes(b"c".to_vec())]);
        let b = encode(&[Value::Bytes(b"a".to_vec()), Value::Bytes(b"bc".to_vec())]);
        assert_ne!(a, b);
        assert_ne!(encode(&[Value::Int(1)]), encode(&[Value::UInt(1)]));
        assert_eq!(
            encode(&[Value::UInt(u64::MAX)]),
            encode(&[Value::UInt(u64::MAX)])
        );
    }

    #[test]
    fn decode_inverts_encode() {
        let key = vec![
            Value::NULL,
            Value::Int(-5),
            Value::UInt(u64::MAX),
            Value::Bytes(b"a\0b".to_vec()),
            Value::Double(1.5),
            Value::Date(2024, 2, 29, 1, 2, 3, 4),
            Value::Time(true, 1, 2, 3, 4, 5),
        ];
        assert_eq!(decode(&encode(&key)).unwrap(), key);
        assert!(decode(&[9]).is_none());
        assert!(decode(&[3, 0, 0, 0, 9, b'x']).is_none());
    }

    fn ci() -> KeyPart {
        use super::super::collation::{WeightTable, Weights};
        let upper: Vec<[u8; 1]> = (0u8..128).map(|c| [c.to_ascii_uppercase()]).collect();
        let table = WeightTable::from_sequence(upper.iter().map(|w| Some(&w[..]))).unwrap();
        KeyPart::Collated(Arc::new(Collation::new(
            "ascii_ci",
            0,
            true,
            Weights::SingleByte(table),
        )))
    }

    #[test]
    fn canonical_keys_follow_the_collation() {
        let parts = [ci(), KeyPart::Exact];
        let k = |s: &str, n: i64| canonical(&[Value::Bytes(s.into()), Value::Int(n)], &parts);
        assert_eq!(k("abc", 1), k("ABC  ", 1));
        assert_ne!(k("abc", 1), k("abd", 1));
        assert_ne!(k("abc", 1), k("abc", 2));
        // an exact column stays byte-exact, and equals encode() without
        // collated parts (tombstones of such keys did not change)
        let exact = [KeyPart::Exact, KeyPart::Exact];
        let key = [Value::Bytes(b"abc".to_vec()), Value::Int(1)];
        assert_eq!(canonical(&key, &exact), encode(&key));
        assert_eq!(canonical(&key, &[]), encode(&key));
        // collated parts are self-delimiting too
        let two = [ci(), ci()];
        let kk =
            |a: &str, b: &str| canonical(&[Value::Bytes(a.into()), Value::Bytes(b.into())], &two);
        assert_ne!(kk("ab", "c"), kk("a", "bc"));
        assert_eq!(kk("ab", "c"), kk("AB", "C"));
    }

    #[test]
    fn long_keys_are_digested_never_truncated() {
        let long = |last: u8| {
            let mut b = vec![b'x'; 3072];
            b[3071] = last;
            canonical(&[Value::Bytes(b)], &[KeyPart::Exact])
        };
        assert_eq!(long(b'a').len(), 33);
        assert_eq!(long(b'a')[0], TAG_DIGEST);
        assert_ne!(long(b'a'), long(b'b'), "keys differing in the last byte");
        assert_eq!(long(b'a'), long(b'a'));
        // the longest key kept as it is
        let fits = canonical(&[Value::Bytes(vec![1; KEY_MAX - 5])], &[]);
        assert_eq!(fits.len(), KEY_MAX);
        assert_eq!(fits[0], 3);
        let over = canonical(&[Value::Bytes(vec![1; KEY_MAX - 4])], &[]);
        assert_eq!(over.len(), 33);
    }

    #[test]
    fn lane_hash_is_stable() {
        // pinned: changing it would move keys between lanes mid-run
        assert_eq!(
            lane_hash("t", &encode(&[Value::Int(1)])),
            lane_hash("t", &encode(&[Value::Int(1)]))
        );
        assert_ne!(lane_hash("t", b"x"), lane_hash("u", b"x"));
    }
}
