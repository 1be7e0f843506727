//! SQL literals for the loader's text forms (the `forms` row): the value
//! a bound parameter would carry, written into the statement. A quoted
//! string when its bytes hold no quote, backslash or zero byte, else
//! `_binary X'…'`: both are binary strings in a `SET NAMES binary`
//! session, like a bound string parameter, and neither depends on
//! `NO_BACKSLASH_ESCAPES`. Integers in decimal, floating point in
//! exponent form (an approximate-value literal, parsed exactly from the
//! shortest round-trip digits), dates and times as strings.

use mysql_async::Value;

/// Appends `v` to a text statement as a literal the server reads as the
/// value a bound parameter would carry (see the module docs).
pub fn push_literal(out: &mut Vec<u8>, v: &Value) {
    use std::io::Write;
    // writing to a Vec cannot fail
    let _ = match v {
        Value::NULL => write!(out, "NULL"),
        Value::Int(x) => write!(out, "{x}"),
        Value::UInt(x) => write!(out, "{x}"),
        Value::Float(x) => write!(out, "{:e}", f64::from(*x)),
        Value::Double(x) => write!(out, "{x:e}"),
        // the shapes of mysql_common's `Value::as_sql`
        Value::Date(y, m, d, 0, 0, 0, 0) => write!(out, "'{y:04}-{m:02}-{d:02}'"),
        Value::Date(y, m, d, h, i, s, 0) => {
            write!(out, "'{y:04}-{m:02}-{d:02} {h:02}:{i:02}:{s:02}'")
        }
        Value::Date(y, m, d, h, i, s, us) => {
            write!(out, "'{y:04}-{m:02}-{d:02} {h:02}:{i:02}:{s:02}.{us:06}'")
        }
        Value::Time(neg, d, h, i, s, us) => {
            let sign = if *neg { "-" } else { "" };
            let hours = u64::from(*d) * 24 + u64::from(*h);
            match us {
                0 => write!(out, "'{sign}{hours:03}:{i:02}:{s:02}'"),
                us => write!(out, "'{sign}{hours:03}:{i:02}:{s:02}.{us:06}'"),
            }
        }
        Value::Bytes(b) => {
            push_bytes(out, b);
            Ok(())
        }
    };
}

/// A binary string literal: quoted when plain, else hexadecimal.
fn push_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if b.iter().any(|c| matches!(c, b'\'' | b'\\' | 0)) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.extend_from_slice(b"_binary X'");
        for c in b {
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 15)]);
        }
        out.push(b'\'');
    } else {
        out.push(b'\'');
        out.extend_from_slice(b);
        out.push(b'\'');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_binary_strings_or_exact_numbers() {
        let lit = |v: Value| {
            let mut out = Vec::new();
            push_literal(&mut out, &v);
            String::from_utf8_lossy(&out).into_owned()
        };
        assert_eq!(lit(Value::NULL), "NULL");
        assert_eq!(lit(Value::Int(-5)), "-5");
        assert_eq!(lit(Value::UInt(u64::MAX)), "18446744073709551615");
        assert_eq!(lit(Value::Double(0.1)), "1e-1");
        // a FLOAT's exact value, so that the column stores the same float
        assert_eq!(lit(Value::Float(0.1)), format!("{:e}", f64::from(0.1f32)));
        assert_eq!(lit(Value::Bytes(b"caf\xc3\xa9".to_vec())), "'caf\u{e9}'");
        assert_eq!(lit(Value::Bytes(b"it's".to_vec())), "_binary X'69742773'");
        assert_eq!(lit(Value::Bytes(b"a\\b".to_vec())), "_binary X'615C62'");
        assert_eq!(lit(Value::Bytes(vec![0, 255])), "_binary X'00FF'");
        assert_eq!(lit(Value::Date(2024, 2, 29, 0, 0, 0, 0)), "'2024-02-29'");
        assert_eq!(
            lit(Value::Date(2024, 2, 29, 1, 2, 3, 4)),
            "'2024-02-29 01:02:03.000004'"
        );
        assert_eq!(lit(Value::Time(true, 1, 2, 3, 4, 0)), "'-026:03:04'");
        assert_eq!(lit(Value::Time(false, 0, 0, 0, 1, 5)), "'000:00:01.000005'");
    }
}
