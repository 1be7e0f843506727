//! Bad input gets exit code 2 and a clear message, quickly, and never
//! prints a password (README, "Configuration").

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{cluster, BIN};

const SECRET: &str = "hunter2-do-not-print";

/// A loopback port with nothing listening.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn write(dir: &Path, config: &str, rule: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/orders.toml"), rule).unwrap();
    let p = dir.join("reshard.toml");
    std::fs::write(&p, config).unwrap();
    p
}

fn config(source: &str, control: &str, target: &str, extra: &str) -> String {
    format!(
        "[source]\nurl = \"{source}\"\nserver_id = 4999\n\n[control]\nurl = \"{control}\"\n\n[targets]\nshard0 = \"{target}\"\n\n[pipeline]\nrules = \"rules\"\n{extra}"
    )
}

const RULE: &str =
    "source = \"shop.orders\"\nshard = \"crc32(buyer_id) % 1\"\nshards = [\"shard0\"]\n";

fn reshard(cfg: &Path, args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(cfg)
        .current_dir(std::env::temp_dir())
        .env("RESHARD_TEST_PW", SECRET)
        .output()
        .unwrap();
    (out, start.elapsed())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_error(o: &Output, took: Duration, needles: &[&str]) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(2), "exit code: {t}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(!t.contains(SECRET), "password printed: {t}");
    for n in needles {
        assert!(t.contains(n), "expected {n:?} in: {t}");
    }
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mysql://u:{SECRET}@127.0.0.1:1/db");
    let cfg = write(dir.path(), &config(&url, &url, &url, "lanes = 4\n"), RULE);
    let (o, took) = reshard(&cfg, &["run"]);
    assert_error(&o, took, &["reshard.toml:13:1", "lanes"]);
}

#[test]
fn rule_syntax_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mysql://u:{SECRET}@127.0.0.1:1/db");
    let rule = RULE.replace("% 1", "%% 1");
    let cfg = write(dir.path(), &config(&url, &url, &url, ""), &rule);
    let (o, took) = reshard(&cfg, &["run"]);
    assert_error(&o, took, &["orders.toml:2:", "^"]);
}

#[test]
fn unreachable_source_fails_within_a_minute_with_the_default_budget() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster();
    let dead = format!(
        "mysql://repl:${{RESHARD_TEST_PW}}@127.0.0.1:{}",
        closed_port()
    );
    let cfg = write(
        dir.path(),
        &config(
            &dead,
            &c.targets[0].url("errs_meta"),
            &c.targets[0].url("mysql"),
            "",
        ),
        RULE,
    );
    let (o, took) = reshard(&cfg, &["run"]);
    assert_error(&o, took, &["source", "cannot connect", "repl:***@"]);
}

#[test]
fn unreachable_target_and_control_are_named() {
    let c = cluster();
    c.targets[0]
        .sql("CREATE DATABASE IF NOT EXISTS errs_meta")
        .unwrap();
    let dead = format!("mysql://root:{SECRET}@127.0.0.1:{}/x", closed_port());
    for (which, cfg_text) in [
        (
            "target shard0",
            config(
                &c.source.url(""),
                &c.targets[0].url("errs_meta"),
                &dead,
                "connect_timeout_secs = 3\n",
            ),
        ),
        (
            "control",
            config(
                &c.source.url(""),
                &dead,
                &c.targets[0].url("mysql"),
                "connect_timeout_secs = 3\n",
            ),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(dir.path(), &cfg_text, RULE);
        for cmd in ["run", "migrate"] {
            let (o, took) = reshard(&cfg, &[cmd]);
            assert_error(&o, took, &[which.split(' ').next().unwrap_or(which)]);
        }
    }
}

#[test]
fn wrong_password_is_not_retried_forever_and_not_printed() {
    let c = cluster();
    let bad = format!("mysql://root:{SECRET}@127.0.0.1:{}", c.source.port());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &config(
            &bad,
            &c.targets[0].url("errs_meta"),
            &c.targets[0].url("mysql"),
            "",
        ),
        RULE,
    );
    let (o, took) = reshard(&cfg, &["run"]);
    assert_error(&o, took, &["source", "1045"]);
    assert!(
        took < Duration::from_secs(10),
        "refused credentials must fail fast, took {took:?}"
    );
}

#[test]
fn run_refuses_to_start_before_migrate() {
    let c = cluster();
    c.targets[1]
        .sql("CREATE DATABASE IF NOT EXISTS nomig_s0")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &config(
            &c.source.url(""),
            &c.targets[1].url("nomig_meta_absent"),
            &c.targets[1].url("nomig_s0"),
            "",
        ),
        RULE,
    );
    let (o, took) = reshard(&cfg, &["run"]);
    assert_error(&o, took, &["control"]);
    c.targets[1]
        .sql("CREATE DATABASE IF NOT EXISTS nomig_meta")
        .unwrap();
    let cfg = write(
        dir.path(),
        &config(
            &c.source.url(""),
            &c.targets[1].url("nomig_meta"),
            &c.targets[1].url("nomig_s0"),
            "",
        ),
        RULE,
    );
    let (o, took) = reshard(&cfg, &["run"]);
    assert_error(&o, took, &["reshard migrate --config"]);
}
