//! Binding: turns an [`Expr`] into a [`Bound`] expression by resolving
//! column names to row indices and function names to implementations.
//!
//! Everything that can be checked without a row is checked here: unknown
//! columns and functions, argument counts, `range()` bounds (numeric
//! literals, strictly ascending), the `lookup()` table name (a string
//! literal) and a literal `json_extract()` path.

use super::ast::{Expr, UnaryOp};
use super::error::BindError;
use super::functions::{self, Kind};
use super::json::{self, JsonPath};
use super::num::{self, Num};
use super::parser::MAX_DEPTH;
use super::value::Value;

/// A compiled expression: column references are indices into the row slice.
///
/// ```
/// use reshard::rules::expr::{parse, NoContext, Value};
/// let bound = parse("crc32(buyer_id) % 4")
///     .unwrap()
///     .bind(&|name| (name == "buyer_id").then_some(0))
///     .unwrap();
/// let shard = bound.eval(&[Value::Int(123)], &NoContext).unwrap();
/// assert_eq!(shard, Value::Int(2286445522 % 4));
/// ```
#[derive(Debug, Clone)]
pub struct Bound {
    pub(crate) root: Node,
}

/// A bound expression node.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Const(Value),
    Column(usize),
    Unary(UnaryOp, Box<Node>),
    Binary(super::ast::BinaryOp, Box<Node>, Box<Node>),
    IsNull { operand: Box<Node>, negated: bool },
    Call(functions::Func, Vec<Node>),
    Range { value: Box<Node>, bounds: Vec<Num> },
    Lookup { table: String, key: Box<Node> },
    JsonExtract { doc: Box<Node>, path: PathArg },
}

/// The path argument of `json_extract()`.
#[derive(Debug, Clone)]
pub(crate) enum PathArg {
    /// A literal path, parsed when binding.
    Fixed(JsonPath),
    /// Any other expression, parsed on every evaluation.
    Dynamic(Box<Node>),
}

impl Expr {
    /// Resolves column names to indices with `resolve`. An unknown column is
    /// a [`BindError`] naming the column; an unknown function or a wrong
    /// number of arguments is a [`BindError`] naming the function.
    pub fn bind(&self, resolve: &dyn Fn(&str) -> Option<usize>) -> Result<Bound, BindError> {
        Ok(Bound {
            root: bind_node(self, resolve, 1)?,
        })
    }
}

fn boxed(
    expr: &Expr,
    resolve: &dyn Fn(&str) -> Option<usize>,
    depth: usize,
) -> Result<Box<Node>, BindError> {
    bind_node(expr, resolve, depth).map(Box::new)
}

fn bind_node(
    expr: &Expr,
    resolve: &dyn Fn(&str) -> Option<usize>,
    depth: usize,
) -> Result<Node, BindError> {
    // `parse` never builds deeper trees; this guards hand-built ones.
    if depth > MAX_DEPTH {
        return Err(BindError::new(
            expr.offset(),
            "expression nested too deeply",
        ));
    }
    let next = depth + 1;
    Ok(match expr {
        Expr::Literal { value, .. } => Node::Const(value.clone()),
        Expr::Column { name, offset } => match resolve(name) {
            Some(index) => Node::Column(index),
            None => return Err(BindError::new(*offset, format!("unknown column '{name}'"))),
        },
        Expr::List { offset, .. } => {
            return Err(BindError::new(
                *offset,
                "a list [...] is only allowed as the second argument of range()",
            ))
        }
        Expr::Unary { op, operand, .. } => Node::Unary(*op, boxed(operand, resolve, next)?),
        Expr::Binary {
            op, left, right, ..
        } => Node::Binary(
            *op,
            boxed(left, resolve, next)?,
            boxed(right, resolve, next)?,
        ),
        Expr::IsNull {
            operand, negated, ..
        } => Node::IsNull {
            operand: boxed(operand, resolve, next)?,
            negated: *negated,
        },
        Expr::Call { name, args, offset } => {
            let Some(spec) = functions::find(name) else {
                return Err(BindError::new(
                    *offset,
                    format!("unknown function '{name}'"),
                ));
            };
            if let Some(message) = spec.arity_error(args.len()) {
                return Err(BindError::new(*offset, message));
            }
            let bind_arg = |i: usize| match args.get(i) {
                Some(arg) => boxed(arg, resolve, next),
                None => Err(BindError::new(
                    *offset,
                    format!("{}(): missing argument {}", spec.name, i + 1),
                )),
            };
            match spec.kind {
                Kind::Plain(func) => {
                    let bound = args
                        .iter()
                        .map(|arg| bind_node(arg, resolve, next))
                        .collect::<Result<Vec<_>, _>>()?;
                    Node::Call(func, bound)
                }
                Kind::Range => Node::Range {
                    value: bind_arg(0)?,
                    bounds: range_bounds(args.get(1), *offset)?,
                },
                Kind::Lookup => Node::Lookup {
                    table: lookup_table(args.first(), *offset)?,
                    key: bind_arg(1)?,
                },
                Kind::JsonExtract => Node::JsonExtract {
                    doc: bind_arg(0)?,
                    path: match args.get(1) {
                        Some(Expr::Literal {
                            value: Value::Bytes(path),
                            offset,
                        }) => PathArg::Fixed(json::parse_path(path).map_err(|message| {
                            BindError::new(
                                *offset,
                                format!("json_extract(): invalid JSON path: {message}"),
                            )
                        })?),
                        _ => PathArg::Dynamic(bind_arg(1)?),
                    },
                },
            }
        }
    })
}

/// A short description of a non-literal expression for messages.
fn describe(expr: &Expr) -> &'static str {
    match expr {
        Expr::Literal { value, .. } => value.type_name(),
        Expr::Column { .. } => "a column",
        Expr::Call { .. } => "a function call",
        Expr::List { .. } => "a list",
        _ => "an expression",
    }
}

/// The value of a numeric constant (`12`, `-1.5`, `2e3`).
fn const_number(expr: &Expr) -> Option<Num> {
    match expr {
        Expr::Literal {
            value: value @ (Value::Int(_) | Value::UInt(_) | Value::Decimal(_) | Value::Double(_)),
            ..
        } => Num::from_value(value),
        Expr::Unary {
            op: UnaryOp::Neg,
            operand,
            ..
        } => match operand.as_ref() {
            Expr::Literal { value, .. } if !matches!(value, Value::Bytes(_) | Value::Null) => {
                num::negate(value).ok().as_ref().and_then(Num::from_value)
            }
            _ => None,
        },
        _ => None,
    }
}

fn range_bounds(arg: Option<&Expr>, call_offset: usize) -> Result<Vec<Num>, BindError> {
    let items = match arg {
        Some(Expr::List { items, .. }) => items,
        Some(other) => {
            return Err(BindError::new(
                other.offset(),
                format!(
                    "range(): argument 2 must be a list of numbers like [10, 20], got {}",
                    describe(other)
                ),
            ))
        }
        None => return Err(BindError::new(call_offset, "range(): missing argument 2")),
    };
    if items.is_empty() {
        let offset = arg.map_or(call_offset, Expr::offset);
        return Err(BindError::new(
            offset,
            "range(): argument 2 must be a non-empty list of numbers",
        ));
    }
    let mut bounds: Vec<Num> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(bound) = const_number(item) else {
            return Err(BindError::new(
                item.offset(),
                format!(
                    "range(): argument 2 must be a list of numbers, got {}",
                    describe(item)
                ),
            ));
        };
        if let (Some(prev), Some(prev_expr)) =
            (bounds.last(), i.checked_sub(1).and_then(|j| items.get(j)))
        {
            if prev.compare(bound) != Some(std::cmp::Ordering::Less) {
                return Err(BindError::new(
                    item.offset(),
                    format!(
                        "range(): bounds must be in strictly ascending order, but {item} follows {prev_expr}"
                    ),
                ));
            }
        }
        bounds.push(bound);
    }
    Ok(bounds)
}

fn lookup_table(arg: Option<&Expr>, call_offset: usize) -> Result<String, BindError> {
    match arg {
        Some(Expr::Literal {
            value: Value::Bytes(name),
            offset,
        }) => String::from_utf8(name.clone())
            .map_err(|_| BindError::new(*offset, "lookup(): the table name is not valid UTF-8")),
        Some(other) => Err(BindError::new(
            other.offset(),
            format!(
                "lookup(): argument 1 must be a string literal naming the lookup table, got {}",
                describe(other)
            ),
        )),
        None => Err(BindError::new(call_offset, "lookup(): missing argument 1")),
    }
}
