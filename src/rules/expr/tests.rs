//! Unit tests for parsing, binding and evaluation.

use super::value::format_double;
use super::*;

/// Columns of the test row, by name.
const COLUMNS: [&str; 10] = ["i", "n", "s", "d", "f", "u", "dt", "j", "latin", "neg"];

fn row() -> Vec<Value> {
    vec![
        Value::Int(42),
        Value::Null,
        Value::Bytes(b"hello".to_vec()),
        Value::Decimal("-12.50".into()),
        Value::Double(1.5),
        Value::UInt(u64::MAX),
        Value::Bytes(b"2024-02-29 13:45:07.123456".to_vec()),
        Value::Bytes(
            br#"{"a": {"b": [10, "x", true, null, 1.5, 18446744073709551615, -5]}, "k e y": "v", "s": "quo\"te"}"#
                .to_vec(),
        ),
        Value::Bytes(vec![b'A', 0xc9, b'z']),
        Value::Int(i64::MIN),
    ]
}

fn resolve(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| *c == name)
}

/// A lookup context with one table `t` mapping 1 → 'one'.
struct MapContext;

impl EvalContext for MapContext {
    fn lookup(&self, table: &str, key: &Value) -> Result<Option<Value>, String> {
        match table {
            "t" if key.as_integer() == Some(1) => Ok(Some(Value::Bytes(b"one".to_vec()))),
            "t" => Ok(None),
            other => Err(format!("no lookup table named '{other}'")),
        }
    }
}

fn try_eval_ctx(src: &str, ctx: &dyn EvalContext) -> Result<Value, EvalError> {
    let expr = parse(src).unwrap_or_else(|e| panic!("parse {src:?}: {e} at {}", e.offset));
    let bound = expr
        .bind(&resolve)
        .unwrap_or_else(|e| panic!("bind {src:?}: {e} at {}", e.offset));
    bound.eval(&row(), ctx)
}

fn try_eval(src: &str) -> Result<Value, EvalError> {
    try_eval_ctx(src, &NoContext)
}

fn ev(src: &str) -> Value {
    try_eval(src).unwrap_or_else(|e| panic!("eval {src:?}: {e}"))
}

fn eval_err(src: &str) -> String {
    match try_eval(src) {
        Ok(v) => panic!("eval {src:?}: expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn parse_err(src: &str) -> (usize, String) {
    match parse(src) {
        Ok(e) => panic!("parse {src:?}: expected an error, got {e}"),
        Err(e) => (e.offset, e.message),
    }
}

fn bind_err(src: &str) -> (usize, String) {
    let expr = parse(src).unwrap_or_else(|e| panic!("parse {src:?}: {e}"));
    match expr.bind(&resolve) {
        Ok(_) => panic!("bind {src:?}: expected an error"),
        Err(e) => (e.offset, e.message),
    }
}

fn canon(src: &str) -> String {
    parse(src)
        .unwrap_or_else(|e| panic!("parse {src:?}: {e}"))
        .to_string()
}

fn bytes(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

fn dec(s: &str) -> Value {
    Value::Decimal(s.to_string())
}

// ---------------------------------------------------------------- parsing

#[test]
fn precedence() {
    let cases = [
        ("1 + 2 * 3", "(1 + (2 * 3))"),
        ("1 * 2 + 3", "((1 * 2) + 3)"),
        ("a - b - c", "((a - b) - c)"),
        ("a / b * c % d", "(((a / b) * c) % d)"),
        ("x DIV 2 MOD 3", "((x DIV 2) % 3)"),
        ("-a * b", "((-a) * b)"),
        ("- - a", "(-(-a))"),
        ("+ + 5", "5"),
        ("a or b and c", "(a OR (b AND c))"),
        ("a || b && c", "(a OR (b AND c))"),
        ("a and b or c and d", "((a AND b) OR (c AND d))"),
        ("a xor b or c", "((a XOR b) OR c)"),
        ("a and b xor c", "((a AND b) XOR c)"),
        ("not a = b", "(NOT (a = b))"),
        ("not a and b", "((NOT a) AND b)"),
        ("NOT NOT a", "(NOT (NOT a))"),
        ("!a = b", "((NOT a) = b)"),
        ("a = b is null", "((a = b) IS NULL)"),
        ("a + 1 is not null", "((a + 1) IS NOT NULL)"),
        ("a < b = c", "((a < b) = c)"),
        ("a + b < c * d", "((a + b) < (c * d))"),
        ("a <=> b", "(a <=> b)"),
        ("a <> b", "(a != b)"),
        ("(1 + 2) * 3", "((1 + 2) * 3)"),
        ("crc32(buyer_id) % 4", "(crc32(buyer_id) % 4)"),
        ("A AnD b", "(A AND b)"),
        ("f()", "f()"),
        ("range(x, [-5, 0, 1.5])", "range(x, [(-5), 0, 1.5])"),
        ("`weird col` + `a``b`", "(`weird col` + `a``b`)"),
        ("`and`", "`and`"),
    ];
    for (src, want) in cases {
        assert_eq!(canon(src), want, "{src}");
    }
}

#[test]
fn literals() {
    let lit = |src: &str| match parse(src) {
        Ok(Expr::Literal { value, .. }) => value,
        other => panic!("{src:?}: {other:?}"),
    };
    assert_eq!(lit("42"), Value::Int(42));
    assert_eq!(lit("9223372036854775807"), Value::Int(i64::MAX));
    assert_eq!(lit("9223372036854775808"), Value::UInt(1 << 63));
    assert_eq!(lit("18446744073709551615"), Value::UInt(u64::MAX));
    assert_eq!(lit("007"), Value::Int(7));
    assert_eq!(lit("1.50"), dec("1.50"));
    assert_eq!(lit("007.50"), dec("7.50"));
    assert_eq!(lit(".5"), dec("0.5"));
    assert_eq!(lit("1."), dec("1"));
    assert_eq!(lit("1e3"), Value::Double(1000.0));
    assert_eq!(lit("2.5E-2"), Value::Double(0.025));
    assert_eq!(lit("NULL"), Value::Null);
    assert_eq!(lit("true"), Value::Int(1));
    assert_eq!(lit("False"), Value::Int(0));
    assert_eq!(lit(r"'it\'s'"), bytes("it's"));
    assert_eq!(lit("'it''s'"), bytes("it's"));
    assert_eq!(lit(r#""say \"hi\"""#), bytes("say \"hi\""));
    assert_eq!(lit(r"'a\\b\n\t\0\r\Z\q'"), bytes("a\\b\n\t\0\r\u{1a}q"));
    assert_eq!(lit(r"'50\%'"), bytes("50\\%"));
    assert_eq!(lit("'é'"), Value::Bytes("é".as_bytes().to_vec()));
    assert_eq!(lit("''"), bytes(""));
}

#[test]
fn parse_errors_have_offsets() {
    let cases: &[(&str, usize, &str)] = &[
        ("a #", 2, "unexpected character '#'"),
        ("'abc", 0, "unterminated string"),
        ("x = 'ab\\", 4, "unterminated string"),
        ("concat(a, b", 11, "expected ')' after function arguments"),
        ("concat(a b)", 9, "expected ')' after function arguments"),
        ("(1 + 2", 6, "expected ')', found end of input"),
        ("", 0, "expected an expression, found end of input"),
        ("1 +", 3, "expected an expression, found end of input"),
        ("1 + * 2", 4, "expected an expression, found '*'"),
        ("a b", 2, "unexpected identifier 'b' after the expression"),
        ("a )", 2, "unexpected ')' after the expression"),
        ("x is 5", 5, "expected NULL or NOT NULL after IS"),
        ("1 + not x", 4, "NOT needs parentheses here, e.g. (NOT x)"),
        (
            "[1, 2]",
            0,
            "a list [...] is only allowed as the second argument of range()",
        ),
        (
            "concat([1])",
            7,
            "a list [...] is only allowed as the second argument of range()",
        ),
        ("range(x, [1, 2)", 14, "expected ',' or ']' in list"),
        ("12abc", 2, "unexpected character 'a' in number"),
        ("1.2.3", 3, "unexpected character '.' in number"),
        ("18446744073709551616", 0, "integer literal out of range"),
        ("1e999", 0, "number literal out of range"),
        ("`abc", 0, "unterminated quoted identifier"),
        ("``", 0, "empty quoted identifier"),
        ("a & b", 2, "unexpected character '&' (did you mean '&&'?)"),
        ("a == b", 3, "expected an expression, found '='"),
        ("and", 0, "expected an expression, found keyword AND"),
        ("x = é", 4, "unexpected character 'é'"),
        ("x\n  + @", 6, "unexpected character '@'"),
    ];
    for (src, offset, message) in cases {
        assert_eq!(parse_err(src), (*offset, message.to_string()), "{src:?}");
    }
}

#[test]
fn line_and_column() {
    let src = "crc32(a)\n  % #";
    let err = parse(src).unwrap_err();
    assert_eq!(err.line_col(src), (2, 5));
    assert_eq!(line_col("é#", 2), (1, 2));
    assert_eq!(line_col("ab", 99), (1, 3));
    assert_eq!(line_col("é", 1), (1, 1));
}

#[test]
fn nesting_is_limited() {
    let ok = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(parse(&ok).is_ok());
    let too_deep = format!(
        "{}1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(
        parse_err(&too_deep),
        (MAX_DEPTH, "expression nested too deeply".into())
    );
    // None of these may overflow the stack.
    for src in [
        "(".repeat(100_000),
        format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        "-".repeat(100_000) + "1",
        "!".repeat(100_000) + "1",
        "not ".repeat(100_000) + "1",
        "1".to_string() + &"+1".repeat(100_000),
        "a".to_string() + &" and a".repeat(100_000),
        "f(".repeat(100_000),
        "range(x, [".repeat(100_000),
        "x".to_string() + &" is null".repeat(100_000),
    ] {
        let err = parse(&src).unwrap_err();
        assert!(
            err.message == "expression nested too deeply" || err.message.starts_with("expected"),
            "{}",
            err.message
        );
    }
    // A long but shallow argument list is fine.
    let wide = format!("concat({})", vec!["1"; 10_000].join(", "));
    assert!(parse(&wide).is_ok());
}

#[test]
fn columns_are_listed_once_in_order() {
    let e = parse("concat(b, a, `x y`) = a or crc32(b) > c").unwrap();
    assert_eq!(e.columns(), ["b", "a", "x y", "c"]);
    assert!(parse("1 + 2").unwrap().columns().is_empty());
}

// ---------------------------------------------------------------- binding

#[test]
fn bind_errors() {
    let cases: &[(&str, usize, &str)] = &[
        ("i + zz", 4, "unknown column 'zz'"),
        ("1 + foo(i)", 4, "unknown function 'foo'"),
        ("crc32()", 0, "crc32() takes 1 argument, got 0"),
        ("crc32(i, i)", 0, "crc32() takes 1 argument, got 2"),
        ("if(1, 2)", 0, "if() takes 3 arguments, got 2"),
        ("substr('a')", 0, "substr() takes 2 to 3 arguments, got 1"),
        (
            "SUBSTRING('a', 1, 2, 3)",
            0,
            "substr() takes 2 to 3 arguments, got 4",
        ),
        ("concat()", 0, "concat() takes at least 1 argument, got 0"),
        ("hash64()", 0, "hash64() takes at least 1 argument, got 0"),
        (
            "range(i, i)",
            9,
            "range(): argument 2 must be a list of numbers like [10, 20], got a column",
        ),
        (
            "range(i, [1, 'a'])",
            13,
            "range(): argument 2 must be a list of numbers, got string",
        ),
        (
            "range(i, [NULL])",
            10,
            "range(): argument 2 must be a list of numbers, got NULL",
        ),
        (
            "range(i, [i])",
            10,
            "range(): argument 2 must be a list of numbers, got a column",
        ),
        (
            "range(i, [1 + 1])",
            12,
            "range(): argument 2 must be a list of numbers, got an expression",
        ),
        (
            "range(i, [])",
            9,
            "range(): argument 2 must be a non-empty list of numbers",
        ),
        (
            "range(i, [10, 5])",
            14,
            "range(): bounds must be in strictly ascending order, but 5 follows 10",
        ),
        (
            "range(i, [1, 1.0])",
            13,
            "range(): bounds must be in strictly ascending order, but 1.0 follows 1",
        ),
        (
            "lookup(s, i)",
            7,
            "lookup(): argument 1 must be a string literal naming the lookup table, got a column",
        ),
        (
            "json_extract(j, 'a.b')",
            16,
            "json_extract(): invalid JSON path: the path must start with '$'",
        ),
        (
            "json_extract(j, '$[*]')",
            16,
            "json_extract(): invalid JSON path: wildcards and 'last' are not supported",
        ),
        (
            "json_extract(j, '$.a.')",
            16,
            "json_extract(): invalid JSON path: expected a key name after '.'",
        ),
    ];
    for (src, offset, message) in cases {
        assert_eq!(bind_err(src), (*offset, message.to_string()), "{src:?}");
    }
}

#[test]
fn function_names_are_case_insensitive() {
    assert_eq!(ev("CRC32('MySQL')"), Value::UInt(3_259_397_556));
    assert_eq!(ev("Concat('a', 'b')"), bytes("ab"));
    assert_eq!(ev("RANGE(5, [1])"), Value::Int(1));
}

#[test]
fn range_bounds_accept_all_numeric_literals() {
    assert_eq!(ev("range(i, [-10, 0, 1.5, 41.99, 1e3])"), Value::Int(4));
    assert_eq!(ev("range(-10, [-10, 0])"), Value::Int(1));
}

#[test]
fn missing_column_in_short_row_is_an_error() {
    let bound = parse("a + 1").unwrap().bind(&|_| Some(3)).unwrap();
    assert_eq!(
        bound.eval(&[Value::Int(1)], &NoContext),
        Err(EvalError::MissingColumn { index: 3, len: 1 })
    );
}

#[test]
fn hand_built_deep_trees_are_rejected_by_bind() {
    let mut e = Expr::Literal {
        value: Value::Int(1),
        offset: 0,
    };
    for _ in 0..200 {
        e = Expr::Unary {
            op: UnaryOp::Neg,
            operand: Box::new(e),
            offset: 0,
        };
    }
    assert_eq!(
        e.bind(&resolve).unwrap_err().message,
        "expression nested too deeply"
    );
}

// ---------------------------------------------------------------- values

#[test]
fn double_text_matches_mysql() {
    let cases: &[(f64, &str)] = &[
        (1.5, "1.5"),
        (-1.5, "-1.5"),
        (100.0, "100"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1e14, "100000000000000"),
        (123_456_789_012_345.0, "123456789012345"),
        (1e15, "1e15"),
        (1_234_567_890_123_456.0, "1.234567890123456e15"),
        (1_234_567_890_123_456.7, "1234567890123456.8"),
        // exactly halfway between two shortest candidates: the even one,
        // like MySQL's dtoa (Rust's `{:e}` alone rounds these up)
        (1_234_567_890_123_456.0 + 0.25, "1234567890123456.2"),
        (758_485_875_790_979.0 + 0.25, "758485875790979.2"),
        (-758_485_875_790_979.0 - 0.25, "-758485875790979.2"),
        (1e20, "1e20"),
        (123_456_789_012_345_680_000.0, "1.2345678901234568e20"),
        (0.1 + 0.2, "0.30000000000000004"),
        (0.0001, "0.0001"),
        (1e-5, "0.00001"),
        (1e-15, "0.000000000000001"),
        (1e-16, "1e-16"),
        (2.5e-7, "0.00000025"),
        (1.25e-20, "1.25e-20"),
        (f64::MAX, "1.7976931348623157e308"),
        (5e-324, "5e-324"),
        (f64::INFINITY, "inf"),
        (f64::NAN, "nan"),
    ];
    for (x, want) in cases {
        assert_eq!(format_double(*x), *want, "{x:e}");
    }
}

#[test]
fn to_text() {
    let text = |v: Value| {
        v.to_text()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
    };
    assert_eq!(text(Value::Null), None);
    assert_eq!(text(Value::Int(-7)), Some("-7".into()));
    assert_eq!(
        text(Value::UInt(u64::MAX)),
        Some("18446744073709551615".into())
    );
    assert_eq!(text(dec("5.00")), Some("5.00".into()));
    assert_eq!(text(Value::Double(1e20)), Some("1e20".into()));
    assert_eq!(
        Value::Bytes(vec![0xe9]).to_text().as_deref(),
        Some(&[0xe9u8][..])
    );
}

#[test]
fn as_integer() {
    assert_eq!(Value::Int(-3).as_integer(), Some(-3));
    assert_eq!(
        Value::UInt(u64::MAX).as_integer(),
        Some(i128::from(u64::MAX))
    );
    assert_eq!(dec("-3.000").as_integer(), Some(-3));
    assert_eq!(dec("3.01").as_integer(), None);
    assert_eq!(Value::Double(4.0).as_integer(), Some(4));
    assert_eq!(Value::Double(f64::NAN).as_integer(), None);
    assert_eq!(bytes("4").as_integer(), None);
    assert_eq!(Value::Null.as_integer(), None);
}

// ---------------------------------------------------------------- crc32

#[test]
fn crc32_matches_mysql() {
    assert_eq!(ev("crc32('MySQL')"), Value::UInt(3_259_397_556));
    assert_eq!(ev("crc32('mysql')"), Value::UInt(2_501_908_538));
    assert_eq!(ev("crc32('')"), Value::UInt(0));
    assert_eq!(ev("crc32(123)"), Value::UInt(2_286_445_522));
    assert_eq!(ev("crc32('123')"), Value::UInt(2_286_445_522));
    assert_eq!(ev("crc32(NULL)"), Value::Null);
    assert_eq!(ev("crc32(n)"), Value::Null);
    // Decimal literal, double column and computed double all hash "1.5".
    assert_eq!(ev("crc32(1.5)"), Value::UInt(2_270_993_338));
    assert_eq!(ev("crc32(f)"), Value::UInt(2_270_993_338));
    assert_eq!(ev("crc32(3e0 / 2)"), Value::UInt(2_270_993_338));
    // 7 / 2 is DECIMAL 3.5000 in MySQL.
    assert_eq!(ev("crc32(7 / 2)"), Value::UInt(1_474_080_409));
    // Raw latin1 bytes are hashed as is.
    assert_eq!(
        ev("crc32(latin)"),
        Value::UInt(u64::from(crc32fast::hash(&[b'A', 0xc9, b'z'])))
    );
    assert_eq!(ev("crc32('MySQL') % 4"), Value::Int(3_259_397_556 % 4));
}

// ---------------------------------------------------------------- arithmetic

#[test]
fn integer_arithmetic() {
    assert_eq!(ev("1 + 2"), Value::Int(3));
    assert_eq!(ev("i - 50"), Value::Int(-8));
    assert_eq!(ev("i * -2"), Value::Int(-84));
    assert_eq!(ev("9223372036854775807 + 1"), Value::UInt(1 << 63));
    assert_eq!(ev("-9223372036854775808"), Value::Int(i64::MIN));
    assert_eq!(ev("u - 1"), Value::UInt(u64::MAX - 1));
    assert_eq!(ev("u - u"), Value::Int(0));
    assert_eq!(ev("neg + u"), Value::Int(i64::MAX));
    assert_eq!(ev("neg + u + 1"), Value::UInt(1 << 63));
    assert_eq!(eval_err("u + 1"), "numeric overflow in +");
    assert_eq!(eval_err("neg - 1"), "numeric overflow in -");
    assert_eq!(eval_err("0 - u"), "numeric overflow in -");
    assert_eq!(eval_err("u * u"), "numeric overflow in *");
    assert_eq!(eval_err("-u"), "numeric overflow in unary -");
    assert_eq!(ev("7 DIV 2"), Value::Int(3));
    assert_eq!(ev("-7 DIV 2"), Value::Int(-3));
    assert_eq!(ev("7 % 3"), Value::Int(1));
    assert_eq!(ev("-7 % 3"), Value::Int(-1));
    assert_eq!(ev("7 MOD -3"), Value::Int(1));
    assert_eq!(ev("u % 10"), Value::Int(5));
    assert_eq!(ev("neg DIV -1"), Value::UInt(1 << 63));
}

#[test]
fn division_and_decimals() {
    assert_eq!(ev("7 / 2"), dec("3.5000"));
    assert_eq!(ev("1 / 3"), dec("0.3333"));
    assert_eq!(ev("2 / 3"), dec("0.6667"));
    assert_eq!(ev("-2 / 3"), dec("-0.6667"));
    assert_eq!(ev("1.50 / 3"), dec("0.500000"));
    assert_eq!(ev("0.1 + 0.2"), dec("0.3"));
    assert_eq!(ev("1.25 * 2.5"), dec("3.125"));
    assert_eq!(ev("d * 2"), dec("-25.00"));
    assert_eq!(ev("d + 1"), dec("-11.50"));
    assert_eq!(ev("-d"), dec("12.50"));
    assert_eq!(ev("1.5 - 1.5"), dec("0.0"));
    assert_eq!(ev("7.5 % 2"), dec("1.5"));
    assert_eq!(ev("-7.5 % 2"), dec("-1.5"));
    assert_eq!(ev("7.5 DIV 2"), Value::Int(3));
    // Too many digits for exact decimals: falls back to doubles.
    assert_eq!(
        ev("99999999999999999999.99 * 99999999999999999999.99"),
        Value::Double(99_999_999_999_999_999_999.99_f64 * 99_999_999_999_999_999_999.99_f64)
    );
}

#[test]
fn doubles_and_strings_in_arithmetic() {
    assert_eq!(ev("f + 1"), Value::Double(2.5));
    assert_eq!(ev("1e0 / 4"), Value::Double(0.25));
    assert_eq!(ev("f * d"), Value::Double(-18.75));
    assert_eq!(ev("7.5e0 % 2"), Value::Double(1.5));
    assert_eq!(ev("7.5e0 DIV 2"), Value::Int(3));
    assert_eq!(ev("'12abc' + 1"), Value::Double(13.0));
    assert_eq!(ev("' -1.5e1x' * 2"), Value::Double(-30.0));
    assert_eq!(ev("'abc' + 1"), Value::Double(1.0));
    assert_eq!(ev("'' - 1"), Value::Double(-1.0));
    assert_eq!(ev("-'5'"), Value::Double(-5.0));
    assert_eq!(eval_err("1e308 * 10"), "numeric overflow in *");
    assert_eq!(eval_err("1e300 DIV 1e-300"), "numeric overflow in DIV");
}

#[test]
fn division_by_zero_is_an_error() {
    for src in [
        "1 / 0",
        "1 % 0",
        "1 DIV 0",
        "1.5 / 0.00",
        "f / 0",
        "1 MOD 0e0",
        "1 / 'abc'",
    ] {
        assert_eq!(eval_err(src), "division by zero", "{src}");
    }
}

#[test]
fn null_propagates() {
    for src in [
        "n + 1",
        "1 - n",
        "n * 2",
        "n / 2",
        "2 DIV n",
        "n % 2",
        "-n",
        "n = 1",
        "n <> n",
        "n < 1",
        "'a' >= n",
        "NOT n",
        "n XOR 1",
        "crc32(n)",
        "concat('a', n)",
        "substr(n, 1)",
        "substr('abc', n)",
        "substr('abc', 1, n)",
        "lower(n)",
        "upper(n)",
        "abs(n)",
        "json_extract(n, '$')",
        "json_extract('{}', n)",
        "year(n)",
        "month(n)",
        "day(n)",
        "range(n, [1])",
        "coalesce(n, NULL)",
        "if(1, n, 2)",
        "u + n",
        "1 / n",
    ] {
        assert_eq!(ev(src), Value::Null, "{src}");
    }
}

// ---------------------------------------------------------------- comparisons and logic

#[test]
fn comparisons() {
    let t = Value::Int(1);
    let f = Value::Int(0);
    let cases: &[(&str, &Value)] = &[
        ("1 = 1.0", &t),
        ("1 = 1e0", &t),
        ("0.1 + 0.2 = 0.3", &t),
        ("u > i", &t),
        ("neg < u", &t),
        ("d < -12.4", &t),
        ("'a' < 'b'", &t),
        ("'a' = 'A'", &f),
        ("'abc' > 'ab'", &t),
        ("10 = '10abc'", &t),
        ("2 < '10'", &t),
        ("'2' < '10'", &f),
        ("s = 'hello'", &t),
        ("s != 'hello'", &f),
        ("s <> 'x'", &t),
        ("i >= 42", &t),
        ("i <= 41", &f),
        ("NULL <=> NULL", &t),
        ("1 <=> NULL", &f),
        ("1 <=> 1", &t),
        ("n IS NULL", &t),
        ("n IS NOT NULL", &f),
        ("i IS NULL", &f),
        ("(n = 1) IS NULL", &t),
    ];
    for (src, want) in cases {
        assert_eq!(&ev(src), *want, "{src}");
    }
    assert_eq!(ev("NULL = NULL"), Value::Null);
}

#[test]
fn three_valued_logic() {
    let cases: &[(&str, Value)] = &[
        ("NULL AND 0", Value::Int(0)),
        ("0 AND NULL", Value::Int(0)),
        ("NULL AND 1", Value::Null),
        ("1 AND 1", Value::Int(1)),
        ("NULL OR 1", Value::Int(1)),
        ("1 OR NULL", Value::Int(1)),
        ("NULL OR 0", Value::Null),
        ("0 || 0", Value::Int(0)),
        ("NOT NULL", Value::Null),
        ("NOT 0", Value::Int(1)),
        ("NOT 2.5", Value::Int(0)),
        ("NOT 'abc'", Value::Int(1)),
        ("NOT '1abc'", Value::Int(0)),
        ("!0.0", Value::Int(1)),
        ("1 XOR 1", Value::Int(0)),
        ("1 XOR 0", Value::Int(1)),
        ("NULL XOR 0", Value::Null),
        // Short circuit: the error on the right is never reached.
        ("0 AND 1 / 0", Value::Int(0)),
        ("1 OR 1 / 0", Value::Int(1)),
        ("s = 'hello' && i = 42", Value::Int(1)),
    ];
    for (src, want) in cases {
        assert_eq!(&ev(src), want, "{src}");
    }
    assert_eq!(eval_err("1 AND 1 / 0"), "division by zero");
}

// ---------------------------------------------------------------- functions

#[test]
fn concat() {
    assert_eq!(ev("concat('a', 1, 2.50)"), bytes("a12.50"));
    assert_eq!(
        ev("concat(s, i, d, f, u)"),
        bytes("hello42-12.501.518446744073709551615")
    );
    assert_eq!(ev("concat('a', NULL)"), Value::Null);
    assert_eq!(ev("concat(latin)"), Value::Bytes(vec![b'A', 0xc9, b'z']));
}

#[test]
fn substr() {
    let cases: &[(&str, &str)] = &[
        ("substr('abcdef', 2)", "bcdef"),
        ("substr('abcdef', -2)", "ef"),
        ("substr('abcdef', 2, 3)", "bcd"),
        ("substr('abcdef', -3, 2)", "de"),
        ("substr('abcdef', 0)", ""),
        ("substr('abcdef', 7)", ""),
        ("substr('abcdef', -7)", ""),
        ("substr('abcdef', -6)", "abcdef"),
        ("substr('abcdef', 2, 0)", ""),
        ("substr('abcdef', 2, -1)", ""),
        ("substr('abcdef', 2, 100)", "bcdef"),
        ("substr('abcdef', 1.5)", "bcdef"),
        ("substr('abcdef', '3')", "cdef"),
        ("substr(12345, 1, 2)", "12"),
        ("substring(s, 2, 3)", "ell"),
        (
            "substr('abc', 9223372036854775807, 9223372036854775807)",
            "",
        ),
        ("substr('abc', -9223372036854775808)", ""),
        ("substr('abc', 1, 18446744073709551615)", "abc"),
        ("substr('abc', 1e300, 1e300)", ""),
    ];
    for (src, want) in cases {
        assert_eq!(ev(src), bytes(want), "{src}");
    }
    // Byte-based: a latin1 byte is one position.
    assert_eq!(ev("substr(latin, 2, 1)"), Value::Bytes(vec![0xc9]));
}

#[test]
fn lower_upper_are_ascii_only() {
    assert_eq!(ev("lower('MySQL')"), bytes("mysql"));
    assert_eq!(ev("upper('MySQL')"), bytes("MYSQL"));
    assert_eq!(ev("upper(latin)"), Value::Bytes(vec![b'A', 0xc9, b'Z']));
    assert_eq!(ev("lower('ÉA')"), Value::Bytes("Éa".as_bytes().to_vec()));
    assert_eq!(ev("lower(12)"), bytes("12"));
}

#[test]
fn coalesce_and_if() {
    assert_eq!(ev("coalesce(n, NULL, 3, 1 / 0)"), Value::Int(3));
    assert_eq!(ev("coalesce(n, NULL)"), Value::Null);
    assert_eq!(ev("coalesce(s)"), bytes("hello"));
    assert_eq!(ev("if(1, 'a', 'b')"), bytes("a"));
    assert_eq!(ev("if(NULL, 'a', 'b')"), bytes("b"));
    assert_eq!(ev("if('0', 'a', 'b')"), bytes("b"));
    assert_eq!(ev("if(i > 40, 2, 1 / 0)"), Value::Int(2));
    assert_eq!(eval_err("if(i > 50, 2, 1 / 0)"), "division by zero");
}

#[test]
fn abs() {
    assert_eq!(ev("abs(-5)"), Value::Int(5));
    assert_eq!(ev("abs(5)"), Value::Int(5));
    assert_eq!(ev("abs(d)"), dec("12.50"));
    assert_eq!(ev("abs(-f)"), Value::Double(1.5));
    assert_eq!(ev("abs(u)"), Value::UInt(u64::MAX));
    assert_eq!(ev("abs('-3x')"), Value::Double(3.0));
    assert_eq!(eval_err("abs(neg)"), "numeric overflow in abs()");
    assert_eq!(
        eval_err("abs(-9223372036854775808)"),
        "numeric overflow in abs()"
    );
}

#[test]
fn json_extract() {
    let cases: &[(&str, Value)] = &[
        ("json_extract(j, '$.a.b[0]')", Value::Int(10)),
        ("json_extract(j, '$.a.b[1]')", bytes("x")),
        ("json_extract(j, '$.a.b[2]')", Value::Int(1)),
        ("json_extract(j, '$.a.b[3]')", Value::Null),
        ("json_extract(j, '$.a.b[4]')", Value::Double(1.5)),
        ("json_extract(j, '$.a.b[5]')", Value::UInt(u64::MAX)),
        ("json_extract(j, '$.a.b[6]')", Value::Int(-5)),
        ("json_extract(j, '$.a.b[7]')", Value::Null),
        ("json_extract(j, '$.missing')", Value::Null),
        ("json_extract(j, '$.a.missing.deeper')", Value::Null),
        ("json_extract(j, '$.\"k e y\"')", bytes("v")),
        ("json_extract(j, ' $ . a . b [ 1 ] ')", bytes("x")),
        ("json_extract(j, '$.s')", bytes("quo\"te")),
        (
            "json_extract(j, '$.a')",
            bytes(r#"{"b":[10,"x",true,null,1.5,18446744073709551615,-5]}"#),
        ),
        ("json_extract(j, '$.a.b[0][0]')", Value::Int(10)),
        ("json_extract(j, '$[0].s')", bytes("quo\"te")),
        ("json_extract(j, '$[1]')", Value::Null),
        ("json_extract('5', '$')", Value::Int(5)),
        ("json_extract('\"str\"', '$')", bytes("str")),
        ("json_extract('[1, [2, 3]]', '$[1]')", bytes("[2,3]")),
        ("json_extract('{\"a\": false}', '$.a')", Value::Int(0)),
        ("json_extract(j, concat('$.\"', 'k e y', '\"'))", bytes("v")),
        (
            "crc32(json_extract('{\"id\": \"abc\"}', '$.id')) = crc32('abc')",
            Value::Int(1),
        ),
    ];
    for (src, want) in cases {
        assert_eq!(&ev(src), want, "{src}");
    }
    // 1e400 does not fit a double.
    assert!(
        eval_err("json_extract('{\"a\": 1e400}', '$.a')").starts_with("json_extract(): argument 1")
    );
    assert!(eval_err("json_extract('{bad', '$')")
        .starts_with("json_extract(): argument 1 is not valid JSON: "));
    assert!(eval_err("json_extract(s, '$')")
        .starts_with("json_extract(): argument 1 is not valid JSON"));
    assert_eq!(
        eval_err("json_extract(j, concat('a', '.b'))"),
        "json_extract(): argument 2 is not a valid JSON path: the path must start with '$'"
    );
    assert_eq!(
        eval_err("json_extract(j, concat('$.', 'k e y'))"),
        "json_extract(): argument 2 is not a valid JSON path: unexpected character 'e' in the path"
    );
    // Deeply nested documents are rejected, not a stack overflow.
    let deep = format!("'{}{}'", "[".repeat(10_000), "]".repeat(10_000));
    assert!(eval_err(&format!("json_extract({deep}, '$')")).contains("not valid JSON"));
}

#[test]
fn date_parts() {
    assert_eq!(ev("year(dt)"), Value::Int(2024));
    assert_eq!(ev("month(dt)"), Value::Int(2));
    assert_eq!(ev("day(dt)"), Value::Int(29));
    assert_eq!(ev("year('1999-12-31')"), Value::Int(1999));
    assert_eq!(ev("day('2024-01-02T03:04:05')"), Value::Int(2));
    assert_eq!(ev("day('2024-01-02 03:04:05.1')"), Value::Int(2));
    assert_eq!(ev("year('0000-00-00')"), Value::Int(0));
    assert_eq!(ev("month('2000-02-29 23:59:59')"), Value::Int(2));
    for bad in [
        "'2023-02-29'",
        "'1900-02-29'",
        "'2024-04-31'",
        "'2024-13-01'",
        "'2024-1-2'",
        "'2024-01-02 25:00:00'",
        "'2024-01-02 03:04'",
        "'2024-01-02 03:04:05.'",
        "'2024-01-02 03:04:05.1234567'",
        "'2024-01-02x'",
        "'soon'",
        "''",
        "20240102",
        "s",
    ] {
        let msg = eval_err(&format!("month({bad})"));
        assert!(
            msg.starts_with(
                "month(): argument 1 must be a date 'YYYY-MM-DD[ hh:mm:ss[.ffffff]]', got "
            ),
            "{bad}: {msg}"
        );
    }
    assert_eq!(
        eval_err("year('2024-13-01')"),
        "year(): argument 1 must be a date 'YYYY-MM-DD[ hh:mm:ss[.ffffff]]', got '2024-13-01'"
    );
}

#[test]
fn range_buckets() {
    let cases: &[(&str, i64)] = &[
        ("range(5, [10, 20, 30])", 0),
        ("range(10, [10, 20, 30])", 1),
        ("range(19, [10, 20, 30])", 1),
        ("range(20, [10, 20, 30])", 2),
        ("range(30, [10, 20, 30])", 3),
        ("range(1000, [10, 20, 30])", 3),
        ("range(-1, [0])", 0),
        ("range(i, [42])", 1),
        ("range(i, [42.01])", 0),
        ("range(d, [-12.5, 0])", 1),
        ("range(d, [-12.49, 0])", 0),
        ("range(f, [1, 1.5, 2])", 2),
        ("range('15', [10, 20])", 1),
        ("range(u, [0, 18446744073709551615])", 2),
        ("range(neg, [-9223372036854775808])", 1),
    ];
    for (src, want) in cases {
        assert_eq!(ev(src), Value::Int(*want), "{src}");
    }
}

#[test]
fn hash64_vectors() {
    let h = |src: &str| match ev(src) {
        Value::UInt(u) => u,
        other => panic!("{src}: {other:?}"),
    };
    assert_eq!(h("hash64('a')"), 0xfddf_3539_0cb2_a536);
    assert_eq!(h("hash64('')"), 0xd80d_6cae_a7dc_7eec);
    assert_eq!(h("hash64(NULL)"), 0xe4bc_4fd9_252b_e94f);
    assert_eq!(h("hash64('ab', 'c')"), 0xf40e_a3c9_e6a2_4934);
    assert_eq!(h("hash64('a', 'bc')"), 0xae07_beb8_6b94_8180);
    assert_eq!(h("hash64(123)"), 0xb7ab_e7c6_1cca_1c27);
    assert_eq!(h("hash64('123')"), 0xb7ab_e7c6_1cca_1c27);
    assert_eq!(h("hash64('MySQL', NULL, 42)"), 0xd728_4f4b_11ee_dfe4);
    assert_eq!(hash64(&[]), 0xcbf2_9ce4_8422_2325);
    assert_ne!(h("hash64(NULL)"), h("hash64('')"));
}

#[test]
fn lookup() {
    assert_eq!(
        try_eval_ctx("lookup('t', 1)", &MapContext),
        Ok(bytes("one"))
    );
    assert_eq!(
        try_eval_ctx("lookup('t', 1.0)", &MapContext),
        Ok(bytes("one"))
    );
    assert_eq!(try_eval_ctx("lookup('t', 2)", &MapContext), Ok(Value::Null));
    assert_eq!(try_eval_ctx("lookup('t', n)", &MapContext), Ok(Value::Null));
    assert_eq!(
        try_eval_ctx("lookup('x', 1)", &MapContext)
            .unwrap_err()
            .to_string(),
        "lookup('x'): no lookup table named 'x'"
    );
    assert_eq!(
        eval_err("lookup('t', 1)"),
        "lookup('t'): lookup tables are not available here"
    );
    assert_eq!(
        try_eval_ctx(
            "concat('s', coalesce(lookup('t', i - 41), 'x'))",
            &MapContext
        ),
        Ok(bytes("sone"))
    );
}

#[test]
fn display_round_trips() {
    for src in [
        "crc32(buyer_id) % 4",
        "not a = b and c is not null or d xor e",
        "if(`x y` <=> NULL, 'it''s\\n', -1.50) DIV 2",
        "range(a, [-1, 2.5, 1e3])",
        "- - -a",
        "'\\\\%'",
    ] {
        let once = canon(src);
        assert_eq!(canon(&once), once, "{src}");
    }
}

#[test]
fn deepest_accepted_trees_evaluate() {
    // MAX_DEPTH - 1 nested calls around a literal: a tree of depth MAX_DEPTH.
    let calls = format!(
        "{}1{}",
        "abs(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    assert_eq!(ev(&calls), Value::Int(1));
    let too_deep = format!("{}1{}", "abs(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(parse_err(&too_deep).1, "expression nested too deeply");
    // A left-deep operator chain of the same depth.
    let chain = format!("1{}", " + 1".repeat(MAX_DEPTH - 1));
    assert_eq!(ev(&chain), Value::Int(MAX_DEPTH as i64));
    let too_long = format!("1{}", " + 1".repeat(MAX_DEPTH));
    assert_eq!(
        parse_err(&too_long),
        (MAX_DEPTH * 4 - 2, "expression nested too deeply".into())
    );
    let mixed = format!(
        "{}i{}",
        "-(".repeat(MAX_DEPTH / 2),
        ")".repeat(MAX_DEPTH / 2)
    );
    assert_eq!(ev(&mixed), Value::Int(42));
}
