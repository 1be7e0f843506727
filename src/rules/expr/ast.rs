//! The syntax tree produced by [`parse`](super::parse).
//!
//! Parentheses leave no node behind; `Display` prints the tree fully
//! parenthesized, so `parse(&e.to_string())` gives back the same tree
//! (up to offsets).

use std::fmt;

use super::lexer::Kw;
use super::value::Value;

/// A unary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `NOT x` / `!x`
    Not,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `DIV`
    IntDiv,
    /// `%` / `MOD`
    Mod,
    /// `=`
    Eq,
    /// `<=>` (NULL-safe equality)
    NullSafeEq,
    /// `!=` / `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `AND` / `&&`
    And,
    /// `OR` / `||`
    Or,
    /// `XOR`
    Xor,
}

impl BinaryOp {
    /// The operator as written in canonical form.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::IntDiv => "DIV",
            BinaryOp::Mod => "%",
            BinaryOp::Eq => "=",
            BinaryOp::NullSafeEq => "<=>",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Xor => "XOR",
        }
    }
}

/// An expression tree. Every node records the byte offset in the source
/// where it starts (for a binary node: where its operator is).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number, string, `NULL`, `TRUE` or `FALSE`.
    Literal {
        /// The literal's value.
        value: Value,
        /// Byte offset in the source.
        offset: usize,
    },
    /// A column reference (bare or backquoted identifier).
    Column {
        /// The column name as written (without backquotes).
        name: String,
        /// Byte offset in the source.
        offset: usize,
    },
    /// `[a, b, ...]`: only allowed as the second argument of `range()`.
    List {
        /// The elements.
        items: Vec<Expr>,
        /// Byte offset of `[`.
        offset: usize,
    },
    /// `-x`, `NOT x`, `!x`.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
        /// Byte offset of the operator.
        offset: usize,
    },
    /// `a op b`.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
        /// Byte offset of the operator.
        offset: usize,
    },
    /// `x IS NULL` / `x IS NOT NULL`.
    IsNull {
        /// The tested operand.
        operand: Box<Expr>,
        /// `true` for `IS NOT NULL`.
        negated: bool,
        /// Byte offset of `IS`.
        offset: usize,
    },
    /// A function call `name(args...)`; the name is resolved when binding.
    Call {
        /// The function name as written.
        name: String,
        /// The arguments.
        args: Vec<Expr>,
        /// Byte offset of the name.
        offset: usize,
    },
}

impl Expr {
    /// Byte offset in the source where this node starts (for binary nodes
    /// and `IS NULL`: where the operator is).
    pub fn offset(&self) -> usize {
        match self {
            Expr::Literal { offset, .. }
            | Expr::Column { offset, .. }
            | Expr::List { offset, .. }
            | Expr::Unary { offset, .. }
            | Expr::Binary { offset, .. }
            | Expr::IsNull { offset, .. }
            | Expr::Call { offset, .. } => *offset,
        }
    }

    /// The direct children of this node, in source order.
    pub(crate) fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Literal { .. } | Expr::Column { .. } => Vec::new(),
            Expr::List { items: args, .. } | Expr::Call { args, .. } => args.iter().collect(),
            Expr::Unary { operand, .. } | Expr::IsNull { operand, .. } => vec![operand],
            Expr::Binary { left, right, .. } => vec![left, right],
        }
    }

    /// Every column name referenced, in order of first appearance, without
    /// duplicates (for validation against a schema).
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        // Iterative pre-order walk, so hand-built deep trees cannot overflow
        // the stack here.
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            if let Expr::Column { name, .. } = node {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
            stack.extend(node.children().into_iter().rev());
        }
        out
    }

    /// Height of the tree (a leaf has depth 1).
    pub(crate) fn depth(&self) -> usize {
        1 + self
            .children()
            .into_iter()
            .map(Expr::depth)
            .max()
            .unwrap_or(0)
    }
}

fn write_bytes_literal(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("'")?;
    for chunk in String::from_utf8_lossy(bytes).chars() {
        match chunk {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            '\0' => f.write_str("\\0")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{1a}' => f.write_str("\\Z")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

fn is_bare_ident(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        && !Kw::is_keyword(name)
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal { value, .. } => match value {
                Value::Null => f.write_str("NULL"),
                Value::Int(i) => write!(f, "{i}"),
                Value::UInt(u) => write!(f, "{u}"),
                Value::Decimal(d) => f.write_str(d),
                Value::Double(d) => write!(f, "{d:e}"),
                Value::Bytes(b) => write_bytes_literal(f, b),
            },
            Expr::Column { name, .. } => {
                if is_bare_ident(name) {
                    f.write_str(name)
                } else {
                    write!(f, "`{}`", name.replace('`', "``"))
                }
            }
            Expr::List { items, .. } => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Expr::Unary { op, operand, .. } => match op {
                UnaryOp::Neg => write!(f, "(-{operand})"),
                UnaryOp::Not => write!(f, "(NOT {operand})"),
            },
            Expr::Binary {
                op, left, right, ..
            } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::IsNull {
                operand, negated, ..
            } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "({operand} IS {not}NULL)")
            }
            Expr::Call { name, args, .. } => {
                write!(f, "{name}(")?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
        }
    }
}
