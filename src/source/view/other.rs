//! The events without rows, for the view: what each says, in a line, and
//! how it relates to the transaction around it.

use mysql_common::binlog::events::{Event, EventData, GtidEvent};

use super::names::uuid;
use super::{EventRecord, Txn};

/// `LOG_EVENT_IGNORABLE_F`: a reader that does not know the event may skip it.
const FL_IGNORABLE: u16 = 0x80;
/// MariaDB GTID flags.
const FL_STANDALONE: u8 = 1;
const FL_PREPARED_XA: u8 = 64;
const FL_COMPLETED_XA: u8 = 128;

/// Every event but QUERY, TABLE_MAP and rows events.
pub(super) fn describe(
    event: &Event,
    rec: &mut EventRecord,
    in_txn: &mut bool,
) -> Result<Txn, String> {
    let ty = event.header().event_type_raw();
    if (160..=164).contains(&ty) {
        return mariadb(event.data(), rec, in_txn);
    }
    let data = event.read_data().map_err(|e| e.to_string())?;
    let Some(data) = data else {
        if event.header().flags_raw() & FL_IGNORABLE != 0 {
            rec.info = Some("unknown event type, flagged ignorable".into());
            return Ok(Txn::Inside);
        }
        return Err(format!("unknown event type {ty}"));
    };
    let mut txn = Txn::Inside;
    rec.info = match data {
        EventData::FormatDescriptionEvent(f) => {
            let alg = match event.footer().get_checksum_alg() {
                Ok(Some(a)) => format!("{a:?}")
                    .trim_start_matches("BINLOG_CHECKSUM_ALG_")
                    .to_string(),
                Ok(None) => "none (before 5.6.1)".into(),
                Err(e) => e.to_string(),
            };
            Some(format!(
                "server {}, binlog version {}, checksum {alg}",
                f.server_version().trim_end_matches(['\0', ' ']),
                f.binlog_version() as u8
            ))
        }
        EventData::XidEvent(x) => {
            txn = Txn::Ends;
            Some(format!("COMMIT /* xid={} */", x.xid))
        }
        EventData::RotateEvent(r) => Some(format!("next file {}:{}", r.name(), r.position())),
        EventData::GtidEvent(g) => {
            rec.gtid = Some(mysql_gtid(&g));
            txn = Txn::Gtid;
            Some(format!(
                "last_committed={} sequence_number={}",
                g.last_committed(),
                g.sequence_number()
            ))
        }
        EventData::AnonymousGtidEvent(_) => {
            rec.gtid = Some("ANONYMOUS".into());
            txn = Txn::Gtid;
            None
        }
        EventData::PreviousGtidsEvent(p) => Some(
            p.sids()
                .iter()
                .map(|s| {
                    let tag = s.tag().map(|t| format!(":{t}")).unwrap_or_default();
                    let ranges: Vec<String> = s
                        .intervals()
                        .iter()
                        .map(|i| match i.end().wrapping_sub(i.start()) {
                            1 => i.start().to_string(),
                            _ => format!("{}-{}", i.start(), i.end().saturating_sub(1)),
                        })
                        .collect();
                    format!("{}{tag}:{}", uuid(&s.uuid()), ranges.join(":"))
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        EventData::IncidentEvent(i) => Some(format!(
            "{}: {}",
            i.incident_type()
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|e| format!("unknown incident type {}", e.0)),
            i.message()
        )),
        EventData::RowsQueryEvent(q) => Some(q.query().into_owned()),
        EventData::IntvarEvent(i) => Some(format!("{:?}={}", i.subtype(), i.value())),
        EventData::RandEvent(r) => Some(format!("{r:?}")),
        EventData::UserVarEvent(u) => Some(format!("@`{}`", u.name())),
        EventData::XaPrepareLogEvent(raw) => {
            txn = Txn::Ends;
            Some(xa_prepare(&raw))
        }
        EventData::TransactionPayloadEvent(t) => Some(format!(
            "{:?}, {} byte(s) inflating to {}",
            t.algorithm(),
            t.payload_size(),
            t.uncompressed_size()
        )),
        EventData::BeginLoadQueryEvent(_) | EventData::ExecuteLoadQueryEvent(_) => {
            Some("statement-based LOAD DATA".into())
        }
        _ => None,
    };
    Ok(txn)
}

fn mysql_gtid(g: &GtidEvent) -> String {
    match g.tag() {
        Some(tag) => format!("{}:{tag}:{}", uuid(&g.sid()), g.gno()),
        None => format!("{}:{}", uuid(&g.sid()), g.gno()),
    }
}

/// MySQL's XA_PREPARE: one-phase flag, format id, gtrid and bqual.
fn xa_prepare(raw: &[u8]) -> String {
    let int = |at: usize| -> Option<usize> {
        let b = raw.get(at..at + 4)?;
        usize::try_from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    let (Some(format), Some(g), Some(b)) = (int(1), int(5), int(9)) else {
        return "XA PREPARE (truncated XID)".into();
    };
    let hex = |x: &[u8]| x.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match (raw.get(13..13 + g), raw.get(13 + g..13 + g + b)) {
        (Some(gtrid), Some(bqual)) => {
            let one = if raw.first() == Some(&1) {
                " ONE PHASE"
            } else {
                ""
            };
            format!(
                "XA PREPARE X'{}',X'{}',{format}{one}",
                hex(gtrid),
                hex(bqual)
            )
        }
        _ => "XA PREPARE (truncated XID)".into(),
    }
}

/// MariaDB's own events (160–164).
fn mariadb(data: &[u8], rec: &mut EventRecord, in_txn: &mut bool) -> Result<Txn, String> {
    let short = || {
        format!(
            "{} body of {} byte(s) is truncated",
            rec.type_name,
            data.len()
        )
    };
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        data.get(at..at + 8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    match rec.type_code {
        160 => rec.info = Some(String::from_utf8_lossy(data).into_owned()),
        161 => {
            let len = u32_at(0).ok_or_else(short)? as usize;
            let name = data.get(4..4 + len).ok_or_else(short)?;
            rec.info = Some(format!(
                "binlog checkpoint {}",
                String::from_utf8_lossy(name)
            ));
        }
        162 => {
            let seq = u64_at(0).ok_or_else(short)?;
            let domain = u32_at(8).ok_or_else(short)?;
            let flags = *data.get(12).ok_or_else(short)?;
            rec.gtid = Some(format!("{domain}-{}-{seq}", rec.server_id));
            let mut notes = Vec::new();
            if flags & FL_STANDALONE != 0 {
                notes.push("standalone");
                *in_txn = false;
            } else {
                *in_txn = true;
            }
            if flags & FL_PREPARED_XA != 0 {
                notes.push("XA prepared");
            }
            if flags & FL_COMPLETED_XA != 0 {
                notes.push("XA completed");
            }
            rec.info = (!notes.is_empty()).then(|| notes.join(", "));
            return Ok(Txn::Gtid);
        }
        163 => {
            let count = (u32_at(0).ok_or_else(short)? & 0x0fff_ffff) as usize;
            let mut list = Vec::with_capacity(count.min(1024));
            for i in 0..count {
                let at = 4 + i * 16;
                let (Some(d), Some(s), Some(n)) = (u32_at(at), u32_at(at + 4), u64_at(at + 8))
                else {
                    return Err(short());
                };
                list.push(format!("{d}-{s}-{n}"));
            }
            rec.info = Some(format!("[{}]", list.join(",")));
        }
        _ => rec.info = Some("the events after this one are encrypted".into()),
    }
    Ok(Txn::Inside)
}
