//! The policy's verdicts on hand-made history records (the servers' side
//! is in tests/ddl_policy.rs).

use super::*;
use crate::source::ddl;

fn col(name: &str, column_type: &str, nullable: bool) -> CatalogColumn {
    CatalogColumn {
        name: name.into(),
        data_type: column_type.split('(').next().unwrap_or_default().into(),
        column_type: column_type.into(),
        unsigned: false,
        charset_binary: false,
        nullable,
        decimals: 0,
        precision: 0,
        octets: None,
        labels: Vec::new(),
        collation: column_type
            .starts_with("varchar")
            .then(|| "utf8mb4_general_ci".to_string()),
    }
}

fn rec(cols: Vec<CatalogColumn>, pk: &[&str], create_sql: &str) -> Arc<Record> {
    Arc::new(Record {
        db: "d".into(),
        table: "t".into(),
        position: Position::new("b.000001", 100),
        columns: Columns::Known((cols, pk.iter().map(|s| s.to_string()).collect())),
        create_sql: create_sql.into(),
        note: "test".into(),
    })
}

fn base() -> Vec<CatalogColumn> {
    vec![
        col("id", "int(11)", false),
        col("tenant", "int(11)", true),
        col("note", "varchar(10)", true),
    ]
}

fn policy(mode: OnDdl) -> DdlPolicy {
    let watch = Watch {
        rule_file: "rules/t.toml".into(),
        key: None,
        shard: vec!["tenant".into()],
        version: None,
        target: "t".into(),
        rename: BTreeMap::from([("extra".to_string(), "extra_t".to_string())]),
        exclude: vec!["secret".into()],
        shards: Vec::new(),
    };
    DdlPolicy {
        mode,
        tables: HashMap::from([(("d".to_string(), "t".to_string()), watch)]),
        accepted: Vec::new(),
        config: "reshard.toml".into(),
        command: "run",
        connect_timeout: Duration::from_secs(1),
    }
}

fn verdict(mode: OnDdl, q: &str, after: Option<Arc<Record>>) -> Verdict {
    let p = policy(mode);
    let d = ddl::classify("d", q);
    let start = Position::new("b.000001", 200);
    let end = Position::new("b.000001", 300);
    let ev = Event {
        ddl: &d,
        statement: q,
        start: &start,
        end: &end,
    };
    let t = Touched {
        key: ("d".into(), "t".into()),
        before: Some(rec(base(), &["id"], "")),
        after,
    };
    p.verdict(&ev, &p.tables[&t.key], &t)
}

const ADD_SQL: &str = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `tenant` int(11) DEFAULT NULL,\n  `note` varchar(10) DEFAULT NULL,\n  `extra` varchar(5) DEFAULT 'x',\n  `secret` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";

fn added() -> Arc<Record> {
    let mut cols = base();
    cols.push(col("extra", "varchar(5)", true));
    cols.push(col("secret", "int(11)", true));
    rec(cols, &["id"], ADD_SQL)
}

fn is_halt(v: &Verdict, needle: &str) -> bool {
    matches!(v, Verdict::Halt(why, _) if why.contains(needle))
}

#[test]
fn follow_carries_added_columns_with_their_charset_renamed_and_not_excluded() {
    let v = verdict(
        OnDdl::Follow,
        "ALTER TABLE t ADD extra VARCHAR(5) DEFAULT 'x', ADD secret INT",
        Some(added()),
    );
    assert_eq!(
        v,
        Verdict::Follow(vec![NewColumn {
            name: "extra_t".into(),
            definition: "varchar(5) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci DEFAULT 'x'"
                .into()
        }])
    );
    assert!(is_halt(
        &verdict(OnDdl::Halt, "ALTER TABLE t ADD extra INT", Some(added())),
        "on_ddl = \"halt\""
    ));
    assert!(
        matches!(verdict(OnDdl::Ignore, "ALTER TABLE t ADD extra INT", Some(added())), Verdict::Warn(w) if w.contains("added `extra`"))
    );
}

#[test]
fn follow_refuses_not_null_columns_without_a_default() {
    let mut cols = base();
    cols.push(col("extra", "int(11)", false));
    let sql = "CREATE TABLE `t` (\n  `extra` int(11) NOT NULL,\n)";
    let v = verdict(
        OnDdl::Follow,
        "ALTER TABLE t ADD extra INT NOT NULL",
        Some(rec(cols, &["id"], sql)),
    );
    assert!(is_halt(&v, "NOT NULL without a default"), "{v:?}");
}

#[test]
fn routing_columns_halt_in_every_mode() {
    let mut retyped = base();
    retyped[1] = col("tenant", "bigint(20)", true);
    let mut dropped = base();
    dropped.remove(1);
    let mut rekeyed = base();
    rekeyed[2] = col("note", "varchar(10)", false);
    for mode in [OnDdl::Halt, OnDdl::Follow, OnDdl::Ignore] {
        let v = verdict(
            mode,
            "ALTER TABLE t MODIFY tenant BIGINT",
            Some(rec(retyped.clone(), &["id"], "")),
        );
        assert!(
            is_halt(
                &v,
                "shard expression column `tenant` changed from int(11) NULL to bigint(20) NULL"
            ),
            "{v:?}"
        );
        let v = verdict(
            mode,
            "ALTER TABLE t DROP tenant",
            Some(rec(dropped.clone(), &["id"], "")),
        );
        assert!(is_halt(&v, "`tenant` was dropped or renamed"), "{v:?}");
        let v = verdict(
            mode,
            "ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, note)",
            Some(rec(rekeyed.clone(), &["id", "note"], "")),
        );
        assert!(
            is_halt(&v, "primary key changed from (id) to (id, note)"),
            "{v:?}"
        );
    }
}

#[test]
fn changes_without_columns_go_on_unless_halt() {
    let same = Some(rec(base(), &["id"], ""));
    assert!(matches!(
        verdict(
            OnDdl::Follow,
            "ALTER TABLE t ADD INDEX i (note)",
            same.clone()
        ),
        Verdict::Pass(_)
    ));
    assert!(matches!(
        verdict(OnDdl::Ignore, "CREATE INDEX i ON t (note)", same.clone()),
        Verdict::Pass(_)
    ));
    assert!(is_halt(
        &verdict(OnDdl::Halt, "ALTER TABLE t ADD INDEX i (note)", same),
        "changed no column"
    ));
}

#[test]
fn truncate_drop_and_renames_halt_unless_ignored() {
    let gone = Arc::new(Record {
        columns: Columns::Absent,
        ..(*rec(Vec::new(), &[], "")).clone()
    });
    for (q, after, needle) in [
        ("TRUNCATE TABLE t", None, "TRUNCATE deleted every row"),
        ("DROP TABLE t", Some(gone.clone()), "dropped"),
        (
            "RENAME TABLE t TO t_old, t_new TO t",
            Some(gone.clone()),
            "RENAME TABLE",
        ),
        ("ALTER TABLE t RENAME TO t2", Some(gone), "renamed away"),
    ] {
        for mode in [OnDdl::Halt, OnDdl::Follow] {
            let v = verdict(mode, q, after.clone());
            assert!(is_halt(&v, needle), "{q} {mode:?}: {v:?}");
        }
        assert!(
            matches!(verdict(OnDdl::Ignore, q, after.clone()), Verdict::Warn(_)),
            "{q}"
        );
    }
}

#[test]
fn a_table_created_anew_is_no_change() {
    let p = policy(OnDdl::Halt);
    let d = ddl::classify("d", "CREATE TABLE t (id INT PRIMARY KEY)");
    let (start, end) = (Position::new("b.000001", 1), Position::new("b.000001", 2));
    let ev = Event {
        ddl: &d,
        statement: "",
        start: &start,
        end: &end,
    };
    let t = Touched {
        key: ("d".into(), "t".into()),
        before: None,
        after: Some(rec(base(), &["id"], "")),
    };
    assert!(matches!(
        p.verdict(&ev, &p.tables[&t.key], &t),
        Verdict::Pass(_)
    ));
}

#[test]
fn a_halt_names_position_statement_and_the_way_past() {
    let h = DdlHalt {
        table: "d.t".into(),
        start: Position::new("b.000002", 400),
        end: Position::new("b.000002", 500),
        statement: "TRUNCATE t".into(),
        why: "because.".into(),
        fix: "do this.".into(),
        config: "/etc/r.toml".into(),
        command: "run",
    };
    let msg = h.to_string();
    assert!(
        msg.contains("DDL on d.t at b.000002:400 (ends at b.000002:500): `TRUNCATE t`"),
        "{msg}"
    );
    assert!(
        msg.ends_with("`reshard run --config /etc/r.toml --accept-ddl b.000002:400`"),
        "{msg}"
    );
    let replay = DdlHalt {
        command: "replay",
        ..h
    };
    assert!(
        replay.to_string().ends_with(
            "`reshard replay --config /etc/r.toml --accept-ddl b.000002:400` (with the replay's other options as before)"
        ),
        "{replay}"
    );
}
