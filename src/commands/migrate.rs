//! `reshard migrate`: create or upgrade reshard's own tables.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use mysql_async::prelude::Queryable;

use crate::config::{db_name, Config};
use crate::control::migrations::{apply, MigrationSet};
use crate::db::{self, quote_ident, Session};

pub async fn migrate(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(path)?;
    let budget = cfg.pipeline.connect_timeout;
    // the control database may not exist yet: connect without it
    let control_db = db_name(&cfg.control.url).context("control.url names no database")?;
    let opts = db::opts(&cfg.control, Session::Read, Some(None))?;
    let mut conn = db::connect_opts(&cfg.control, opts, budget)
        .await
        .context("control server")?;
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS {} DEFAULT CHARACTER SET utf8mb4",
        quote_ident(&control_db)
    ))
    .await
    .with_context(|| format!("creating the control database {control_db}"))?;
    conn.query_drop(format!("USE {}", quote_ident(&control_db)))
        .await
        .context("selecting the control database")?;
    let done = apply(&mut conn, MigrationSet::Control, "control").await?;
    report("control", &control_db, &done);
    for ep in cfg.targets.values() {
        let mut conn = db::connect(ep, Session::Read, budget)
            .await
            .with_context(|| format!("target {}", ep.name))?;
        let done = apply(&mut conn, MigrationSet::Shard, &ep.name).await?;
        report(&ep.name, &db_name(&ep.url).unwrap_or_default(), &done);
    }
    Ok(ExitCode::SUCCESS)
}

fn report(server: &str, db: &str, done: &[&str]) {
    if done.is_empty() {
        println!("{server} ({db}): up to date");
    } else {
        println!("{server} ({db}): applied {}", done.join(", "));
    }
}
