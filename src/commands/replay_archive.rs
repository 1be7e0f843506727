//! `reshard replay --binlog-dir DIR --from FILE:POS [--to FILE:POS]`:
//! re-apply a range from archived binlog files instead of the server, with
//! the semantics of a live replay — the same decoder, versions, floor and
//! forward-only checkpoint ([`crate::source::archive`] argues why the
//! positions, and so the versions, are the live ones).
//!
//! The source server is optional: when it is reachable, TABLE_MAPs without
//! column names are completed from its information_schema; when it is not,
//! the files must carry the names (`binlog_row_metadata=FULL`), and a table
//! whose names are missing is an error naming it. Key collations are
//! settled at start ([`super::replicator::archive_key_collations`]):
//! learned from the source for the tables it has, else from the TABLE_MAP's
//! collation ids and the weights kept for the build that wrote the files,
//! else an error naming the key column ("Keys and collations" in
//! `docs/architecture.md`). A DDL of a mapped table in the files is
//! recorded in the schema history and judged by `[pipeline] on_ddl` (and
//! `--accept-ddl`) as on a live stream ("The DDL policy"): a halt stops
//! the replay before the DDL, with the checkpoint before it. Without `--to`, the
//! replay ends at the archive's last transaction boundary (a replay of
//! files does not go on streaming).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::replay::{run_replay, Read, Replay, ReplayArgs};
use super::replicator::ArchiveReplicator;
use crate::control::checkpoint;
use crate::position::Position;
use crate::source::archive::{Archive, ArchiveError, ArchiveSource};
use crate::source::framing::EventReader;
use crate::source::{self, StartAt};

pub async fn replay_archive(
    path: &Path,
    dir: &Path,
    from: &Position,
    args: &ReplayArgs,
) -> anyhow::Result<ExitCode> {
    let archive = Archive::open(dir, from)?;
    let end = archive.end()?;
    let to = match &args.to {
        Some(to) if *to > end => {
            return Err(ArchiveError::BeyondEnd {
                position: to.clone(),
                end,
            }
            .into())
        }
        Some(to) => to.clone(),
        None => end,
    };
    if to <= *from {
        println!("the archive ends at {to}: nothing to replay after {from}");
        return Ok(ExitCode::SUCCESS);
    }
    let ArchiveReplicator {
        mut cfg,
        router,
        lookups,
        mut servers,
    } = ArchiveReplicator::start(path, &archive.server_versions()?).await?;
    cfg.pipeline.accept_ddl = args.accept_ddl.clone();
    let identity = identity(&cfg, &mut servers, &archive).await?;
    tracing::info!(dir = %dir.display(), from = %from, to = %to, files = archive.files.len(), source = servers.source.is_some(), "replaying archived binlog files");
    let read = Read::Archive(ArchiveSource {
        archive,
        schemas_from_source: servers.source.is_some(),
    });
    let replay = Replay::new(cfg, router, lookups, servers.control, identity, read);
    run_replay(replay, StartAt::Position(from.clone()), Some(to), args).await
}

/// The source identity the checkpoint is saved with: the server's when it
/// is reachable, else the stored checkpoint's, else the archive's server
/// id (`server_id=N`, what MariaDB's identity is).
async fn identity(
    cfg: &crate::config::Config,
    servers: &mut super::servers::Servers<Option<mysql_async::Conn>>,
    archive: &Archive,
) -> anyhow::Result<String> {
    if let Some(c) = servers.source.as_mut() {
        return Ok(source::server_identity(c).await?);
    }
    if let Some(cp) = checkpoint::load(&mut servers.control, &cfg.pipeline.name).await? {
        return Ok(cp.source_identity);
    }
    let first = archive
        .files
        .first()
        .context("the archive holds no binlog file")?;
    let mut reader = EventReader::open(archive.path(first))?;
    match reader.next()? {
        Some(fde) => Ok(format!("server_id={}", fde.event.header().server_id())),
        None => bail!("{first} holds no event"),
    }
}
