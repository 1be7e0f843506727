//! Error types of the expression language: parse, bind and evaluation
//! errors.
//!
//! Parse and bind errors carry the byte offset into the source text so the
//! caller can point at the problem ([`line_col`] turns it into a line and a
//! column); their `Display` is just the short message.

use thiserror::Error;

/// A syntax error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct ParseError {
    /// Byte offset into the source string where the problem is.
    pub offset: usize,
    /// What was expected or found, e.g. `expected ')' after function arguments`.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        ParseError {
            offset,
            message: message.into(),
        }
    }

    /// 1-based line and column (in characters) of the error in `src`.
    pub fn line_col(&self, src: &str) -> (usize, usize) {
        line_col(src, self.offset)
    }
}

/// A semantic error found while binding an expression to a table: unknown
/// column, unknown function, wrong number of arguments, bad `range()`
/// bounds, ...
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct BindError {
    /// Byte offset into the source string of the offending column or call.
    pub offset: usize,
    /// What is wrong, naming the column or function.
    pub message: String,
}

impl BindError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        BindError {
            offset,
            message: message.into(),
        }
    }

    /// 1-based line and column (in characters) of the error in `src`.
    pub fn line_col(&self, src: &str) -> (usize, usize) {
        line_col(src, self.offset)
    }
}

/// An error while evaluating a bound expression on a row.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvalError {
    /// `/`, `DIV` or `%` with a zero divisor.
    #[error("division by zero")]
    DivisionByZero,
    /// An integer result outside `i64`/`u64` or a non-finite double.
    #[error("numeric overflow in {op}")]
    Overflow {
        /// The operator or function, e.g. `+` or `abs()`.
        op: &'static str,
    },
    /// A function argument that cannot be used, e.g.
    /// `year(): argument 1 must be a date 'YYYY-MM-DD[ hh:mm:ss[.ffffff]]', got 'soon'`.
    #[error("{func}(): argument {arg} {message}")]
    BadArgument {
        /// The function name.
        func: &'static str,
        /// 1-based argument number.
        arg: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The lookup hook failed (or there are no lookup tables here).
    #[error("lookup('{table}'): {message}")]
    Lookup {
        /// The lookup table name.
        table: String,
        /// The hook's message.
        message: String,
    },
    /// The row is shorter than the column indices the expression was bound to.
    #[error("the row has no column #{index} (it has {len} values)")]
    MissingColumn {
        /// The 0-based column index.
        index: usize,
        /// The row's length.
        len: usize,
    },
}

/// 1-based line and column (counted in characters) of byte `offset` in
/// `src`; offsets past the end or inside a character are clamped.
///
/// ```
/// use reshard::rules::expr::line_col;
/// assert_eq!(line_col("a +\n  #", 6), (2, 3));
/// ```
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(src.len());
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    let before = &src[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
