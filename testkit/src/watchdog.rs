//! A detached shell that kills a server and removes its data dir once the
//! test process is gone.
//!
//! Tests keep servers in `static` `OnceLock`s, which are never dropped, and a
//! test binary may be killed outright (SIGKILL, Ctrl-C, a CI timeout). Either
//! way `Drop` never runs, and without help `mariadbd` would keep running with
//! its data dir in /tmp. So every server gets a watchdog: `sh` polling
//! `kill -0 <test pid>` (and /proc, for a zombie) once a second; when the
//! test process has gone it kills `mariadbd`, or `mariadb-install-db` if we
//! die while installing (it reads the process group from a file in the data
//! dir, so a restart on another port needs no new watchdog), and removes the
//! data dir.
//!
//! The watchdog lives in its own process group, so a terminal's Ctrl-C or a
//! `kill -- -<pgid>` aimed at the test's group does not take it down before
//! it has done its job. `PR_SET_PDEATHSIG` is no alternative: it fires when
//! the *thread* that spawned the child exits, and test threads exit early.
//!
//! On an orderly [`MariaDb::stop`](super::MariaDb::stop) the watchdog is
//! killed (its whole process group) after the server stopped.

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::TestkitError;

/// Name of the file (inside the data dir) holding the pid of the current
/// `mariadbd` process for the watchdog.
const PID_FILE: &str = "reshard-testkit-mariadbd.pid";

/// `$1` = pid of the test process, `$2` = data dir.
///
/// The file names a process *group*: `mariadb-install-db` (with the
/// bootstrap server it runs) or `mariadbd`, each started as a group leader.
/// A zombie (exited but not yet reaped) counts as gone. Before killing, it
/// checks that the leader's command line mentions the data dir, so a recycled
/// pid is never hit; it waits (at most 5 s) for the group to die before
/// removing the files.
const SCRIPT: &str = r#"
parent="$1"; dir="$2"; pidfile="$dir/reshard-testkit-mariadbd.pid"
# running PID: the process exists and is not a zombie.
running() {
  kill -0 "$1" 2>/dev/null || return 1
  stat=""; read -r stat 2>/dev/null < "/proc/$1/stat" || return 0
  state=${stat##*) }; state=${state%% *}
  [ "$state" != Z ]
}
# group_running PGID: some non-zombie process is in the group.
group_running() {
  g="$1"
  [ -d /proc/self ] || { kill -0 "-$g" 2>/dev/null; return; }
  for f in /proc/[0-9]*/stat; do
    stat=""; read -r stat 2>/dev/null < "$f" || continue
    set -- ${stat##*) }
    [ "$1" != Z ] && [ "$3" = "$g" ] && return 0
  done
  return 1
}
while running "$parent"; do sleep 1; done
if [ -r "$pidfile" ]; then
  pgid=$(cat "$pidfile")
  # Only a plain number > 1: "kill -9 -1" would hit every process.
  case "$pgid" in ''|*[!0-9]*) pgid=0 ;; esac
  if [ "$pgid" -gt 1 ]; then
    if [ ! -d "/proc/$pgid" ] || grep -qaF -- "$dir" "/proc/$pgid/cmdline" 2>/dev/null; then
      # (dash's kill takes no "--")
      kill -9 "-$pgid" 2>/dev/null
      i=0
      while group_running "$pgid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    fi
  fi
fi
case "$dir" in /*/reshard-mariadb-*) rm -rf -- "$dir" ;; esac
"#;

/// A running watchdog; dropping it kills it (and its `sleep`).
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    dir: PathBuf,
}

impl Watchdog {
    /// Start watching `dir` on behalf of the current process.
    pub(crate) fn spawn(dir: &Path) -> Result<Watchdog, TestkitError> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("reshard-testkit-watchdog")
            .arg(std::process::id().to_string())
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| TestkitError::io("cannot spawn the watchdog shell /bin/sh", e))?;
        Ok(Watchdog {
            child,
            dir: dir.to_path_buf(),
        })
    }

    /// Tell the watchdog which process group to kill: `pid` must lead its
    /// own group (spawned with `process_group(0)`).
    pub(crate) fn set_target(&self, pid: u32) -> Result<(), TestkitError> {
        let tmp = self.dir.join(format!("{PID_FILE}.tmp"));
        let dst = self.dir.join(PID_FILE);
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            writeln!(f, "{pid}")?;
            drop(f);
            fs::rename(&tmp, &dst)
        };
        write().map_err(|e| TestkitError::io(format!("cannot write {}", dst.display()), e))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // pgid > 1 always holds for a child; checked anyway since kill(-1)
        // would signal every process.
        if pgid > 1 && matches!(self.child.try_wait(), Ok(None)) {
            // The watchdog leads its own process group (process_group(0)), so
            // -pid addresses the shell and its `sleep`. The child is not yet
            // reaped, so the pid cannot have been recycled.
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}
