//! Secrets never reach a log line, an error or a status output: every URL
//! shown to a human goes through [`redact_url`].

use std::fmt;

/// Replaces the password of every `scheme://user:password@` in `s` with `***`.
/// Works on whole messages too (a driver error that echoes the URL).
pub fn redact_url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // userinfo ends at the last '@' before the next '/', '?', '#' or whitespace
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Display wrapper that redacts.
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords_only() {
        assert_eq!(
            redact_url("mysql://repl:s3cret@127.0.0.1:3306/db"),
            "mysql://repl:***@127.0.0.1:3306/db"
        );
        assert_eq!(redact_url("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(redact_url("mysql://h:3306"), "mysql://h:3306");
        assert_eq!(
            redact_url("failed mysql://a:p@ss@h/x and mysql://b:q@h2"),
            "failed mysql://a:***@h/x and mysql://b:***@h2"
        );
    }
}
