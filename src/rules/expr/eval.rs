//! Evaluation of a [`Bound`] expression on a row, and the [`EvalContext`]
//! hook for functions that need outside data.
//!
//! SQL NULL semantics: arithmetic, comparisons and most functions return
//! NULL when an operand is NULL; `AND`/`OR`/`XOR`/`NOT` use three-valued
//! logic; `IS [NOT] NULL`, `<=>`, `coalesce()` and `if()` look at NULLs
//! themselves. `AND`, `OR`, `if()` and `coalesce()` do not evaluate operands
//! whose value cannot matter.

use std::cmp::Ordering;

use super::ast::{BinaryOp, UnaryOp};
use super::bind::{Bound, Node, PathArg};
use super::error::EvalError;
use super::functions::{self, DatePart, Func};
use super::json;
use super::num::{self, truth, Arith};
use super::value::Value;

/// Hook for functions that need outside data. For now only `lookup`.
pub trait EvalContext {
    /// The value mapped to `key` in lookup table `table`; `Ok(None)` when
    /// the key is absent (the expression then sees NULL). The error text is
    /// reported as `lookup('table'): <text>`.
    fn lookup(&self, table: &str, key: &Value) -> Result<Option<Value>, String>;
}

/// A context with no lookup tables: `lookup()` fails with "lookup tables
/// are not available here".
#[derive(Debug, Clone, Copy, Default)]
pub struct NoContext;

impl EvalContext for NoContext {
    fn lookup(&self, _table: &str, _key: &Value) -> Result<Option<Value>, String> {
        Err("lookup tables are not available here".to_string())
    }
}

impl Bound {
    /// Evaluates the expression on `row` (indexed as bound).
    pub fn eval(&self, row: &[Value], ctx: &dyn EvalContext) -> Result<Value, EvalError> {
        eval_node(&self.root, row, ctx)
    }
}

fn bool_value(b: Option<bool>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => Value::Int(i64::from(b)),
    }
}

fn eval_node(node: &Node, row: &[Value], ctx: &dyn EvalContext) -> Result<Value, EvalError> {
    let eval = |n: &Node| eval_node(n, row, ctx);
    match node {
        Node::Const(value) => Ok(value.clone()),
        Node::Column(index) => row.get(*index).cloned().ok_or(EvalError::MissingColumn {
            index: *index,
            len: row.len(),
        }),
        Node::Unary(UnaryOp::Neg, operand) => num::negate(&eval(operand)?),
        Node::Unary(UnaryOp::Not, operand) => Ok(bool_value(truth(&eval(operand)?).map(|b| !b))),
        Node::IsNull { operand, negated } => {
            Ok(Value::Int(i64::from(eval(operand)?.is_null() != *negated)))
        }
        Node::Binary(op, left, right) => binary(*op, left, right, row, ctx),
        Node::Call(func, args) => call(*func, args, row, ctx),
        Node::Range { value, bounds } => Ok(functions::range(&eval(value)?, bounds)),
        Node::Lookup { table, key } => {
            let key = eval(key)?;
            if key.is_null() {
                return Ok(Value::Null);
            }
            match ctx.lookup(table, &key) {
                Ok(found) => Ok(found.unwrap_or(Value::Null)),
                Err(message) => Err(EvalError::Lookup {
                    table: table.clone(),
                    message,
                }),
            }
        }
        Node::JsonExtract { doc, path } => {
            let doc = eval(doc)?;
            let dynamic;
            let path = match path {
                PathArg::Fixed(path) => path,
                PathArg::Dynamic(node) => {
                    let Some(text) = eval(node)?.to_text().map(std::borrow::Cow::into_owned) else {
                        return Ok(Value::Null);
                    };
                    dynamic =
                        json::parse_path(&text).map_err(|message| EvalError::BadArgument {
                            func: "json_extract",
                            arg: 2,
                            message: format!("is not a valid JSON path: {message}"),
                        })?;
                    &dynamic
                }
            };
            match doc.to_text() {
                Some(text) => json::extract(&text, path),
                None => Ok(Value::Null),
            }
        }
    }
}

fn binary(
    op: BinaryOp,
    left: &Node,
    right: &Node,
    row: &[Value],
    ctx: &dyn EvalContext,
) -> Result<Value, EvalError> {
    let eval = |n: &Node| eval_node(n, row, ctx);
    let cmp = |pred: fn(Ordering) -> bool| -> Result<Value, EvalError> {
        let (a, b) = (eval(left)?, eval(right)?);
        Ok(bool_value(num::compare(&a, &b).map(pred)))
    };
    let arith =
        |op: Arith| -> Result<Value, EvalError> { num::arith(op, &eval(left)?, &eval(right)?) };
    match op {
        BinaryOp::And => {
            let a = truth(&eval(left)?);
            if a == Some(false) {
                return Ok(Value::Int(0));
            }
            Ok(match (a, truth(&eval(right)?)) {
                (_, Some(false)) => Value::Int(0),
                (Some(true), Some(true)) => Value::Int(1),
                _ => Value::Null,
            })
        }
        BinaryOp::Or => {
            let a = truth(&eval(left)?);
            if a == Some(true) {
                return Ok(Value::Int(1));
            }
            Ok(match (a, truth(&eval(right)?)) {
                (_, Some(true)) => Value::Int(1),
                (Some(false), Some(false)) => Value::Int(0),
                _ => Value::Null,
            })
        }
        BinaryOp::Xor => {
            let (a, b) = (truth(&eval(left)?), truth(&eval(right)?));
            Ok(bool_value(a.zip(b).map(|(a, b)| a != b)))
        }
        BinaryOp::Add => arith(Arith::Add),
        BinaryOp::Sub => arith(Arith::Sub),
        BinaryOp::Mul => arith(Arith::Mul),
        BinaryOp::Div => arith(Arith::Div),
        BinaryOp::IntDiv => arith(Arith::IntDiv),
        BinaryOp::Mod => arith(Arith::Mod),
        BinaryOp::Eq => cmp(|o| o == Ordering::Equal),
        BinaryOp::Ne => cmp(|o| o != Ordering::Equal),
        BinaryOp::Lt => cmp(|o| o == Ordering::Less),
        BinaryOp::Le => cmp(|o| o != Ordering::Greater),
        BinaryOp::Gt => cmp(|o| o == Ordering::Greater),
        BinaryOp::Ge => cmp(|o| o != Ordering::Less),
        BinaryOp::NullSafeEq => {
            let (a, b) = (eval(left)?, eval(right)?);
            Ok(Value::Int(i64::from(match (a.is_null(), b.is_null()) {
                (true, true) => true,
                (false, false) => num::compare(&a, &b) == Some(Ordering::Equal),
                _ => false,
            })))
        }
    }
}

fn call(
    func: Func,
    args: &[Node],
    row: &[Value],
    ctx: &dyn EvalContext,
) -> Result<Value, EvalError> {
    const NULL: Value = Value::Null;
    let eval = |n: &Node| eval_node(n, row, ctx);
    // Lazily evaluated functions first.
    match func {
        Func::Coalesce => {
            for arg in args {
                let value = eval(arg)?;
                if !value.is_null() {
                    return Ok(value);
                }
            }
            return Ok(Value::Null);
        }
        Func::If => {
            let (Some(cond), Some(then), Some(otherwise)) =
                (args.first(), args.get(1), args.get(2))
            else {
                return Ok(Value::Null);
            };
            return if truth(&eval(cond)?) == Some(true) {
                eval(then)
            } else {
                eval(otherwise)
            };
        }
        _ => {}
    }
    // up to three arguments on the stack: a shard expression is evaluated
    // for every row change
    let mut inline = [NULL; 3];
    let heap: Vec<Value>;
    let values: &[Value] = match args.len() {
        n if n <= inline.len() => {
            for (slot, arg) in inline.iter_mut().zip(args) {
                *slot = eval(arg)?;
            }
            &inline[..n]
        }
        _ => {
            heap = args.iter().map(eval).collect::<Result<Vec<_>, _>>()?;
            &heap
        }
    };
    let arg = |i: usize| values.get(i).unwrap_or(&NULL);
    match func {
        Func::Crc32 => Ok(functions::crc32(arg(0))),
        Func::Concat => Ok(functions::concat(values)),
        Func::Substr => Ok(functions::substr(arg(0), arg(1), values.get(2))),
        Func::Lower => Ok(functions::lower(arg(0))),
        Func::Upper => Ok(functions::upper(arg(0))),
        Func::Abs => functions::abs(arg(0)),
        Func::Year => functions::date_part("year", arg(0), DatePart::Year),
        Func::Month => functions::date_part("month", arg(0), DatePart::Month),
        Func::Day => functions::date_part("day", arg(0), DatePart::Day),
        Func::Hash64 => Ok(Value::UInt(functions::hash64(values))),
        // Handled above.
        Func::Coalesce | Func::If => Ok(Value::Null),
    }
}
