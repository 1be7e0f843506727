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
    bound_client_buffers();
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
    // The command runs as a task on the worker threads, not on this
    // thread: the coordinator and the copy's dispatcher hand a message to
    // a reader or lane task for every transaction or page, and from here
    // each handoff woke a parked thread (`docs/architecture.md`,
    // "Threads").
    let command = runtime.spawn(commands::dispatch(cli));
    match runtime.block_on(command) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {}", redact_url(&format!("{e:#}")));
            ExitCode::from(EXIT_ERROR)
        }
        // the task panicked (the panic was printed) or was cancelled
        Err(e) => {
            eprintln!("error: {}", redact_url(&e.to_string()));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The largest buffer mysql_async's pool keeps for reuse, unless
/// `MYSQL_ASYNC_BUFFER_SIZE_CAP` says otherwise.
const CLIENT_BUFFER_CAP: &str = "65536";

/// Bounds the memory mysql_async's buffer pool keeps. The pool (up to 128
/// buffers, shared by every connection) keeps each returned buffer at up
/// to 4 MiB by default, and a lane's multi-row statement of wide rows
/// grows one to its size; as buffers change hands between statements and
/// the packets read back, more and more of them stay that large. With 1
/// KiB rows that held about 70 MiB, a third of the peak RSS of a large
/// transaction streaming through (BENCHMARKS.md, the memory row). Larger
/// buffers are still allocated when a packet needs them, and shrunk when
/// they return to the pool. The pool reads the variable once, on first
/// use: this runs before the runtime starts, while the process has one
/// thread.
fn bound_client_buffers() {
    if std::env::var_os("MYSQL_ASYNC_BUFFER_SIZE_CAP").is_none() {
        std::env::set_var("MYSQL_ASYNC_BUFFER_SIZE_CAP", CLIENT_BUFFER_CAP);
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
