//! The spool on hand-built rows events: rows come back in order with the
//! versions of their events, in chunks of whole events; a small budget
//! moves them to a file and back; savepoints truncate, keeping the rows
//! of tables that persisted; memory is given back when a spool goes.

use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

use super::*;
use crate::source::decode::TableMapColumns;
use crate::source::schema::{Column, SchemaOrigin};

fn table(name: &str) -> Arc<Mapped> {
    let schema = TableSchema {
        db: "d".into(),
        table: name.into(),
        columns: vec![
            Column::new("a", ColumnType::MYSQL_TYPE_LONG),
            Column::new("b", ColumnType::MYSQL_TYPE_LONG),
        ],
        pk: vec![0],
        origin: SchemaOrigin::BinlogMetadata,
    };
    let cols = TableMapColumns {
        types: &[3, 3],
        meta: &[],
    };
    let layout = Layout::new(&cols, &schema).unwrap();
    Arc::new(Mapped {
        schema: Arc::new(schema),
        layout,
    })
}

/// A v2 WRITE_ROWS body of rows `(k, k)` for `keys`.
fn write_rows(keys: std::ops::Range<i32>) -> (Vec<u8>, u64) {
    let mut b = vec![1, 0, 0, 0, 0, 0, 1, 0, 2, 0, 2, 0b11];
    for k in keys.clone() {
        b.push(0);
        b.extend(k.to_le_bytes());
        b.extend(k.to_le_bytes());
    }
    (b, keys.len() as u64)
}

fn file() -> (Arc<str>, u32) {
    (Arc::from("bin.000003"), 3)
}

/// Appends the rows `keys` of `t` as an event at `offset`.
fn add(s: &mut Spool, t: &Arc<Mapped>, keys: std::ops::Range<i32>, offset: u64) {
    let (body, rows) = write_rows(keys);
    let f = file();
    let origin = Origin {
        ty: 30,
        id_width: 6,
        offset,
        first_row: 0,
        span: body.len() as u64 + 19,
        rows,
    };
    s.append(t, (&f.0, f.1), origin, &body).unwrap();
}

/// All rows, as (key, version row index, offset), and the chunk sizes.
fn drain(s: Spool, rows: usize) -> (Vec<(i64, u32, u64)>, Vec<usize>) {
    let mut r = s.release(0).unwrap();
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let chunk = r.chunk(rows, 1 << 20).unwrap();
        if chunk.is_empty() {
            break;
        }
        sizes.push(chunk.len());
        for c in chunk {
            let Some(Value::Int(k)) = c.after.as_ref().unwrap().first().cloned() else {
                panic!("{c:?}");
            };
            assert_eq!(&*c.file, "bin.000003");
            assert_eq!(c.version.file_seq(), 3);
            out.push((k, c.version.row(), c.version.offset()));
        }
    }
    assert!(!r.remaining());
    (out, sizes)
}

#[test]
fn rows_come_back_in_order_in_chunks_of_whole_events() {
    let t = table("t");
    let mut s = Spool::default();
    add(&mut s, &t, 0..3, 100);
    add(&mut s, &t, 3..5, 200);
    add(&mut s, &t, 5..9, 300);
    assert_eq!(s.rows(), 9);
    assert!(!s.spilled());
    let (rows, sizes) = drain(s, 4);
    assert_eq!(sizes, vec![5, 4], "whole events until at least 4 rows");
    let keys: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(keys, (0..9).collect::<Vec<_>>());
    assert_eq!(rows[3], (3, 0, 200));
    assert_eq!(rows[8], (8, 3, 300));
}

#[test]
fn a_small_budget_moves_rows_to_a_file_and_gives_memory_back() {
    let t = table("t");
    let budget = Budget::new(300, None);
    let mut held = Spool::new(budget.clone());
    add(&mut held, &t, 0..4, 50);
    assert!(!held.spilled());
    assert!(budget.used() > 0);
    let mut s = Spool::new(budget.clone());
    for i in 0..200 {
        add(
            &mut s,
            &t,
            i * 10..i * 10 + 10,
            1000 + u64::from(i as u32) * 100,
        );
    }
    assert!(s.spilled(), "the budget is shared: the second spool spills");
    assert!(!held.spilled());
    let used = budget.used();
    let (rows, _) = drain(s, 1000);
    assert_eq!(rows.len(), 2000);
    assert!(rows.windows(2).all(|w| w[0].0 + 1 == w[1].0));
    assert_eq!(budget.used(), used, "a spilled spool held nothing counted");
    drop(held);
    assert_eq!(budget.used(), 0);
}

#[test]
fn savepoints_truncate_and_keep_what_persisted() {
    for budget in [1 << 20, 0] {
        let t = table("t");
        let m = table("m");
        let mut s = Spool::new(Budget::new(budget, None));
        add(&mut s, &t, 0..2, 100);
        let a = s.mark();
        add(&mut s, &t, 2..4, 200);
        add(&mut s, &m, 4..5, 300);
        add(&mut s, &t, 5..6, 400);
        assert_eq!(s.spilled(), budget == 0);
        let since: Vec<String> = s
            .tables_since(a)
            .unwrap()
            .iter()
            .map(|t| t.schema.table.clone())
            .collect();
        assert_eq!(since, ["t", "m"]);
        assert_eq!(s.rollback_to(a, std::slice::from_ref(&m)).unwrap(), 3);
        add(&mut s, &t, 6..7, 500);
        let (rows, _) = drain(s, 100);
        assert_eq!(
            rows,
            vec![(0, 0, 100), (1, 1, 100), (4, 0, 300), (6, 0, 500)],
            "budget {budget}"
        );
    }
}

#[test]
fn extend_appends_another_group() {
    let t = table("t");
    let mut a = Spool::default();
    add(&mut a, &t, 0..2, 100);
    let mut b = Spool::new(Budget::new(0, None));
    add(&mut b, &t, 2..3, 200);
    a.extend(&mut b).unwrap();
    assert_eq!(a.rows(), 3);
    let (rows, _) = drain(a, 10);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2]);
}

/// Regression (issue 10, the memory row): a spool grew to its budget by
/// doubling, each doubling leaving the old block to the allocator, which
/// kept it resident: a 64 MiB budget held about twice that. Past the size
/// of a spare buffer it now reserves up to the budget at once.
#[test]
fn a_spool_grows_to_its_budget_in_one_step_past_a_spare_buffer() {
    let t = table("t");
    let limit = 5 * MAX_SPARE;
    let mut s = Spool::new(Budget::new(limit, None));
    let mut offset = 4;
    // rows events of 10,000 rows (~90 KB) until well past the spare size
    // (one doubling may still take the buffer past it)
    while s.mem.len() <= 2 * MAX_SPARE {
        add(&mut s, &t, 0..10_000, offset);
        offset += 100_000;
    }
    assert!(!s.spilled());
    assert!(
        s.mem.capacity() <= limit + 100_000,
        "capacity {} for a limit of {limit}: grown past the budget",
        s.mem.capacity()
    );
    assert!(
        s.mem.capacity() >= limit - 100_000,
        "capacity {}: not reserved up to the budget ({limit})",
        s.mem.capacity()
    );
}

/// A small group's chunk is allocated for its rows, not for the chunk
/// size: one-row transactions come one chunk each.
#[test]
fn a_small_groups_chunk_holds_room_for_its_rows_only() {
    let t = table("t");
    let mut s = Spool::default();
    add(&mut s, &t, 0..1, 100);
    let mut r = s.release(0).unwrap();
    let chunk = r.chunk(100, 1 << 20).unwrap();
    assert_eq!(chunk.len(), 1);
    assert_eq!(chunk.capacity(), 1);
    assert!(r.chunk(100, 1 << 20).unwrap().is_empty());
}
