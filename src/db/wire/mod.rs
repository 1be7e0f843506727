//! Connections that speak the MySQL protocol themselves, for the two
//! places every row passes through: the initial copy's page reads, and a
//! lane's batches of plain upserts (`docs/architecture.md`, "Batches
//! without a transaction").
//!
//! # Why
//!
//! Through the driver each result row cost a dozen allocations before
//! reshard saw it: the driver tries to parse every row packet as an OK and
//! as an ERR packet first (two `io::Error`s built and dropped per row),
//! then builds a `Row` holding an `Arc` of the columns. That was over a
//! quarter of reshard's CPU in the copy (`BENCHMARKS.md`). Here a page is
//! one `COM_STMT_EXECUTE` whose binary rows are decoded straight from a
//! reused read buffer ([`WireConn::rows`]). On the write side the driver
//! takes parameters by value, so a lane cloned every value it bound;
//! [`ParamBuf`] encodes them by reference ([`WireConn::exec_bound`]). On
//! MariaDB a batch goes out as arrays of the single-row statement
//! ([`BulkBuf`], [`WireConn::exec_bulk`]), which costs the server less
//! per row than a multi-row statement (`docs/architecture.md`, "Batches
//! without a transaction").
//!
//! # Why it reads and writes what the driver does
//!
//! The values come from the same binary protocol, decoded as the driver
//! decodes them (mysql_common's `Value::deserialize_bin`, per column type
//! and flags; [`row`] follows its rules and is checked against it), and
//! go out in mysql_common's encoding of each value, on a session set up by
//! the same statements ([`crate::db::opts`]: UTC, binary character set,
//! READ COMMITTED). What differs is only who frames the packets.
//!
//! # What it does not do
//!
//! TLS and authentication beyond a scrambled password are the driver's
//! ([`handshake`]): [`WireConn::connect`] answers
//! [`WireError::Unsupported`] and the caller reads through the driver.
//! A server error or a lost connection becomes the driver's error
//! ([`WireError::into_driver`]), so it is classified transient or
//! definite ([`crate::db::classify`]) as it would be on the driver's
//! connection; a malformed packet is definite ([`db_error`]). See
//! `docs/architecture.md`, "Copy and stream" (reading on connections of
//! its own).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use mysql_common::constants::{
    CapabilityFlags, ColumnFlags, ColumnType, Command, MariadbCapabilities, StmtBulkExecuteFlags,
};
use mysql_common::io::{BufMutExt, ParseBuf};
use mysql_common::packets::{Column, ErrPacket, StmtPacket};
use mysql_common::proto::MySerialize;
use mysql_common::value::Value;
use tokio::net::TcpStream;

use crate::config::{Endpoint, TlsMode};
use crate::db::{self, DbError, Session};

mod frame;
mod handshake;
mod row;

use frame::Framed;
use row::decode_row;

/// Statements kept prepared on one connection.
const STMT_CACHE: usize = 16;
/// The `max_packet_size` we announce (the server's own limit applies).
const MAX_PACKET: u32 = 1 << 30;

/// Why a wire connection or statement failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("ERROR {code} ({state}): {message}")]
    Server {
        code: u16,
        state: String,
        message: String,
    },
    /// A packet that does not parse: retrying would read it again.
    #[error("a malformed packet from the server: {0}")]
    Protocol(String),
    /// Something only the driver speaks: read through it instead.
    #[error("not spoken here: {0}")]
    Unsupported(&'static str),
}

impl WireError {
    /// A parse failure of a packet.
    pub fn protocol(e: io::Error) -> WireError {
        WireError::Protocol(e.to_string())
    }

    /// The same failure as the driver's error, so that it is classified
    /// like one.
    pub fn into_driver(self) -> mysql_async::Error {
        match self {
            WireError::Io(e) => mysql_async::Error::Io(mysql_async::IoError::Io(e)),
            WireError::Server {
                code,
                state,
                message,
            } => mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message,
                state,
            }),
            WireError::Protocol(_) | WireError::Unsupported(_) => {
                mysql_async::Error::Io(mysql_async::IoError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    self.to_string(),
                )))
            }
        }
    }
}

/// An ERR packet as a [`WireError`].
fn server_error(payload: &[u8], caps: CapabilityFlags) -> WireError {
    match ParseBuf(payload).parse::<ErrPacket<'_>>(caps) {
        Ok(ErrPacket::Error(e)) => WireError::Server {
            code: e.error_code(),
            state: e
                .sql_state_ref()
                .map(|s| s.as_str().into_owned())
                .unwrap_or_default(),
            message: e.message_str().into_owned(),
        },
        Ok(ErrPacket::Progress(_)) | Err(_) => WireError::Protocol("an error packet".into()),
    }
}

/// How to decode a column's values: its type and flags.
type ColumnKind = (ColumnType, ColumnFlags);

/// A source connection of our own (see the module docs).
pub struct WireConn {
    io: Framed<TcpStream>,
    caps: CapabilityFlags,
    /// Statements prepared on this connection: their ids and parameter
    /// counts, by text.
    prepared: HashMap<String, (u32, usize)>,
    /// The parameters being bound (kept: its memory is reused).
    params: ParamBuf,
    /// The server executes a statement for many parameter rows at once
    /// (MariaDB's `COM_STMT_BULK_EXECUTE`).
    bulk: bool,
    /// The parameter rows being bound for [`WireConn::exec_bulk`].
    bulk_params: BulkBuf,
}

impl WireConn {
    /// Connects and logs in as the endpoint says, within `budget`, and
    /// sets the session up as [`crate::db::connect`] does for `session`.
    pub async fn connect(
        ep: &Endpoint,
        session: Session,
        budget: Duration,
    ) -> Result<WireConn, WireError> {
        let opts = db::opts(ep, session, None).map_err(|_| WireError::Unsupported("the URL"))?;
        if opts.socket().is_some() || opts.compression().is_some() {
            return Err(WireError::Unsupported("a socket path or compression"));
        }
        let addr = (opts.ip_or_hostname().to_string(), opts.tcp_port());
        let connected = tokio::time::timeout(budget, async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut io = Framed::new(stream);
            let login = handshake::Login {
                user: opts.user(),
                pass: opts.pass(),
                db: opts.db_name(),
                tls_disabled: ep.tls.mode == TlsMode::Disabled,
            };
            let caps = handshake::login(&mut io, &login).await?;
            Ok::<_, WireError>((io, caps))
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer while connecting"))??;
        let (io, (caps, ext)) = connected;
        let mut conn = WireConn {
            io,
            caps,
            bulk: ext.contains(MariadbCapabilities::MARIADB_CLIENT_STMT_BULK_OPERATIONS),
            bulk_params: BulkBuf::default(),
            prepared: Default::default(),
            params: ParamBuf::default(),
        };
        for stmt in opts.init() {
            conn.query_drop(stmt).await?;
        }
        Ok(conn)
    }

    /// Runs a statement that returns no rows (`COM_QUERY`).
    pub async fn query_drop(&mut self, sql: &str) -> Result<(), WireError> {
        self.command(Command::COM_QUERY, sql.as_bytes()).await?;
        self.expect_ok().await
    }

    /// Sends one command packet.
    async fn command(&mut self, cmd: Command, body: &[u8]) -> Result<(), WireError> {
        self.io.reset_seq();
        Ok(self
            .io
            .write_with(|out| {
                out.push(cmd as u8);
                out.extend_from_slice(body);
            })
            .await?)
    }

    /// Reads the next packet, skipping MariaDB's progress reports.
    async fn next(&mut self) -> Result<(), WireError> {
        loop {
            self.io.read().await?;
            let p = self.io.payload();
            // an ERR packet with code 0xFFFF is a progress report
            if !(p.len() > 3 && p[0] == 0xFF && p[1] == 0xFF && p[2] == 0xFF) {
                return Ok(());
            }
        }
    }

    /// An OK packet, or the server's error.
    async fn expect_ok(&mut self) -> Result<(), WireError> {
        self.next().await?;
        match self.io.payload().first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => Err(server_error(self.io.payload(), self.caps)),
            // the connection is out of step: its user drops it
            _ => Err(WireError::Protocol(
                "rows where a statement should return none".into(),
            )),
        }
    }

    /// Reads `n` column definitions and, without `CLIENT_DEPRECATE_EOF`,
    /// the EOF packet after them; returns how to decode each column.
    async fn column_defs(&mut self, n: usize) -> Result<Vec<ColumnKind>, WireError> {
        let mut cols = Vec::with_capacity(n);
        for _ in 0..n {
            self.next().await?;
            let c: Column = ParseBuf(self.io.payload())
                .parse(())
                .map_err(WireError::protocol)?;
            cols.push((c.column_type(), c.flags()));
        }
        if n > 0 && !self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
            self.next().await?;
        }
        Ok(cols)
    }

    /// Prepares `sql` once per connection. At most [`STMT_CACHE`] stay
    /// prepared (a copy of thousands of tables must not reach the
    /// server's `max_prepared_stmt_count`): beyond, all are closed.
    async fn prepare(&mut self, sql: &str) -> Result<(u32, usize), WireError> {
        if let Some(&p) = self.prepared.get(sql) {
            return Ok(p);
        }
        if self.prepared.len() >= STMT_CACHE {
            for (_, (id, _)) in std::mem::take(&mut self.prepared) {
                // COM_STMT_CLOSE has no answer
                self.command(Command::COM_STMT_CLOSE, &id.to_le_bytes())
                    .await?;
            }
        }
        self.command(Command::COM_STMT_PREPARE, sql.as_bytes())
            .await?;
        self.next().await?;
        if self.io.payload().first() == Some(&0xFF) {
            return Err(server_error(self.io.payload(), self.caps));
        }
        let stmt: StmtPacket = ParseBuf(self.io.payload())
            .parse(())
            .map_err(WireError::protocol)?;
        let (id, params) = (stmt.statement_id(), usize::from(stmt.num_params()));
        self.column_defs(params).await?;
        self.column_defs(usize::from(stmt.num_columns())).await?;
        self.prepared.insert(sql.to_string(), (id, params));
        Ok((id, params))
    }

    /// The parameters of the next [`WireConn::exec_bound`], emptied.
    pub fn bind(&mut self) -> &mut ParamBuf {
        self.params.clear();
        &mut self.params
    }

    /// Executes `sql` (prepared once per connection) with the parameters
    /// bound since [`WireConn::bind`], for a statement that returns no
    /// rows.
    pub async fn exec_bound(&mut self, sql: &str) -> Result<(), WireError> {
        self.execute(sql).await?;
        self.expect_ok().await
    }

    /// Sends `COM_STMT_EXECUTE` of `sql` (prepared once per connection)
    /// with the parameters bound since [`WireConn::bind`].
    async fn execute(&mut self, sql: &str) -> Result<(), WireError> {
        let (id, want) = self.prepare(sql).await?;
        let params = &self.params;
        if want != params.count {
            return Err(WireError::Protocol(format!(
                "{} parameters bound to a statement of {want}",
                params.count
            )));
        }
        self.io.reset_seq();
        self.io
            .write_with(|body| {
                body.push(Command::COM_STMT_EXECUTE as u8);
                body.extend_from_slice(&id.to_le_bytes());
                // no cursor, one iteration
                body.push(0);
                body.extend_from_slice(&1u32.to_le_bytes());
                params.write_to(body);
            })
            .await?;
        Ok(())
    }

    /// Whether the server executes a statement for many parameter rows
    /// at once ([`WireConn::exec_bulk`]).
    pub fn has_bulk(&self) -> bool {
        self.bulk
    }

    /// The parameter rows of the next [`WireConn::exec_bulk`], emptied,
    /// for a statement of `width` parameters.
    pub fn bind_bulk(&mut self, width: usize) -> &mut BulkBuf {
        self.bulk_params.reset(width);
        &mut self.bulk_params
    }

    /// Executes `sql` (prepared once per connection) once per parameter
    /// row bound since [`WireConn::bind_bulk`], in one MariaDB
    /// `COM_STMT_BULK_EXECUTE`: the rows are sent as arrays, each column
    /// with one type, and the server runs the statement over them in one
    /// call. Needs [`WireConn::has_bulk`] and rows whose columns each
    /// hold one type ([`BulkBuf::is_uniform`]).
    pub async fn exec_bulk(&mut self, sql: &str) -> Result<(), WireError> {
        if !self.bulk {
            return Err(WireError::Unsupported(
                "array binding (COM_STMT_BULK_EXECUTE)",
            ));
        }
        let (id, want) = self.prepare(sql).await?;
        let rows = &self.bulk_params;
        if want != rows.width || !rows.is_uniform() || rows.col != 0 {
            return Err(WireError::Protocol(format!(
                "rows of {} parameters (uniform: {}) bound to a statement of {want}",
                rows.width,
                rows.is_uniform()
            )));
        }
        self.io.reset_seq();
        self.io
            .write_with(|body| {
                body.push(Command::COM_STMT_BULK_EXECUTE as u8);
                body.extend_from_slice(&id.to_le_bytes());
                let flags = StmtBulkExecuteFlags::SEND_TYPES_TO_SERVER;
                body.extend_from_slice(&flags.bits().to_le_bytes());
                rows.write_to(body);
            })
            .await?;
        self.expect_ok().await
    }

    /// Pings the server (`COM_PING`).
    pub async fn ping(&mut self) -> Result<(), WireError> {
        self.command(Command::COM_PING, &[]).await?;
        self.expect_ok().await
    }

    /// Executes `sql` (prepared once per connection) with `params` and
    /// returns its rows, each a vector of its values in column order
    /// (`NULL` as [`Value::NULL`]).
    pub async fn rows(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, WireError> {
        let bound = self.bind();
        params.iter().for_each(|v| bound.value(v));
        self.execute(sql).await?;
        self.next().await?;
        match self.io.payload().first() {
            Some(0xFF) => return Err(server_error(self.io.payload(), self.caps)),
            Some(0x00) => return Ok(Vec::new()),
            _ => {}
        }
        // the column count, then the definitions (read each time: the
        // server prepares the statement again after a DDL)
        let n = ParseBuf(self.io.payload())
            .checked_eat_lenenc_int()
            .ok_or_else(malformed)?;
        let n = usize::try_from(n).map_err(|_| malformed())?;
        let columns = self.column_defs(n).await?;
        let mut out = Vec::new();
        loop {
            self.next().await?;
            let p = self.io.payload();
            match p.first() {
                // a binary row starts with 0x00; 0xFE ends the rows
                Some(0x00) => {}
                Some(0xFE) if p.len() < 0xFF_FFFF => return Ok(out),
                Some(0xFF) => return Err(server_error(p, self.caps)),
                _ => return Err(malformed()),
            }
            out.push(decode_row(p, &columns)?);
        }
    }

    /// Says goodbye (`COM_QUIT`) and closes the connection.
    pub async fn close(mut self) {
        let _ = self.command(Command::COM_QUIT, &[]).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.io.into_inner()).await;
    }
}

/// The parameters of one statement execution, bound by reference: each
/// value is written in the binary protocol's encoding as it is bound, so
/// nothing is cloned. The encoding of a [`Value`] (its type code and
/// bytes) is mysql_common's, as the driver writes it.
#[derive(Debug, Default)]
pub struct ParamBuf {
    count: usize,
    nulls: Vec<u8>,
    types: Vec<u8>,
    values: Vec<u8>,
}

impl ParamBuf {
    /// Empties the buffer, keeping its memory.
    pub fn clear(&mut self) {
        self.count = 0;
        self.nulls.clear();
        self.types.clear();
        self.values.clear();
    }

    /// Binds the next parameter.
    pub fn value(&mut self, v: &Value) {
        let i = self.next_slot();
        self.types.extend_from_slice(&param_type(v));
        match v {
            Value::NULL => self.nulls[i / 8] |= 1 << (i % 8),
            v => v.serialize(&mut self.values),
        }
    }

    /// Binds the next parameter as a string of `bytes`.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.next_slot();
        self.types
            .extend_from_slice(&[ColumnType::MYSQL_TYPE_VAR_STRING as u8, 0]);
        self.values.put_lenenc_str(bytes);
    }

    fn next_slot(&mut self) -> usize {
        let i = self.count;
        self.count += 1;
        if i / 8 >= self.nulls.len() {
            self.nulls.push(0);
        }
        i
    }

    /// The parameter block of `COM_STMT_EXECUTE`: the NULL bitmap, "new
    /// parameters bound", the types, the values.
    fn write_to(&self, out: &mut Vec<u8>) {
        if self.count == 0 {
            return;
        }
        out.extend_from_slice(&self.nulls);
        out.push(1);
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.values);
    }
}

/// Parameter rows for [`WireConn::exec_bulk`], bound by reference: each
/// value is written as it is bound, after its indicator byte (0: a value
/// follows; 1: NULL). Each column's type is its first non-NULL value's;
/// a later value of another type makes the rows not uniform (a derived
/// column may yield an integer in one row and a string in the next),
/// and the caller writes them another way.
#[derive(Debug, Default)]
pub struct BulkBuf {
    width: usize,
    /// The column of the next value.
    col: usize,
    rows: usize,
    /// Each column's type code and unsigned flag, once a value set it.
    types: Vec<Option<[u8; 2]>>,
    values: Vec<u8>,
    uniform: bool,
}

impl BulkBuf {
    fn reset(&mut self, width: usize) {
        self.width = width;
        self.col = 0;
        self.rows = 0;
        self.types.clear();
        self.types.resize(width, None);
        self.values.clear();
        self.uniform = width > 0;
    }

    /// Binds the next parameter (rows are filled one after the other).
    pub fn value(&mut self, v: &Value) {
        if let Value::NULL = v {
            self.values.push(1);
        } else {
            self.typed(param_type(v));
            v.serialize(&mut self.values);
        }
        self.advance();
    }

    /// Binds the next parameter as a string of `bytes`.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.typed(STRING_PARAM);
        self.values.put_lenenc_str(bytes);
        self.advance();
    }

    /// Checks the next value's type against its column's, and writes
    /// its indicator (a value follows).
    fn typed(&mut self, ty: [u8; 2]) {
        match self.types.get_mut(self.col) {
            Some(Some(t)) if *t != ty => self.uniform = false,
            Some(Some(_)) => {}
            Some(slot @ None) => *slot = Some(ty),
            None => self.uniform = false,
        }
        self.values.push(0);
    }

    fn advance(&mut self) {
        self.col += 1;
        if self.col >= self.width {
            self.col = 0;
            self.rows += 1;
        }
    }

    /// Whether every column's values have one type.
    pub fn is_uniform(&self) -> bool {
        self.uniform
    }

    /// How many complete rows are bound.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The bytes the rows take so far (the types come on top: two bytes
    /// a column).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no value is bound.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Takes back the last complete row, which started at byte `start`
    /// ([`BulkBuf::len`] before it was bound). The column types it set
    /// stay: a column whose type only that row set holds NULLs in every
    /// other row, which any type fits.
    pub fn pop_row(&mut self, start: usize) {
        if self.col == 0 && self.rows > 0 && start <= self.values.len() {
            self.values.truncate(start);
            self.rows -= 1;
        }
    }

    /// The types (a column of NULLs only is sent as a string), then the
    /// rows.
    fn write_to(&self, out: &mut Vec<u8>) {
        for t in &self.types {
            out.extend_from_slice(&t.unwrap_or(STRING_PARAM));
        }
        out.extend_from_slice(&self.values);
    }
}

/// The type code and flags of a string parameter.
const STRING_PARAM: [u8; 2] = [ColumnType::MYSQL_TYPE_VAR_STRING as u8, 0];

/// The type code and unsigned flag a value is sent with.
fn param_type(v: &Value) -> [u8; 2] {
    let (ty, unsigned) = match v {
        Value::NULL => (ColumnType::MYSQL_TYPE_NULL, false),
        Value::Bytes(_) => (ColumnType::MYSQL_TYPE_VAR_STRING, false),
        Value::Int(_) => (ColumnType::MYSQL_TYPE_LONGLONG, false),
        Value::UInt(_) => (ColumnType::MYSQL_TYPE_LONGLONG, true),
        Value::Float(_) => (ColumnType::MYSQL_TYPE_FLOAT, false),
        Value::Double(_) => (ColumnType::MYSQL_TYPE_DOUBLE, false),
        Value::Date(..) => (ColumnType::MYSQL_TYPE_DATETIME, false),
        Value::Time(..) => (ColumnType::MYSQL_TYPE_TIME, false),
    };
    [ty as u8, if unsigned { 0x80 } else { 0 }]
}

fn malformed() -> WireError {
    WireError::Protocol("a result row".into())
}

/// A wire failure as the copy reports it: a malformed packet is definite
/// (reading it again reads the same bytes), the rest as the driver's
/// error would be ([`crate::db::classify`]).
pub fn db_error(server: &str, context: impl Into<String>, e: WireError) -> DbError {
    match e {
        WireError::Protocol(_) => DbError::Unexpected {
            server: server.to_string(),
            context: context.into(),
            message: e.to_string(),
        },
        e => DbError::query(server, context, e.into_driver()),
    }
}

#[cfg(test)]
mod tests {
    use mysql_common::packets::{ComStmtBulkExecuteRequest, ComStmtExecuteRequestBuilder};

    use super::*;

    /// The parameter block is byte for byte the driver's (mysql_common's
    /// `COM_STMT_EXECUTE` request) for values of every kind.
    #[test]
    fn bound_parameters_are_encoded_as_the_driver_encodes_them() {
        let values = vec![
            Value::NULL,
            Value::Int(-5),
            Value::UInt(u64::MAX),
            Value::Bytes(b"\xf1text".to_vec()),
            Value::Bytes(vec![7; 300]),
            Value::Float(1.5),
            Value::Double(-2.25),
            Value::NULL,
            Value::Date(2024, 2, 29, 23, 59, 58, 999_999),
            Value::Time(true, 34, 22, 59, 59, 500_000),
            Value::Bytes(Vec::new()),
        ];
        let (req, long) = ComStmtExecuteRequestBuilder::new(42).build(&values);
        assert!(!long);
        let mut driver = Vec::new();
        req.serialize(&mut driver);

        let mut params = ParamBuf::default();
        for v in &values {
            params.value(v);
        }
        let mut ours = vec![Command::COM_STMT_EXECUTE as u8];
        ours.extend_from_slice(&42u32.to_le_bytes());
        ours.push(0);
        ours.extend_from_slice(&1u32.to_le_bytes());
        params.write_to(&mut ours);
        assert_eq!(ours, driver);

        // a string bound from bytes is a string value
        let mut a = ParamBuf::default();
        a.bytes(b"abc");
        let mut b = ParamBuf::default();
        b.value(&Value::Bytes(b"abc".to_vec()));
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.write_to(&mut x);
        b.write_to(&mut y);
        assert_eq!(x, y);
    }

    fn bulk(rows: &[Vec<Value>]) -> BulkBuf {
        let mut b = BulkBuf::default();
        b.reset(rows.first().map_or(0, Vec::len));
        rows.iter().flatten().for_each(|v| b.value(v));
        b
    }

    /// Rows whose columns each hold one type are encoded byte for byte
    /// as mysql_common encodes a `COM_STMT_BULK_EXECUTE` (types sent).
    #[test]
    fn bulk_rows_are_encoded_as_mysql_common_encodes_them() {
        let rows = vec![
            vec![
                Value::Int(-5),
                Value::UInt(u64::MAX),
                Value::Bytes(b"\xf1text".to_vec()),
                Value::Double(-2.25),
                Value::Date(2024, 2, 29, 23, 59, 58, 999_999),
            ],
            vec![
                Value::NULL,
                Value::UInt(0),
                Value::Bytes(vec![7; 300]),
                Value::NULL,
                Value::Date(1970, 1, 1, 0, 0, 0, 0),
            ],
            vec![
                Value::Int(i64::MIN),
                Value::NULL,
                Value::Bytes(Vec::new()),
                Value::Double(0.5),
                Value::NULL,
            ],
        ];
        let flags = StmtBulkExecuteFlags::SEND_TYPES_TO_SERVER;
        let req = ComStmtBulkExecuteRequest::new(42, flags, rows.clone()).unwrap();
        let mut theirs = Vec::new();
        req.serialize(&mut theirs);

        let b = bulk(&rows);
        assert!(b.is_uniform());
        assert_eq!(b.rows(), 3);
        let mut ours = vec![Command::COM_STMT_BULK_EXECUTE as u8];
        ours.extend_from_slice(&42u32.to_le_bytes());
        ours.extend_from_slice(&flags.bits().to_le_bytes());
        b.write_to(&mut ours);
        assert_eq!(ours, theirs);
    }

    /// A column whose values change type (or signedness) from one row to
    /// the next cannot be declared once: the rows are not uniform, and
    /// the lane sends them another way. NULLs fit any type, and a column
    /// of NULLs only is declared a string.
    #[test]
    fn a_column_that_changes_type_makes_the_rows_not_uniform() {
        let int_then_text = bulk(&[vec![Value::Int(1)], vec![Value::Bytes(b"2".to_vec())]]);
        assert!(!int_then_text.is_uniform());
        let signed_then_unsigned = bulk(&[vec![Value::Int(-1)], vec![Value::UInt(1)]]);
        assert!(!signed_then_unsigned.is_uniform());
        let mut text_then_bytes = bulk(&[vec![Value::Bytes(b"a".to_vec())]]);
        text_then_bytes.bytes(b"b");
        assert!(text_then_bytes.is_uniform());
        assert_eq!(text_then_bytes.rows(), 2);

        let nulls_first = bulk(&[
            vec![Value::NULL, Value::NULL],
            vec![Value::Int(3), Value::NULL],
        ]);
        assert!(nulls_first.is_uniform());
        let mut out = Vec::new();
        nulls_first.write_to(&mut out);
        let string = ColumnType::MYSQL_TYPE_VAR_STRING as u8;
        let long = ColumnType::MYSQL_TYPE_LONGLONG as u8;
        // types, then per row each value's indicator (1: NULL) and bytes
        let mut want = vec![long, 0, string, 0, 1, 1, 0];
        want.extend_from_slice(&3i64.to_le_bytes());
        want.push(1);
        assert_eq!(out, want);

        assert!(!bulk(&[]).is_uniform(), "no columns: nothing to send");
    }

    /// A row taken back leaves the rows as if it had never been bound.
    #[test]
    fn a_popped_row_leaves_the_rows_before_it() {
        let one = vec![Value::Int(1), Value::Bytes(b"a".to_vec())];
        let two = [Value::Int(2), Value::Bytes(vec![b'b'; 100])];
        let mut b = bulk(std::slice::from_ref(&one));
        let start = b.len();
        two.iter().for_each(|v| b.value(v));
        assert_eq!(b.rows(), 2);
        b.pop_row(start);
        assert_eq!(b.rows(), 1);
        let (mut got, mut want) = (Vec::new(), Vec::new());
        b.write_to(&mut got);
        bulk(&[one]).write_to(&mut want);
        assert_eq!(got, want);
    }
}
