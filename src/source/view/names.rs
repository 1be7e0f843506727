//! Event type names as `inspect` prints them: mysqlbinlog's vocabulary in
//! upper case, `_V1`/`_V2` for the two rows-event generations, and the
//! MariaDB-only types prefixed `MARIADB_`.

/// The name of a raw event type; `UNKNOWN_<n>` for numbers no server uses.
pub fn event_type_name(ty: u8) -> String {
    let known = match ty {
        0 => "UNKNOWN",
        1 => "START_V3",
        2 => "QUERY",
        3 => "STOP",
        4 => "ROTATE",
        5 => "INTVAR",
        6 => "LOAD",
        7 => "SLAVE",
        8 => "CREATE_FILE",
        9 => "APPEND_BLOCK",
        10 => "EXEC_LOAD",
        11 => "DELETE_FILE",
        12 => "NEW_LOAD",
        13 => "RAND",
        14 => "USER_VAR",
        15 => "FORMAT_DESCRIPTION",
        16 => "XID",
        17 => "BEGIN_LOAD_QUERY",
        18 => "EXECUTE_LOAD_QUERY",
        19 => "TABLE_MAP",
        20 => "PRE_GA_WRITE_ROWS",
        21 => "PRE_GA_UPDATE_ROWS",
        22 => "PRE_GA_DELETE_ROWS",
        23 => "WRITE_ROWS_V1",
        24 => "UPDATE_ROWS_V1",
        25 => "DELETE_ROWS_V1",
        26 => "INCIDENT",
        27 => "HEARTBEAT",
        28 => "IGNORABLE",
        29 => "ROWS_QUERY",
        30 => "WRITE_ROWS_V2",
        31 => "UPDATE_ROWS_V2",
        32 => "DELETE_ROWS_V2",
        33 => "GTID",
        34 => "ANONYMOUS_GTID",
        35 => "PREVIOUS_GTIDS",
        36 => "TRANSACTION_CONTEXT",
        37 => "VIEW_CHANGE",
        38 => "XA_PREPARE",
        39 => "PARTIAL_UPDATE_ROWS",
        40 => "TRANSACTION_PAYLOAD",
        41 => "HEARTBEAT_V2",
        42 => "GTID_TAGGED",
        160 => "MARIADB_ANNOTATE_ROWS",
        161 => "MARIADB_BINLOG_CHECKPOINT",
        162 => "MARIADB_GTID",
        163 => "MARIADB_GTID_LIST",
        164 => "MARIADB_START_ENCRYPTION",
        165 => "MARIADB_QUERY_COMPRESSED",
        166 => "MARIADB_WRITE_ROWS_COMPRESSED_V1",
        167 => "MARIADB_UPDATE_ROWS_COMPRESSED_V1",
        168 => "MARIADB_DELETE_ROWS_COMPRESSED_V1",
        169 => "MARIADB_WRITE_ROWS_COMPRESSED",
        170 => "MARIADB_UPDATE_ROWS_COMPRESSED",
        171 => "MARIADB_DELETE_ROWS_COMPRESSED",
        _ => return format!("UNKNOWN_{ty}"),
    };
    known.to_string()
}

/// Formats a 16-byte server UUID as MySQL prints it.
pub fn uuid(sid: &[u8; 16]) -> String {
    let h: Vec<String> = sid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(event_type_name(30), "WRITE_ROWS_V2");
        assert_eq!(event_type_name(162), "MARIADB_GTID");
        assert_eq!(event_type_name(100), "UNKNOWN_100");
        let sid = [
            0x55, 0x77, 0x89, 0x04, 0x02, 0x99, 0x11, 0xf1, 0xb1, 0xb8, 0x4e, 0xf0, 0xc4, 0x95,
            0x6f, 0xeb,
        ];
        assert_eq!(uuid(&sid), "55778904-0299-11f1-b1b8-4ef0c4956feb");
    }
}
