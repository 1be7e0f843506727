//! Tokenizer: turns expression source text into tokens with byte offsets.
//!
//! * Numbers: `42` (→ `Int`, or `UInt` above `i64::MAX`; larger is an
//!   error), `1.50` / `.5` / `1.` (→ `Decimal` text, leading zeros
//!   dropped), `1e3` / `2.5E-2` (→ `Double`).
//! * Strings: `'...'` or `"..."`; escapes `\' \" \\ \n \t \r \0 \b \Z`,
//!   a doubled quote (`'it''s'`), `\%` and `\_` keep their backslash, any
//!   other escaped character stands for itself (MySQL rules). The bytes are
//!   the UTF-8 of the source.
//! * Identifiers `[A-Za-z_][A-Za-z0-9_$]*`, or backquoted `` `any name` ``
//!   (a doubled backquote inside stands for one).
//! * Keywords (case-insensitive): `AND OR XOR NOT NULL TRUE FALSE DIV MOD IS`.

use super::error::ParseError;
use super::value::Value;

/// A keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kw {
    And,
    Or,
    Xor,
    Not,
    Null,
    True,
    False,
    Div,
    Mod,
    Is,
}

impl Kw {
    fn from_ident(ident: &str) -> Option<Kw> {
        const KEYWORDS: [(&str, Kw); 10] = [
            ("and", Kw::And),
            ("or", Kw::Or),
            ("xor", Kw::Xor),
            ("not", Kw::Not),
            ("null", Kw::Null),
            ("true", Kw::True),
            ("false", Kw::False),
            ("div", Kw::Div),
            ("mod", Kw::Mod),
            ("is", Kw::Is),
        ];
        KEYWORDS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(ident))
            .map(|(_, kw)| *kw)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kw::And => "AND",
            Kw::Or => "OR",
            Kw::Xor => "XOR",
            Kw::Not => "NOT",
            Kw::Null => "NULL",
            Kw::True => "TRUE",
            Kw::False => "FALSE",
            Kw::Div => "DIV",
            Kw::Mod => "MOD",
            Kw::Is => "IS",
        }
    }

    /// Whether `ident` is a keyword (and so must be backquoted as a column).
    pub fn is_keyword(ident: &str) -> bool {
        Kw::from_ident(ident).is_some()
    }
}

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Number(Value),
    Str(Vec<u8>),
    Ident(String),
    QuotedIdent(String),
    Kw(Kw),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Eq,
    NullSafeEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Eof,
}

impl Tok {
    /// How the token is named in error messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Number(_) => "a number".to_string(),
            Tok::Str(_) => "a string".to_string(),
            Tok::Ident(name) => format!("identifier '{name}'"),
            Tok::QuotedIdent(name) => format!("identifier `{name}`"),
            Tok::Kw(kw) => format!("keyword {}", kw.name()),
            Tok::Eof => "end of input".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Eq => "=",
            Tok::NullSafeEq => "<=>",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Bang => "!",
            _ => "?",
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub offset: usize,
}

/// Splits `src` into tokens; the last one is always `Eof` at `src.len()`.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer {
        src,
        bytes: src.as_bytes(),
        pos: 0,
    };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.tok == Tok::Eof;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

impl Lexer<'_> {
    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn char_at(&self, offset: usize) -> String {
        match self.src.get(offset..).and_then(|s| s.chars().next()) {
            Some(c) if c.is_control() => c.escape_default().to_string(),
            Some(c) => c.to_string(),
            None => String::new(),
        }
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.peek_at(0).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(b) = self.peek_at(0) else {
            return Ok(Token {
                tok: Tok::Eof,
                offset: start,
            });
        };
        let two = |second: u8| self.peek_at(1) == Some(second);
        let (tok, len) = match b {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'%' => (Tok::Percent, 1),
            b'=' => (Tok::Eq, 1),
            b'<' if two(b'=') && self.peek_at(2) == Some(b'>') => (Tok::NullSafeEq, 3),
            b'<' if two(b'=') => (Tok::Le, 2),
            b'<' if two(b'>') => (Tok::Ne, 2),
            b'<' => (Tok::Lt, 1),
            b'>' if two(b'=') => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'!' if two(b'=') => (Tok::Ne, 2),
            b'!' => (Tok::Bang, 1),
            b'&' if two(b'&') => (Tok::AndAnd, 2),
            b'|' if two(b'|') => (Tok::OrOr, 2),
            b'\'' | b'"' => return self.string(b),
            b'`' => return self.quoted_ident(),
            b'0'..=b'9' => return self.number(),
            b'.' if self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) => return self.number(),
            _ if is_ident_start(b) => return Ok(self.ident()),
            b'&' | b'|' => {
                let c = b as char;
                return Err(ParseError::new(
                    start,
                    format!("unexpected character '{c}' (did you mean '{c}{c}'?)"),
                ));
            }
            _ => {
                return Err(ParseError::new(
                    start,
                    format!("unexpected character '{}'", self.char_at(start)),
                ))
            }
        };
        self.pos += len;
        Ok(Token { tok, offset: start })
    }

    fn ident(&mut self) -> Token {
        let start = self.pos;
        while self.peek_at(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        let tok = match Kw::from_ident(text) {
            Some(kw) => Tok::Kw(kw),
            None => Tok::Ident(text.to_string()),
        };
        Token { tok, offset: start }
    }

    fn quoted_ident(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut name = Vec::new();
        loop {
            match self.peek_at(0) {
                None => {
                    return Err(ParseError::new(start, "unterminated quoted identifier"));
                }
                Some(b'`') if self.peek_at(1) == Some(b'`') => {
                    name.push(b'`');
                    self.pos += 2;
                }
                Some(b'`') => {
                    self.pos += 1;
                    break;
                }
                Some(b) => {
                    name.push(b);
                    self.pos += 1;
                }
            }
        }
        if name.is_empty() {
            return Err(ParseError::new(start, "empty quoted identifier"));
        }
        // The bytes were cut at ASCII backquotes out of a `&str`, so they are
        // valid UTF-8; stay defensive anyway.
        let name = String::from_utf8(name)
            .map_err(|_| ParseError::new(start, "quoted identifier is not valid UTF-8"))?;
        Ok(Token {
            tok: Tok::QuotedIdent(name),
            offset: start,
        })
    }

    fn string(&mut self, quote: u8) -> Result<Token, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek_at(0) else {
                return Err(ParseError::new(start, "unterminated string"));
            };
            self.pos += 1;
            if b == quote {
                if self.peek_at(0) == Some(quote) {
                    out.push(quote);
                    self.pos += 1;
                    continue;
                }
                break;
            }
            if b != b'\\' {
                out.push(b);
                continue;
            }
            let Some(escaped) = self.peek_at(0) else {
                return Err(ParseError::new(start, "unterminated string"));
            };
            self.pos += 1;
            match escaped {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                b'b' => out.push(0x08),
                b'Z' => out.push(0x1a),
                b'%' | b'_' => out.extend_from_slice(&[b'\\', escaped]),
                other => out.push(other),
            }
        }
        Ok(Token {
            tok: Tok::Str(out),
            offset: start,
        })
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        self.digits();
        let int_end = self.pos;
        let mut frac = None;
        if self.peek_at(0) == Some(b'.') {
            self.pos += 1;
            let frac_start = self.pos;
            self.digits();
            frac = Some(&self.src[frac_start..self.pos]);
        }
        let mut is_double = false;
        if matches!(self.peek_at(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.peek_at(1), Some(b'+' | b'-')));
            if self.peek_at(1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1 + sign;
                self.digits();
                is_double = true;
            }
        }
        if let Some(b) = self.peek_at(0) {
            if is_ident_char(b) || b == b'.' {
                return Err(ParseError::new(
                    self.pos,
                    format!("unexpected character '{}' in number", b as char),
                ));
            }
        }
        let text = &self.src[start..self.pos];
        let value = if is_double {
            match text.parse::<f64>() {
                Ok(d) if d.is_finite() => Value::Double(d),
                _ => return Err(ParseError::new(start, "number literal out of range")),
            }
        } else if let Some(frac) = frac {
            let int_part = self.src[start..int_end].trim_start_matches('0');
            let int_part = if int_part.is_empty() { "0" } else { int_part };
            if frac.is_empty() {
                Value::Decimal(int_part.to_string())
            } else {
                Value::Decimal(format!("{int_part}.{frac}"))
            }
        } else {
            match text.parse::<u64>() {
                Ok(u) => match i64::try_from(u) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::UInt(u),
                },
                Err(_) => return Err(ParseError::new(start, "integer literal out of range")),
            }
        };
        Ok(Token {
            tok: Tok::Number(value),
            offset: start,
        })
    }
}
