//! Locating the MariaDB programs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::TestkitError;

/// Directories searched after `PATH` (Debian puts `mariadbd` in /usr/sbin,
/// which is often not in a non-root user's `PATH`).
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/usr/bin"];

/// The programs the testkit runs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) server: PathBuf,
    pub(crate) install_db: PathBuf,
    pub(crate) client: PathBuf,
}

impl Binaries {
    pub(crate) fn locate() -> Result<Binaries, TestkitError> {
        Ok(Binaries {
            server: require("server", &["mariadbd", "mysqld"])?,
            install_db: require(
                "install program",
                &["mariadb-install-db", "mysql_install_db"],
            )?,
            client: require("client", &["mariadb", "mysql"])?,
        })
    }
}

fn require(what: &'static str, names: &[&str]) -> Result<PathBuf, TestkitError> {
    find(names).ok_or_else(|| TestkitError::BinaryMissing {
        what,
        names: names.join(" or "),
    })
}

/// The first of `names` (in order of preference) found as an executable file
/// in `PATH` or [`EXTRA_DIRS`].
pub(crate) fn find(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(EXTRA_DIRS.iter().map(PathBuf::from));
    names.iter().find_map(|name| {
        dirs.iter()
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
