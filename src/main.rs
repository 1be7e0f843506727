//! The `reshard` binary: parse arguments, set up logging, run, map the
//! outcome to an exit code (0 ok, 1 findings, 2 error). Results go to
//! stdout, logs and errors to stderr.

use std::process::ExitCode;

use clap::Parser;
use reshard::cli::Cli;
use reshard::commands::{self, EXIT_ERROR};
use reshard::config::redact_url;

/// mimalloc instead of glibc's malloc: the generic binlog decode and the
/// router allocate per value, and glibc spent over half of reshard's CPU
/// in `malloc`/`free` and their coalescing (BENCHMARKS.md, "Where the
/// end-to-end time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", redact_url(&format!("{e:#}")));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_logging(default: &str) {
    let filter = std::env::var("RESHARD_LOG").unwrap_or_else(|_| default.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
