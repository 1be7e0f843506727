//! Recursive-descent parser with MySQL operator precedence.
//!
//! From loosest to tightest binding:
//!
//! | level | operators                                              |
//! |-------|--------------------------------------------------------|
//! | 1     | `OR`, `\|\|`                                           |
//! | 2     | `XOR`                                                  |
//! | 3     | `AND`, `&&`                                            |
//! | 4     | `NOT` (prefix)                                         |
//! | 5     | `= <=> != <> < <= > >=`, `IS [NOT] NULL`              |
//! | 6     | `+ -`                                                  |
//! | 7     | `* / % DIV MOD`                                        |
//! | 8     | unary `-`, `!` (unary `+` is accepted and ignored)     |
//!
//! All binary operators are left-associative. As in MySQL, `NOT a = b`
//! means `NOT (a = b)`, and `NOT` may not appear as an operand of a
//! tighter operator without parentheses (`1 + NOT x` is an error; write
//! `1 + (NOT x)` or `1 + !x`).
//!
//! The parser never panics and never recurses without bound: trees deeper
//! than [`MAX_DEPTH`] are rejected with "expression nested too deeply".

use super::ast::{BinaryOp, Expr, UnaryOp};
use super::error::ParseError;
use super::lexer::{tokenize, Kw, Tok, Token};
use super::value::Value;

/// The deepest expression tree [`parse`] accepts.
pub const MAX_DEPTH: usize = 64;

/// Parses one expression.
///
/// ```
/// use reshard::rules::expr::parse;
/// let e = parse("crc32(buyer_id) % 4").unwrap();
/// assert_eq!(e.to_string(), "(crc32(buyer_id) % 4)");
/// let err = parse("concat(a, b").unwrap_err();
/// assert_eq!((err.offset, err.message.as_str()), (11, "expected ')' after function arguments"));
/// ```
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(src)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        nesting: 0,
    };
    let expr = parser.expr()?;
    let token = parser.peek();
    if token.tok != Tok::Eof {
        return Err(ParseError::new(
            token.offset,
            format!("unexpected {} after the expression", token.tok.describe()),
        ));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// How many recursive descents (parentheses, calls, prefix operators)
    /// are currently open.
    nesting: usize,
}

const EOF_TOKEN: Token = Token {
    tok: Tok::Eof,
    offset: 0,
};

fn too_deep(offset: usize) -> ParseError {
    ParseError::new(offset, "expression nested too deeply")
}

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `pos` never passes it.
        self.tokens
            .get(self.pos)
            .or_else(|| self.tokens.last())
            .unwrap_or(&EOF_TOKEN)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if &self.peek().tok == tok {
            self.advance();
            true
        } else {
            false
        }
    }

    /// Runs `f` one nesting level deeper, failing before recursing past
    /// [`MAX_DEPTH`].
    fn nested<T>(
        &mut self,
        offset: usize,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.nesting >= MAX_DEPTH {
            return Err(too_deep(offset));
        }
        self.nesting += 1;
        let result = f(self);
        self.nesting -= 1;
        result
    }

    /// Checks the height of a freshly built node.
    fn checked(node: Expr) -> Result<Expr, ParseError> {
        if node.depth() > MAX_DEPTH {
            Err(too_deep(node.offset()))
        } else {
            Ok(node)
        }
    }

    fn binary(op: BinaryOp, left: Expr, right: Expr, offset: usize) -> Result<Expr, ParseError> {
        Self::checked(Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
            offset,
        })
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.or()
    }

    /// Parses a left-associative level: `next (op next)*`.
    fn left_assoc(
        &mut self,
        op_of: fn(&Tok) -> Option<BinaryOp>,
        next: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let mut left = next(self)?;
        while let Some(op) = op_of(&self.peek().tok) {
            let offset = self.advance().offset;
            let right = next(self)?;
            left = Self::binary(op, left, right, offset)?;
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        self.left_assoc(
            |t| matches!(t, Tok::Kw(Kw::Or) | Tok::OrOr).then_some(BinaryOp::Or),
            Self::xor,
        )
    }

    fn xor(&mut self) -> Result<Expr, ParseError> {
        self.left_assoc(
            |t| matches!(t, Tok::Kw(Kw::Xor)).then_some(BinaryOp::Xor),
            Self::and,
        )
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        self.left_assoc(
            |t| matches!(t, Tok::Kw(Kw::And) | Tok::AndAnd).then_some(BinaryOp::And),
            Self::not,
        )
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.peek().tok != Tok::Kw(Kw::Not) {
            return self.comparison();
        }
        let offset = self.advance().offset;
        let operand = self.nested(offset, Self::not)?;
        Self::checked(Expr::Unary {
            op: UnaryOp::Not,
            operand: Box::new(operand),
            offset,
        })
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.additive()?;
        loop {
            let token = self.peek().clone();
            let op = match token.tok {
                Tok::Eq => BinaryOp::Eq,
                Tok::NullSafeEq => BinaryOp::NullSafeEq,
                Tok::Ne => BinaryOp::Ne,
                Tok::Lt => BinaryOp::Lt,
                Tok::Le => BinaryOp::Le,
                Tok::Gt => BinaryOp::Gt,
                Tok::Ge => BinaryOp::Ge,
                Tok::Kw(Kw::Is) => {
                    self.advance();
                    let negated = self.eat(&Tok::Kw(Kw::Not));
                    if !self.eat(&Tok::Kw(Kw::Null)) {
                        return Err(ParseError::new(
                            self.peek().offset,
                            "expected NULL or NOT NULL after IS",
                        ));
                    }
                    left = Self::checked(Expr::IsNull {
                        operand: Box::new(left),
                        negated,
                        offset: token.offset,
                    })?;
                    continue;
                }
                _ => return Ok(left),
            };
            self.advance();
            let right = self.additive()?;
            left = Self::binary(op, left, right, token.offset)?;
        }
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        self.left_assoc(
            |t| match t {
                Tok::Plus => Some(BinaryOp::Add),
                Tok::Minus => Some(BinaryOp::Sub),
                _ => None,
            },
            Self::multiplicative,
        )
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        self.left_assoc(
            |t| match t {
                Tok::Star => Some(BinaryOp::Mul),
                Tok::Slash => Some(BinaryOp::Div),
                Tok::Percent | Tok::Kw(Kw::Mod) => Some(BinaryOp::Mod),
                Tok::Kw(Kw::Div) => Some(BinaryOp::IntDiv),
                _ => None,
            },
            Self::unary,
        )
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        // Unary plus is a no-op; skipping it iteratively needs no nesting.
        while self.peek().tok == Tok::Plus {
            self.advance();
        }
        let op = match self.peek().tok {
            Tok::Minus => UnaryOp::Neg,
            Tok::Bang => UnaryOp::Not,
            _ => return self.primary(),
        };
        let offset = self.advance().offset;
        let operand = self.nested(offset, Self::unary)?;
        Self::checked(Expr::Unary {
            op,
            operand: Box::new(operand),
            offset,
        })
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let token = self.advance();
        let offset = token.offset;
        let literal = |value| Ok(Expr::Literal { value, offset });
        match token.tok {
            Tok::Number(value) => literal(value),
            Tok::Str(bytes) => literal(Value::Bytes(bytes)),
            Tok::Kw(Kw::Null) => literal(Value::Null),
            Tok::Kw(Kw::True) => literal(Value::Int(1)),
            Tok::Kw(Kw::False) => literal(Value::Int(0)),
            Tok::QuotedIdent(name) => Ok(Expr::Column { name, offset }),
            Tok::Ident(name) => {
                if self.peek().tok == Tok::LParen {
                    self.advance();
                    self.nested(offset, |p| p.call(name, offset))
                } else {
                    Ok(Expr::Column { name, offset })
                }
            }
            Tok::LParen => {
                let inner = self.nested(offset, Self::expr)?;
                if !self.eat(&Tok::RParen) {
                    let found = self.peek();
                    return Err(ParseError::new(
                        found.offset,
                        format!("expected ')', found {}", found.tok.describe()),
                    ));
                }
                Ok(inner)
            }
            Tok::LBracket => Err(ParseError::new(
                offset,
                "a list [...] is only allowed as the second argument of range()",
            )),
            Tok::Kw(Kw::Not) => Err(ParseError::new(
                offset,
                "NOT needs parentheses here, e.g. (NOT x)",
            )),
            other => Err(ParseError::new(
                offset,
                format!("expected an expression, found {}", other.describe()),
            )),
        }
    }

    /// Parses the arguments after `name(`.
    fn call(&mut self, name: String, offset: usize) -> Result<Expr, ParseError> {
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                let is_range_bounds = args.len() == 1 && name.eq_ignore_ascii_case("range");
                let arg = if is_range_bounds && self.peek().tok == Tok::LBracket {
                    self.list()?
                } else {
                    self.expr()?
                };
                args.push(arg);
                if self.eat(&Tok::Comma) {
                    continue;
                }
                if self.eat(&Tok::RParen) {
                    break;
                }
                return Err(ParseError::new(
                    self.peek().offset,
                    "expected ')' after function arguments",
                ));
            }
        }
        Self::checked(Expr::Call { name, args, offset })
    }

    /// Parses `[a, b, ...]` (the current token is `[`).
    fn list(&mut self) -> Result<Expr, ParseError> {
        let offset = self.advance().offset;
        let mut items = Vec::new();
        if !self.eat(&Tok::RBracket) {
            loop {
                items.push(self.nested(offset, Self::expr)?);
                if self.eat(&Tok::Comma) {
                    continue;
                }
                if self.eat(&Tok::RBracket) {
                    break;
                }
                return Err(ParseError::new(
                    self.peek().offset,
                    "expected ',' or ']' in list",
                ));
            }
        }
        Self::checked(Expr::List { items, offset })
    }
}
