//! Security (issue 12): TLS to source, control and targets in every mode
//! against MariaDB servers started with a certificate authority this test
//! makes with `openssl`; passwords from `password_file` and `${VAR}`; and
//! no password in any output of any command, failures included.
//!
//! The servers' accounts `REQUIRE SSL`, so a connection that works was
//! encrypted. The source's certificate names `IP:127.0.0.1` (what the URLs
//! connect to), the target's only `DNS:db.example`: `verify-identity`
//! works against the first and is refused by the second, where `required`
//! with the CA works.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use reshard_testkit::scenario::Scenario;
use reshard_testkit::{Cluster, MariaDb, ServerOptions};

/// The source account's password (in a `password_file`).
const FILE_PW: &str = "Pw-f1le-Sec-9417";
/// The control and targets' password (`${RESHARD_SEC_PW}`).
const ENV_PW: &str = "Pw-env-Sec-5523";
/// A wrong password a failing command is given.
const WRONG_PW: &str = "Wr0ng-Sec-Pw-7781";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the TLS tests need the openssl command-line tool (apt-get install openssl): {e}"
            )
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`name.pem`, `name.key`).
fn make_ca(dir: &Path, name: &str) {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    let subj = format!("/CN=reshard test {name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem,
            "-days", "2", "-subj", &subj,
        ],
    );
}

/// A server certificate `name.pem`/`name.key` signed by `ca`, for `san`.
fn make_cert(dir: &Path, ca: &str, name: &str, san: &str) {
    let (pem, key, csr, ext) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=reshard test server",
        ],
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

fn tls_server(dir: &Path, cert: &str, binlog: bool, id: u32) -> MariaDb {
    let arg = |k: &str, f: String| format!("--{k}={}", dir.join(f).display());
    let mut opts = if binlog {
        ServerOptions::source(id)
    } else {
        ServerOptions::plain(id)
    };
    opts.extra_args = vec![
        arg("ssl-ca", "ca.pem".into()),
        arg("ssl-cert", format!("{cert}.pem")),
        arg("ssl-key", format!("{cert}.key")),
    ];
    let server = MariaDb::start(opts).unwrap();
    server.sql("SET SESSION sql_log_bin = 0; CREATE USER 'sec'@'%' IDENTIFIED BY 'X' REQUIRE SSL; GRANT ALL PRIVILEGES ON *.* TO 'sec'@'%'").unwrap();
    server
}

/// The config of the scenario `sec` over the TLS servers: the source by
/// `verify-identity`, the control and `s0` by `required` with the CA, `s1`
/// by `required` alone, `s2` by the default (`preferred`), `s3` by URL
/// parameters. `edit` changes the text (for the failing variants).
fn config(src_port: u16, tgt_port: u16) -> String {
    let t = |db: &str| format!("mysql://sec:${{RESHARD_SEC_PW}}@127.0.0.1:{tgt_port}/{db}");
    format!(
        "[source]\nurl = \"mysql://sec@127.0.0.1:{src_port}\"\nserver_id = 4777\npassword_file = \"source.pw\"\nssl_mode = \"verify-identity\"\nca_file = \"tls/ca.pem\"\n\n\
         [control]\nurl = \"{}\"\nssl_mode = \"required\"\nca_file = \"tls/ca.pem\"\n\n\
         [targets]\ns0 = {{ url = \"{}\", ssl_mode = \"required\", ca_file = \"tls/ca.pem\" }}\ns1 = {{ url = \"{}\", ssl_mode = \"required\" }}\ns2 = \"{}\"\ns3 = \"{}?ssl-mode=required&ssl-ca=tls/ca.pem\"\n\n\
         [pipeline]\nrules = \"rules\"\nname = \"sec\"\nlinger_ms = 10\nconnect_timeout_secs = 5\nshutdown_timeout_secs = 20\n",
        t("sec_meta"),
        t("sec_s0"),
        t("sec_s1"),
        t("sec_s2"),
        t("sec_s3"),
    )
}

/// `run`, killed if the test fails before it stops it.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Everything a command printed.
struct Seen(Vec<String>);

impl Seen {
    /// Runs a reshard command with the scenario's config (`RESHARD_SEC_PW`
    /// = `pw`, debug logging) and keeps its output.
    fn run(&mut self, s: &Scenario, pw: &str, args: &[&str]) -> Output {
        let out = s
            .reshard(BIN, args)
            .env("RESHARD_SEC_PW", pw)
            .env("RESHARD_LOG", "reshard=debug")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.0.push(format!("$ reshard {args:?}\n{text}"));
        out
    }

    fn last(&self) -> &str {
        self.0.last().map_or("", String::as_str)
    }

    /// Runs a command that must fail (exit 2) naming every needle.
    fn fails(&mut self, s: &Scenario, pw: &str, args: &[&str], needles: &[&str]) {
        let out = self.run(s, pw, args);
        let text = self.last().to_string();
        assert_eq!(out.status.code(), Some(2), "{text}");
        for n in needles {
            assert!(text.contains(n), "{n:?} not in:\n{text}");
        }
    }
}

fn edit(s: &Scenario, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(&s.config).unwrap();
    assert!(text.contains(from), "{from} not in the config");
    std::fs::write(&s.config, text.replacen(from, to, 1)).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_in_every_mode_and_no_password_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let tls: PathBuf = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    make_ca(&tls, "ca");
    make_ca(&tls, "other");
    make_cert(&tls, "ca", "by_ip", "IP:127.0.0.1");
    make_cert(&tls, "ca", "by_name", "DNS:db.example");
    let cluster = Cluster {
        source: tls_server(&tls, "by_ip", true, 1),
        targets: vec![tls_server(&tls, "by_name", false, 2)],
    };
    cluster
        .source
        .sql(&format!(
            "SET SESSION sql_log_bin = 0; ALTER USER 'sec'@'%' IDENTIFIED BY '{FILE_PW}'"
        ))
        .unwrap();
    cluster.targets[0]
        .sql(&format!("ALTER USER 'sec'@'%' IDENTIFIED BY '{ENV_PW}'"))
        .unwrap();
    let s = Scenario::create(&cluster, "sec").unwrap();
    std::fs::write(s.dir.path().join("source.pw"), format!("{FILE_PW}\n")).unwrap();
    let copy = |f: &str| std::fs::copy(tls.join(f), s.dir.path().join("tls").join(f)).unwrap();
    std::fs::create_dir(s.dir.path().join("tls")).unwrap();
    copy("ca.pem");
    copy("other.pem");
    std::fs::write(
        &s.config,
        config(cluster.source.port(), cluster.targets[0].port()),
    )
    .unwrap();

    let mut seen = Seen(Vec::new());
    assert!(
        seen.run(&s, ENV_PW, &["migrate"]).status.success(),
        "{}",
        seen.last()
    );
    s.bulk_load(50).await.unwrap();
    let log = std::fs::File::create(s.dir.path().join("run.log")).unwrap();
    let run = s
        .reshard(BIN, &["run"])
        .env("RESHARD_SEC_PW", ENV_PW)
        .env("RESHARD_LOG", "reshard=debug")
        .stderr(log)
        .spawn()
        .unwrap();
    let mut run = Stopped(run);
    wait_until(&s, "the copy over TLS", Duration::from_secs(90), || async {
        s.compare(1).await.is_ok_and(|d| d.is_empty())
    })
    .await;
    assert!(
        terminate(&mut run.0, Duration::from_secs(30)).success(),
        "{}",
        run_log(&s)
    );
    seen.0.push(run_log(&s));
    // the copy's own connections speak no TLS: it read through the driver
    assert!(
        seen.last().contains("the copy reads through the driver")
            && seen.last().contains("the server offers TLS"),
        "{}",
        seen.last()
    );
    assert!(
        seen.run(&s, ENV_PW, &["verify"]).status.success(),
        "{}",
        seen.last()
    );
    assert!(
        seen.run(&s, ENV_PW, &["status", "--json"]).status.success(),
        "{}",
        seen.last()
    );

    // a CA that did not sign the source's certificate
    let good = edit(
        &s,
        "ca_file = \"tls/ca.pem\"",
        "ca_file = \"tls/other.pem\"",
    );
    seen.fails(&s, ENV_PW, &["status"], &["source", "certificate"]);
    std::fs::write(&s.config, &good).unwrap();
    // verify-identity against the certificate for another name
    edit(
        &s,
        "ssl_mode = \"required\"\nca_file",
        "ssl_mode = \"verify-identity\"\nca_file",
    );
    seen.fails(&s, ENV_PW, &["status"], &["control", "certificate"]);
    std::fs::write(&s.config, &good).unwrap();
    // no TLS for an account that requires it
    edit(
        &s,
        "ssl_mode = \"verify-identity\"",
        "ssl_mode = \"disabled\"",
    );
    seen.fails(&s, ENV_PW, &["run"], &["source", "Access denied"]);
    std::fs::write(&s.config, &good).unwrap();
    // a wrong password, from the environment
    seen.fails(&s, WRONG_PW, &["run"], &["control", "Access denied"]);
    seen.fails(&s, WRONG_PW, &["dry-run"], &["Access denied"]);

    let all = seen.0.join("\n");
    for pw in [FILE_PW, ENV_PW, WRONG_PW] {
        assert!(!all.contains(pw), "a password ({pw}) was printed:\n{all}");
    }
    assert!(
        all.contains("***") || all.contains("sec@"),
        "the outputs name the accounts"
    );
}

/// Pre-flight names every privilege an account lacks with the `GRANT`
/// that fixes it (one per scope), and `run` starts once they are granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_grant_is_named_with_the_grant_that_fixes_it() {
    let c = cluster();
    let s = Scenario::create(c, "grants").unwrap();
    migrate(&s);
    c.source
        .sql("CREATE USER 'lim_src'@'%' IDENTIFIED BY 'lim-src-pw'; GRANT REPLICATION CLIENT ON *.* TO 'lim_src'@'%'; GRANT SELECT ON grants_src.orders TO 'lim_src'@'%'")
        .unwrap();
    c.targets[0]
        .sql("CREATE USER 'lim_tgt'@'%' IDENTIFIED BY 'lim-tgt-pw'; GRANT SELECT, INSERT, UPDATE ON grants_s0.* TO 'lim_tgt'@'%'")
        .unwrap();
    use_account(&s, c, None, "lim_src", "lim-src-pw");
    use_account(&s, c, Some("s0"), "lim_tgt", "lim-tgt-pw");

    let out = reshard(&s, &["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for fix in [
        "GRANT REPLICATION SLAVE ON *.* TO 'lim_src'@'%';",
        "GRANT SELECT ON `grants_src`.`items` TO 'lim_src'@'%';",
        "GRANT DELETE ON `grants_s0`.* TO 'lim_tgt'@'%';",
    ] {
        assert!(err.contains(fix), "{fix} not in:\n{err}");
    }
    assert!(
        !err.contains("lim-src-pw") && !err.contains("lim-tgt-pw"),
        "{err}"
    );
    // replaying archived files checks the appliers' accounts alone (the
    // source only serves information_schema then)
    let archive = tempfile::tempdir().unwrap();
    let first = c.source.sql("SHOW BINARY LOGS").unwrap();
    let first = first.split_whitespace().next().unwrap().to_string();
    std::fs::copy(c.source.datadir().join(&first), archive.path().join(&first)).unwrap();
    let from = format!("{first}:4");
    let dir = archive.path().to_str().unwrap();
    let out = reshard(&s, &["replay", "--binlog-dir", dir, "--from", &from]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("GRANT DELETE ON `grants_s0`.* TO 'lim_tgt'@'%';")
            && !err.contains("lacks REPLICATION"),
        "{err}"
    );

    c.source
        .sql("GRANT REPLICATION SLAVE ON *.* TO 'lim_src'@'%'; GRANT SELECT ON grants_src.items TO 'lim_src'@'%'")
        .unwrap();
    c.targets[0]
        .sql("GRANT DELETE ON grants_s0.* TO 'lim_tgt'@'%'")
        .unwrap();
    copies_and_streams(&s).await;
}

/// The target server that holds `shard` of `s`.
fn server_of<'a>(c: &'a Cluster, s: &Scenario, shard: &str) -> &'a MariaDb {
    let url = &s.shard_urls[shard];
    c.targets
        .iter()
        .find(|t| url.contains(&format!("127.0.0.1:{}/", t.port())))
        .unwrap_or_else(|| panic!("no target server for {url}"))
}

/// Uses `account` (password `pw`) instead of root for the source
/// (`shard` None) or a shard.
fn use_account(s: &Scenario, c: &Cluster, shard: Option<&str>, account: &str, pw: &str) {
    let root = format!("root:{}@", MariaDb::ROOT_PASSWORD);
    let at = match shard {
        None => format!("{root}127.0.0.1:{}\"", c.source.port()),
        Some(shard) => {
            let db = s.shard_urls[shard].rsplit('/').next().unwrap().to_string();
            format!("{root}127.0.0.1:{}/{db}", server_of(c, s, shard).port())
        }
    };
    edit(s, &at, &at.replace(&root, &format!("{account}:{pw}@")));
}

/// Privileges that come through the account's default role (MariaDB
/// `SET DEFAULT ROLE`), through a role that role holds, and `ALL
/// PRIVILEGES` on a database all count; what the roles lack is named with
/// its `GRANT`, and a role granted but not active is named with the `SET
/// DEFAULT ROLE` that activates it. Once the roles hold it, `run` starts
/// and converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileges_through_a_default_role_and_all_privileges_count() {
    let c = cluster();
    let s = Scenario::create(c, "roles").unwrap();
    migrate(&s);
    // the source: replication and `orders` through the default role; the
    // role that holds `items` is granted but not the default
    c.source
        .sql(
            "CREATE ROLE roles_repl; GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO roles_repl; \
             GRANT SELECT ON roles_src.orders TO roles_repl; \
             CREATE ROLE roles_items; GRANT SELECT ON roles_src.items TO roles_items; \
             CREATE USER 'role_src'@'%' IDENTIFIED BY 'role-src-pw'; \
             GRANT roles_repl TO 'role_src'@'%'; GRANT roles_items TO 'role_src'@'%'; \
             SET DEFAULT ROLE roles_repl FOR 'role_src'@'%'",
        )
        .unwrap();
    // s0: ALL PRIVILEGES on its database, granted to the account itself
    server_of(c, &s, "s0")
        .sql("CREATE USER 'role_all'@'%' IDENTIFIED BY 'role-all-pw'; GRANT ALL PRIVILEGES ON roles_s0.* TO 'role_all'@'%'")
        .unwrap();
    // s1: DML through a role of the default role, DELETE missing
    server_of(c, &s, "s1")
        .sql(
            "CREATE ROLE roles_dml; GRANT SELECT, INSERT, UPDATE ON roles_s1.* TO roles_dml; \
             CREATE ROLE roles_app; GRANT roles_dml TO roles_app; \
             CREATE USER 'role_t1'@'%' IDENTIFIED BY 'role-t1-pw'; GRANT roles_app TO 'role_t1'@'%'; \
             SET DEFAULT ROLE roles_app FOR 'role_t1'@'%'",
        )
        .unwrap();
    use_account(&s, c, None, "role_src", "role-src-pw");
    use_account(&s, c, Some("s0"), "role_all", "role-all-pw");
    use_account(&s, c, Some("s1"), "role_t1", "role-t1-pw");

    let out = reshard(&s, &["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for fix in [
        "GRANT SELECT ON `roles_src`.`items` TO 'role_src'@'%';",
        "SET DEFAULT ROLE `roles_items` FOR 'role_src'@'%';",
        "GRANT DELETE ON `roles_s1`.* TO 'role_t1'@'%';",
    ] {
        assert!(err.contains(fix), "{fix} not in:\n{err}");
    }
    for held in ["REPLICATION", "`roles_src`.`orders`", "role_all", "INSERT"] {
        assert!(!err.contains(held), "{held} is held, yet named:\n{err}");
    }

    // granted to the roles, not to the accounts
    c.source
        .sql("GRANT SELECT ON roles_src.* TO roles_repl")
        .unwrap();
    server_of(c, &s, "s1")
        .sql("GRANT DELETE ON roles_s1.* TO roles_dml")
        .unwrap();
    copies_and_streams(&s).await;
}

/// `run` copies and streams 20 rows to the targets, then stops cleanly.
async fn copies_and_streams(s: &Scenario) {
    let mut run = Stopped(spawn_run(s, &[]));
    s.bulk_load(20).await.unwrap();
    wait_until(
        s,
        "the copy and stream",
        Duration::from_secs(90),
        || async { s.compare(1).await.is_ok_and(|d| d.is_empty()) },
    )
    .await;
    assert!(
        terminate(&mut run.0, Duration::from_secs(30)).success(),
        "{}",
        run_log(s)
    );
}
