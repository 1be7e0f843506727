//! One module per CLI command. This is the only layer that uses `anyhow`:
//! library errors are typed, and get their `.context()` here.
//!
//! Exit codes: 0 ok, 1 findings, 2 error (see `docs/architecture.md`,
//! "Errors, retries and ownership").

pub mod dead_letters;
pub mod dry_run;
pub mod inspect;
pub mod migrate;
pub mod replay;
mod replay_archive;
mod replicator;
pub mod run;
mod servers;
pub mod status;
pub mod verify;
pub mod wait;

use std::process::ExitCode;

use crate::cli::{Cli, Command, DeadLetterAction};

/// Exit code for findings (dry-run, verify).
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code for errors.
pub const EXIT_ERROR: u8 = 2;

/// Prints a findings report — exactly one JSON document with `--json`, the
/// human form otherwise — and maps it to the exit code (0 clean, 1 findings).
fn emit_report<R: serde::Serialize>(
    report: &R,
    ok: bool,
    json: bool,
    render: impl FnOnce() -> String,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", render());
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FINDINGS)
    })
}

/// `reshard dead-letters …`.
async fn dead_letter_action(action: DeadLetterAction) -> anyhow::Result<ExitCode> {
    use dead_letters::Filter;
    match action {
        DeadLetterAction::List {
            config,
            table,
            json,
        } => {
            dead_letters::list(
                &config,
                Filter {
                    table: table.as_deref(),
                },
                json,
            )
            .await
        }
        DeadLetterAction::Retry { config, table } => {
            dead_letters::retry(
                &config,
                Filter {
                    table: table.as_deref(),
                },
            )
            .await
        }
        DeadLetterAction::Drop { config, table } => {
            dead_letters::drop(
                &config,
                Filter {
                    table: table.as_deref(),
                },
            )
            .await
        }
    }
}

/// Dispatches a parsed command line.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            config,
            from,
            force,
            accept_ddl,
        } => {
            let args = run::RunArgs {
                from,
                force,
                accept_ddl,
            };
            run::run(&config, args).await
        }
        Command::Migrate { config } => migrate::migrate(&config).await,
        Command::DeadLetters { action } => dead_letter_action(action).await,
        Command::Wait {
            config,
            until,
            timeout,
        } => wait::wait(&config, &until, timeout).await,
        Command::Inspect {
            files,
            start_position,
            stop_position,
            json,
        } => inspect::inspect(inspect::InspectArgs {
            files,
            start_position,
            stop_position,
            json,
        }),
        Command::Verify {
            config,
            table,
            chunk_rows,
            rechecks,
            recheck_delay_ms,
            json,
        } => {
            verify::verify(
                &config,
                verify::VerifyArgs {
                    table,
                    chunk_rows,
                    rechecks,
                    recheck_delay: std::time::Duration::from_millis(recheck_delay_ms),
                    json,
                },
            )
            .await
        }
        Command::Status { config, json } => status::status(&config, json).await,
        Command::Replay {
            config,
            from,
            from_gtid,
            to,
            below_floor,
            binlog_dir,
            accept_ddl,
        } => {
            replay::replay(
                &config,
                replay::ReplayArgs {
                    from,
                    from_gtid,
                    to,
                    below_floor,
                    binlog_dir,
                    accept_ddl,
                },
            )
            .await
        }
        Command::DryRun {
            config,
            sample,
            from,
            to,
            json,
        } => {
            dry_run::dry_run(
                &config,
                dry_run::DryRunArgs {
                    sample,
                    from,
                    to,
                    json,
                },
            )
            .await
        }
    }
}
