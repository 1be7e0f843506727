//! A corrupted binlog event stops the pipeline with the position, instead of
//! decoding into wrong values (mysql_common verifies no checksum). Its own
//! test binary: it corrupts a binlog file of its own source server.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};

use common::*;
use mysql_async::prelude::Queryable;
use reshard_testkit::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_a_rows_event_is_a_checksum_error_with_position() {
    let c = cluster();
    let s = Scenario::create(c, "cksum").unwrap();
    migrate(&s);
    let mut src = s.source().await.unwrap();
    src.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let (file, start) = s.source_head().await.unwrap();
    src.query_drop("INSERT INTO orders (id, buyer_id, note) VALUES (1, 1, 'aaaaaaaaaaaaaaaa')")
        .await
        .unwrap();
    src.query_drop("FLUSH BINARY LOGS").await.unwrap();
    // find the rows event and flip a byte inside its row image
    let events: Vec<mysql_async::Row> = src
        .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
        .await
        .unwrap();
    let (pos, end) = events
        .iter()
        .find_map(|r| {
            let ty: String = r.get(2)?;
            (ty.starts_with("Write_rows"))
                .then(|| (r.get::<u64, _>(1).unwrap(), r.get::<u64, _>(4).unwrap()))
        })
        .expect("a Write_rows event");
    let path = c.source.datadir().join(&file);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let at = end - 8; // inside the row image, before the 4 checksum bytes
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x20]).unwrap();
    f.sync_all().unwrap();

    let from = format!("{file}:{start}");
    let out = reshard(&s, &["run", "--from", &from]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        err.contains(&format!("{file}:{pos}")),
        "names the event position {file}:{pos}: {err}"
    );
}
