//! The shard-rule expression language (README, "Expression language"):
//! parsing, binding to a table's columns, and evaluation on decoded rows.
//! Pure code, no I/O.
//!
//! ```
//! use reshard::rules::expr::{parse, NoContext, Value};
//! let expr = parse("if(status = 'vip', 0, 1 + crc32(buyer_id) % 3)").unwrap();
//! assert_eq!(expr.columns(), ["status", "buyer_id"]);
//! let bound = expr
//!     .bind(&|name| ["status", "buyer_id"].iter().position(|c| *c == name))
//!     .unwrap();
//! let row = [Value::Bytes(b"vip".to_vec()), Value::Int(7)];
//! assert_eq!(bound.eval(&row, &NoContext).unwrap(), Value::Int(0));
//! ```
//!
//! # Syntax
//!
//! * Literals: integers (`42`; `Int`, or `UInt` above `i64::MAX`, larger is
//!   an error), decimals (`1.50` → `Decimal("1.50")`), doubles (`1e3`),
//!   strings in single or double quotes with backslash escapes
//!   (`\' \" \\ \n \t \r \0 \b \Z`), `NULL`, `TRUE` (1), `FALSE` (0).
//! * Column references: `[A-Za-z_][A-Za-z0-9_$]*` or `` `backquoted` ``.
//! * Operators, loosest first: `OR ||` · `XOR` · `AND &&` · `NOT` ·
//!   `= <=> != <> < <= > >= IS [NOT] NULL` · `+ -` · `* / % DIV MOD` ·
//!   unary `- !`. Keywords and function names are case-insensitive.
//! * Function calls `name(args)`; a list `[a, b]` only as the second
//!   argument of `range()`.
//!
//! Syntax errors carry the byte offset of the problem
//! ([`ParseError::line_col`] gives line and column). Trees deeper than
//! [`MAX_DEPTH`] are rejected, so no input can exhaust the stack.
//!
//! # Semantics
//!
//! * NULL propagates through arithmetic, comparisons and functions;
//!   `AND`/`OR`/`XOR`/`NOT` are three-valued.
//! * Arithmetic (see `num.rs`): integers are exact (computed in `i128`; a
//!   result outside `i64`/`u64` is an overflow error), decimals are exact
//!   while they fit 38 digits (else they fall back to doubles), doubles must
//!   stay finite. `/` on integers/decimals gives a `Decimal` with 4 more
//!   digits like MySQL (`7 / 2` → `3.5000`); `DIV` is integer division; `%`
//!   / `MOD` keep the dividend's sign. Division or modulo by zero is an
//!   error (not NULL). Strings used as numbers become doubles like in MySQL:
//!   the leading numeric prefix (`'12abc'` → 12), or 0.
//! * Comparisons: two strings compare bytewise (not by collation: `'a' <>
//!   'A'` here, unlike most MySQL collations); everything else compares
//!   numerically (a string against a number is converted to a number).
//! * Truthiness: NULL is unknown, numbers are true when nonzero, strings are
//!   converted to numbers first.
//!
//! # Functions
//!
//! | function | result |
//! |---|---|
//! | `crc32(x)` | `UInt`, MySQL `CRC32()` of `x`'s text |
//! | `concat(a, ...)` | bytes of the texts joined; NULL if any is NULL |
//! | `substr(s, pos[, len])` | MySQL `SUBSTRING()` on bytes (alias `substring`) |
//! | `lower(s)`, `upper(s)` | ASCII-only case mapping |
//! | `coalesce(a, ...)` | the first non-NULL argument |
//! | `if(c, a, b)` | `a` if `c` is true, else `b` |
//! | `abs(x)` | absolute value (`abs(i64::MIN)` overflows) |
//! | `json_extract(doc, path)` | the scalar at `path`, unquoted (like `JSON_UNQUOTE(JSON_EXTRACT())`) |
//! | `year(d)`, `month(d)`, `day(d)` | parts of `YYYY-MM-DD[ hh:mm:ss[.f]]` text |
//! | `range(x, [b1, ..., bn])` | number of bounds `<= x` (0..=n) |
//! | `hash64(a, ...)` | `UInt`, FNV-1a 64 of a tagged encoding, see [`hash64`] |
//! | `lookup('table', key)` | the value the [`EvalContext`] maps `key` to, or NULL |
//!
//! Each function's doc comment in `functions.rs` has examples.

mod ast;
mod bind;
mod error;
mod eval;
mod functions;
mod json;
mod lexer;
mod num;
mod parser;
mod value;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use ast::{BinaryOp, Expr, UnaryOp};
pub use bind::Bound;
pub use error::{line_col, BindError, EvalError, ParseError};
pub use eval::{EvalContext, NoContext};
pub use functions::hash64;
pub use parser::{parse, MAX_DEPTH};
pub use value::Value;
