//! Property tests: the parser, binder and evaluator never panic on any
//! input, printing and re-parsing is stable, and arithmetic agrees with
//! `i128` reference computations.

use proptest::prelude::*;

use super::ast::{BinaryOp, Expr, UnaryOp};
use super::value::format_double;
use super::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(if std::env::var("CI").as_deref() == Ok("true") {
        256
    } else {
        2048
    })
}

/// Width of the arbitrary rows; the test resolver maps every name into it.
const ROW_LEN: usize = 6;

fn any_name(name: &str) -> Option<usize> {
    Some(name.len() % ROW_LEN)
}

/// A lookup context that answers some keys, misses others and fails for
/// one table.
struct SomeContext;

impl EvalContext for SomeContext {
    fn lookup(&self, table: &str, key: &Value) -> Result<Option<Value>, String> {
        match (table, key) {
            ("fail", _) => Err("failing on purpose".to_string()),
            (_, Value::Int(i)) if i % 2 == 0 => Ok(Some(Value::Int(i / 2))),
            (_, Value::Bytes(b)) => Ok(Some(Value::Bytes(b.clone()))),
            _ => Ok(None),
        }
    }
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)].prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        "-?[0-9]{1,45}(\\.[0-9]{0,12})?".prop_map(Value::Decimal),
        any::<String>().prop_map(Value::Decimal),
        any::<f64>().prop_map(Value::Double),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,7})?)?"
            .prop_map(|s| Value::Bytes(s.into_bytes())),
        r#"\{"[a-c]": ?(-?[0-9]{1,25}(\.[0-9]+)?(e[0-9]{1,3})?|"[a-z]*"|\[[0-9, ]*\]|true|null|\{\})\}"#
            .prop_map(|s| Value::Bytes(s.into_bytes())),
    ]
}

fn row() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(value(), ROW_LEN)
}

/// Parses, binds and evaluates; only panics would fail the test.
fn run(src: &str, row: &[Value]) {
    if let Ok(expr) = parse(src) {
        let _ = expr.columns();
        let _ = expr.to_string();
        if let Ok(bound) = expr.bind(&any_name) {
            let _ = bound.eval(row, &SomeContext);
            let _ = bound.eval(row, &NoContext);
            // A short row must give MissingColumn, not a panic.
            let _ = bound.eval(&row[..1], &NoContext);
        }
    }
}

const TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    ",",
    "+",
    "-",
    "*",
    "/",
    "%",
    "=",
    "<=>",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "!",
    "AND",
    "or",
    "xor",
    "NOT",
    "NULL",
    "true",
    "FALSE",
    "DIV",
    "mod",
    "IS",
    "0",
    "1",
    "2",
    "7",
    "0.0",
    "1.5",
    "-12.50",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "1e308",
    "2.5e-3",
    "'abc'",
    "'12abc'",
    "''",
    "'2024-02-29'",
    "'2024-02-29 10:11:12.5'",
    r#"'{"a":[1,{"b":"c"}]}'"#,
    "'$.a[1].b'",
    "'$'",
    "'$[0]'",
    "'t'",
    "'fail'",
    "a",
    "b",
    "cc",
    "ddd",
    "`x y`",
    "crc32(",
    "concat(",
    "substr(",
    "substring(",
    "lower(",
    "upper(",
    "coalesce(",
    "if(",
    "abs(",
    "json_extract(",
    "year(",
    "month(",
    "day(",
    "range(",
    "hash64(",
    "lookup(",
    "nope(",
    "crc32",
    "range",
    "lookup",
];

fn token_soup() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(TOKENS), 0..40),
        any::<bool>(),
    )
        .prop_map(|(tokens, spaced)| tokens.join(if spaced { " " } else { "" }))
}

/// Well-formed calls with plausible arguments, to reach deep into the
/// functions rather than stop at syntax errors.
fn call_soup() -> impl Strategy<Value = String> {
    let arg = prop::sample::select(vec![
        "a", "b", "cc", "NULL", "0", "-1", "3", "1.5", "-0.5", "1e300", "'x'", "'$.a'", "'$[0]'",
        "'7abc'", "u",
    ]);
    let func = prop::sample::select(vec![
        "crc32",
        "concat",
        "substr",
        "lower",
        "upper",
        "coalesce",
        "if",
        "abs",
        "json_extract",
        "year",
        "month",
        "day",
        "hash64",
        "lookup",
    ]);
    (func, prop::collection::vec(arg, 1..4)).prop_map(|(f, args)| {
        let args = if f == "lookup" {
            let mut a = vec!["'t'"];
            a.extend(args.iter().take(1));
            a
        } else {
            args
        };
        format!("{f}({})", args.join(", "))
    })
}

fn leaf() -> impl Strategy<Value = Expr> {
    let value = prop_oneof![
        Just(Value::Null),
        (0..=i64::MAX).prop_map(Value::Int),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Value::UInt),
        "(0|[1-9][0-9]{0,8})\\.[0-9]{1,4}".prop_map(Value::Decimal),
        (1e-300..1e300f64).prop_map(Value::Double),
        any::<String>().prop_map(|s| Value::Bytes(s.into_bytes())),
    ];
    prop_oneof![
        value.prop_map(|value| Expr::Literal { value, offset: 0 }),
        prop_oneof!["[A-Za-z_][A-Za-z0-9_$]{0,6}", "[^`]{0,3}`?[^`]{1,3}"]
            .prop_map(|name| Expr::Column { name, offset: 0 }),
    ]
}

const BINARY_OPS: &[BinaryOp] = &[
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::IntDiv,
    BinaryOp::Mod,
    BinaryOp::Eq,
    BinaryOp::NullSafeEq,
    BinaryOp::Ne,
    BinaryOp::Lt,
    BinaryOp::Le,
    BinaryOp::Gt,
    BinaryOp::Ge,
    BinaryOp::And,
    BinaryOp::Or,
    BinaryOp::Xor,
];

fn tree() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec![UnaryOp::Neg, UnaryOp::Not]),
                inner.clone()
            )
                .prop_map(|(op, e)| Expr::Unary {
                    op,
                    operand: Box::new(e),
                    offset: 0
                }),
            (
                prop::sample::select(BINARY_OPS),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, l, r)| Expr::Binary {
                    op,
                    left: Box::new(l),
                    right: Box::new(r),
                    offset: 0
                }),
            (any::<bool>(), inner.clone()).prop_map(|(negated, e)| Expr::IsNull {
                operand: Box::new(e),
                negated,
                offset: 0
            }),
            (
                "[a-z_][a-z0-9_]{0,6}".prop_filter("keyword", |n| !matches!(
                    n.as_str(),
                    "and"
                        | "or"
                        | "xor"
                        | "not"
                        | "null"
                        | "true"
                        | "false"
                        | "div"
                        | "mod"
                        | "is"
                        | "range"
                )),
                prop::collection::vec(inner, 0..4)
            )
                .prop_map(|(name, args)| Expr::Call {
                    name,
                    args,
                    offset: 0
                }),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_strings_never_panic(src in any::<String>(), row in row()) {
        run(&src, &row);
    }

    #[test]
    fn expression_alphabet_never_panics(
        src in "[a-z0-9_ ()\\[\\],'\"`+*/%<>=!&|.$-]{0,60}",
        row in row(),
    ) {
        run(&src, &row);
    }

    #[test]
    fn token_sequences_never_panic(src in token_soup(), row in row()) {
        run(&src, &row);
    }

    #[test]
    fn calls_never_panic(
        call in call_soup(),
        op in prop::sample::select(vec!["+", "-", "*", "/", "%", "DIV", "=", "<", "AND", "XOR"]),
        other in call_soup(),
        row in row(),
    ) {
        run(&call, &row);
        run(&format!("{call} {op} {other}"), &row);
        run(&format!("range({call}, [-1, 0, 2.5, 1e10])"), &row);
        run(&format!("json_extract({call}, {other})"), &row);
    }

    #[test]
    fn display_then_parse_is_stable(expr in tree()) {
        let printed = expr.to_string();
        let reparsed = parse(&printed);
        prop_assert!(reparsed.is_ok(), "{printed}: {:?}", reparsed);
        if let Ok(reparsed) = reparsed {
            prop_assert_eq!(reparsed.to_string(), printed);
        }
    }

    #[test]
    fn integer_arithmetic_matches_i128(
        a in prop_oneof![any::<i64>().prop_map(Value::Int), any::<u64>().prop_map(Value::UInt)],
        b in prop_oneof![any::<i64>().prop_map(Value::Int), any::<u64>().prop_map(Value::UInt)],
        op in prop::sample::select(vec!["+", "-", "*", "DIV", "%"]),
    ) {
        let int = |v: &Value| v.as_integer().unwrap_or_default();
        let (x, y) = (int(&a), int(&b));
        let want = match op {
            "+" => x.checked_add(y),
            "-" => x.checked_sub(y),
            "*" => x.checked_mul(y),
            "DIV" => x.checked_div(y),
            _ => x.checked_rem(y),
        };
        let bound = parse(&format!("a {op} b"))
            .ok()
            .and_then(|e| e.bind(&|n| Some(usize::from(n == "b"))).ok());
        prop_assert!(bound.is_some());
        if let Some(bound) = bound {
            let got = bound.eval(&[a, b], &NoContext);
            match want.filter(|w| *w >= i128::from(i64::MIN) && *w <= i128::from(u64::MAX)) {
                Some(w) => prop_assert_eq!(got.ok().and_then(|v| v.as_integer()), Some(w)),
                None => prop_assert!(got.is_err()),
            }
        }
    }

    #[test]
    fn crc32_hashes_the_text(bytes in prop::collection::vec(any::<u8>(), 0..64), i in any::<i64>()) {
        let bound = parse("crc32(a)").ok().and_then(|e| e.bind(&|_| Some(0)).ok());
        prop_assert!(bound.is_some());
        if let Some(bound) = bound {
            let got = bound.eval(&[Value::Bytes(bytes.clone())], &NoContext);
            prop_assert_eq!(got, Ok(Value::UInt(u64::from(crc32fast::hash(&bytes)))));
            let got = bound.eval(&[Value::Int(i)], &NoContext);
            prop_assert_eq!(got, Ok(Value::UInt(u64::from(crc32fast::hash(i.to_string().as_bytes())))));
        }
    }

    #[test]
    fn double_text_round_trips(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let text = format_double(x);
        prop_assert_eq!(text.parse::<f64>().ok(), Some(x), "{}", text);
    }

    #[test]
    fn decimal_addition_is_exact(a in -10_000_000i64..10_000_000, b in -10_000_000i64..10_000_000) {
        let as_dec = |m: i64| {
            let s = format!("{:03}", m.unsigned_abs());
            let (i, f) = s.split_at(s.len() - 2);
            format!("{}{i}.{f}", if m < 0 { "-" } else { "" })
        };
        let bound = parse("a + b").ok().and_then(|e| e.bind(&|n| Some(usize::from(n == "b"))).ok());
        prop_assert!(bound.is_some());
        if let Some(bound) = bound {
            let got = bound.eval(&[Value::Decimal(as_dec(a)), Value::Decimal(as_dec(b))], &NoContext);
            prop_assert_eq!(got, Ok(Value::Decimal(as_dec(a + b))));
        }
    }
}
