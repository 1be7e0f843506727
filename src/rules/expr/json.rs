//! `json_extract()` support: a small JSON path dialect and the mapping of
//! JSON values to [`Value`]s.
//!
//! Paths: `$` followed by any number of `.key`, `."quoted key"` (JSON string
//! escapes allowed) and `[n]` steps, with optional whitespace between steps.
//! Wildcards (`*`, `**`) and `last` are not supported. Like MySQL, `[0]`
//! applied to a non-array selects the value itself.

use super::error::EvalError;
use super::value::Value;

/// One path step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// A parsed JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath(Vec<Step>);

/// Parses a path such as `$.a."b c"[2]`; the error says what is wrong.
pub(crate) fn parse_path(path: &[u8]) -> Result<JsonPath, String> {
    let text = std::str::from_utf8(path).map_err(|_| "the path is not valid UTF-8".to_string())?;
    let bytes = text.as_bytes();
    let mut pos = 0;
    let skip_ws = |pos: &mut usize| {
        while bytes.get(*pos).is_some_and(u8::is_ascii_whitespace) {
            *pos += 1;
        }
    };
    skip_ws(&mut pos);
    if bytes.get(pos) != Some(&b'$') {
        return Err("the path must start with '$'".to_string());
    }
    pos += 1;
    let mut steps = Vec::new();
    loop {
        skip_ws(&mut pos);
        match bytes.get(pos) {
            None => return Ok(JsonPath(steps)),
            Some(b'.') => {
                pos += 1;
                skip_ws(&mut pos);
                match bytes.get(pos) {
                    Some(b'"') => {
                        let start = pos;
                        pos += 1;
                        loop {
                            match bytes.get(pos) {
                                None => return Err("unterminated quoted key".to_string()),
                                Some(b'\\') => pos += 2,
                                Some(b'"') => break,
                                Some(_) => pos += 1,
                            }
                        }
                        pos += 1;
                        let quoted = text.get(start..pos).ok_or("invalid quoted key")?;
                        let key: String = serde_json::from_str(quoted)
                            .map_err(|_| format!("invalid quoted key {quoted}"))?;
                        steps.push(Step::Key(key));
                    }
                    Some(b'*') => return Err("wildcards are not supported".to_string()),
                    _ => {
                        let start = pos;
                        while pos < bytes.len()
                            && !matches!(bytes[pos], b'.' | b'[' | b'"' | b'*')
                            && !bytes[pos].is_ascii_whitespace()
                        {
                            pos += 1;
                        }
                        let key = text.get(start..pos).unwrap_or_default();
                        if key.is_empty() {
                            return Err("expected a key name after '.'".to_string());
                        }
                        steps.push(Step::Key(key.to_string()));
                    }
                }
            }
            Some(b'[') => {
                pos += 1;
                skip_ws(&mut pos);
                let start = pos;
                while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
                    pos += 1;
                }
                let digits = text.get(start..pos).unwrap_or_default();
                if digits.is_empty() {
                    let rest = text.get(pos..).unwrap_or_default();
                    return Err(if rest.starts_with('*') || rest.starts_with("last") {
                        "wildcards and 'last' are not supported".to_string()
                    } else {
                        "expected an array index after '['".to_string()
                    });
                }
                let index = digits
                    .parse::<usize>()
                    .map_err(|_| "array index too large".to_string())?;
                skip_ws(&mut pos);
                if bytes.get(pos) != Some(&b']') {
                    return Err("expected ']' after the array index".to_string());
                }
                pos += 1;
                steps.push(Step::Index(index));
            }
            Some(_) => {
                let c = text
                    .get(pos..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or('?');
                return Err(format!("unexpected character '{c}' in the path"));
            }
        }
    }
}

/// Extracts the value at `path` from the JSON text `doc`.
///
/// Strings come back unquoted (like `JSON_UNQUOTE(JSON_EXTRACT(...))`, so
/// the result can be used as a key; MySQL's `JSON_EXTRACT` alone would
/// return the quoted form), integers as `Int`/`UInt`, other numbers as
/// `Double` (MySQL's JSON also stores them as doubles: `1.50` → `1.5`),
/// `true`/`false` as 1/0, JSON `null` or a missing path as NULL, objects
/// and arrays as compact JSON text with keys sorted (`{"a":1,"b":[2,3]}`;
/// MySQL prints `{"a": 1, "b": [2, 3]}`, so hash scalars, not containers).
/// Invalid JSON is an error naming `json_extract()`.
pub(crate) fn extract(doc: &[u8], path: &JsonPath) -> Result<Value, EvalError> {
    let root: serde_json::Value =
        serde_json::from_slice(doc).map_err(|e| EvalError::BadArgument {
            func: "json_extract",
            arg: 1,
            message: format!("is not valid JSON: {e}"),
        })?;
    let mut current = &root;
    for step in &path.0 {
        let next = match (step, current) {
            (Step::Key(key), serde_json::Value::Object(map)) => map.get(key),
            (Step::Index(i), serde_json::Value::Array(items)) => items.get(*i),
            (Step::Index(0), other) => Some(other),
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => return Ok(Value::Null),
        }
    }
    to_value(current)
}

fn to_value(json: &serde_json::Value) -> Result<Value, EvalError> {
    Ok(match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Int(i64::from(*b)),
        serde_json::Value::String(s) => Value::Bytes(s.as_bytes().to_vec()),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => Value::Double(f),
                    _ => {
                        return Err(EvalError::BadArgument {
                            func: "json_extract",
                            arg: 1,
                            message: format!("holds a number out of range: {n}"),
                        })
                    }
                }
            }
        }
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => Value::Bytes(
            serde_json::to_vec(json).map_err(|e| EvalError::BadArgument {
                func: "json_extract",
                arg: 1,
                message: format!("cannot be serialized: {e}"),
            })?,
        ),
    })
}
