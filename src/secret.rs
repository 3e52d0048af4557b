//! Secrets never reach a terminal, a log or a file. Two layers:
//! 1. URLs are redacted with the same split the connecting parser uses (`target::UrlParts`);
//! 2. every password failprobe learns (from a URL or the environment) is registered here, and
//!    every text that leaves the process on an error path (the final error, log lines, event
//!    messages) is scrubbed of it, whatever produced the text.

use std::sync::{Mutex, OnceLock};

/// Environment variables that may hold a password.
pub(crate) const PASSWORD_VARS: [&str; 3] = ["FAILPROBE_PASSWORD", "REDISCLI_AUTH", "FAILPROBE_SENTINEL_PASSWORD"];

/// Shorter secrets are not scrubbed by value (replacing every "ab" in a report would destroy it);
/// they are still never printed by failprobe itself, only a foreign text could echo them.
const MIN_SCRUB_LEN: usize = 4;

fn registry() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remembers a secret (and its percent-encoded form) so `scrub` removes it from any text.
pub(crate) fn register(secret: &str) {
    if secret.len() < MIN_SCRUB_LEN {
        return;
    }
    let Ok(mut secrets) = registry().lock() else { return };
    let encoded = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string();
    for s in [secret.to_string(), encoded] {
        if !secrets.contains(&s) {
            secrets.push(s);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers the passwords of the environment variables failprobe reads.
pub fn register_environment() {
    for var in PASSWORD_VARS {
        if let Ok(v) = std::env::var(var) {
            register(&v);
        }
    }
}

/// Whether failprobe knows a secret of this run (a password from a URL or the environment):
/// then what it writes is for the owner's eyes only.
pub(crate) fn any_known() -> bool {
    registry().lock().is_ok_and(|s| !s.is_empty())
}

/// A command line as typed (`command=`, `--before`, an adapter's): `scrub`, and the values of
/// the flags and variables that carry passwords by convention (`redis-cli -a PW`, `--pass PW`,
/// `REDISCLI_AUTH=PW`), which failprobe may never have been told.
pub fn scrub_command(text: &str) -> String {
    static PATTERNS: OnceLock<[regex::Regex; 3]> = OnceLock::new();
    let value = r#"('[^']*'|"[^"]*"|[^\s;&|)]+)"#;
    let [flags, cli, words] = PATTERNS.get_or_init(|| {
        let re = |p: String| regex::Regex::new(&p).expect("a valid pattern");
        [
            // Long flags and NAME=value assignments whose name ends in a secret's word.
            re(format!(
                r"((?:^|[\s;&|(])(?:--pass|--password|--requirepass|--auth|--masterauth|--token)(?:\s+|=)|\b[A-Za-z0-9_]*(?:PASSWORD|PASS|AUTH|SECRET|TOKEN)=){value}"
            )),
            // `-a PW` is redis-cli's (and valkey-cli's); `ls -a` is not a password.
            re(format!(r"(\b(?:redis|valkey)-cli\b[^;&|]*?\s-a\s+){value}")),
            // A password as a command's argument: AUTH pw, CONFIG SET requirepass pw, auth-pass pw.
            re(format!(r"(?i)(\b(?:auth|requirepass|masterauth|auth-pass)\s+){value}")),
        ]
    });
    let mut out = text.to_string();
    for pattern in [flags, cli, words] {
        out = pattern.replace_all(&out, "${1}***").into_owned();
    }
    scrub(&out)
}

/// A run's meta as it may be stored and reported: trigger labels (a `command=` as typed), the
/// target and the servers' errors scrubbed, whatever the caller built or an older failprobe stored.
pub(crate) fn scrub_meta(mut meta: crate::sample::RunMeta) -> crate::sample::RunMeta {
    meta.target = scrub(&meta.target);
    for t in &mut meta.triggers {
        *t = scrub_command(t);
    }
    // A server's error is its client library's text, which may quote what it was sent.
    for e in meta.servers.iter_mut().filter_map(|s| s.error.as_mut()) {
        *e = scrub(e);
    }
    meta
}

/// `text` with every URL redacted and every registered secret replaced by `***`.
pub fn scrub(text: &str) -> String {
    let mut out = redact_urls(text);
    if let Ok(secrets) = registry().lock() {
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
    }
    out
}

/// Redacts every URL-like word in free text (a TOML line, an error message).
pub(crate) fn redact_urls(text: &str) -> String {
    if !text.contains(':') || !text.contains('@') && !text.to_ascii_lowercase().contains("pass") {
        return text.to_string();
    }
    let is_delim = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '(' | ')' | ',');
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if looks_like_url(word) {
            out.push_str(&crate::target::redact(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_delim(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// `scheme:` followed by something: `redis://…`, but also the malformed `redis:/:pw@h`.
fn looks_like_url(word: &str) -> bool {
    let Some((scheme, rest)) = word.split_once(':') else { return false };
    !scheme.is_empty()
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && (rest.starts_with('/') || rest.contains('@'))
}

/// A `tracing` writer that scrubs every line before it reaches stderr.
pub struct ScrubbingStderr;

impl std::io::Write for ScrubbingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = scrub(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_lose_the_values_of_password_flags() {
        let typed = "redis-cli -h 10.0.0.5 -a 'S3cret pw' --pass=two --no-auth-warning DEBUG SLEEP 0";
        assert_eq!(scrub_command(typed), "redis-cli -h 10.0.0.5 -a *** --pass=*** --no-auth-warning DEBUG SLEEP 0");
        assert_eq!(scrub_command("ls -a /tmp; DB2_PASSWORD=x9 run"), "ls -a /tmp; DB2_PASSWORD=*** run");
        assert_eq!(
            scrub_command("redis-cli -p 1 CONFIG SET requirepass n3w"),
            "redis-cli -p 1 CONFIG SET requirepass ***"
        );
        assert_eq!(scrub_command("valkey-cli AUTH pw1"), "valkey-cli AUTH ***");
        assert_eq!(
            scrub_command("REDISCLI_AUTH=hunter22 redis-cli -p 1 PING"),
            "REDISCLI_AUTH=*** redis-cli -p 1 PING"
        );
        assert_eq!(scrub_command("ls -al /tmp"), "ls -al /tmp", "a flag that only starts like one is kept");
    }

    #[test]
    fn urls_in_free_text_are_redacted() {
        let line = r#"ulr = "redis://:pa/ss@127.0.0.1:1""#;
        assert_eq!(redact_urls(line), r#"ulr = "redis://:***@127.0.0.1:1""#);
        assert!(!redact_urls("target `redis:/:s3cr3t@h:1` is not a URL").contains("s3cr3t"));
        assert_eq!(redact_urls("no url here: 12:00"), "no url here: 12:00");
    }

    #[test]
    fn registered_secrets_are_scrubbed_raw_and_encoded() {
        register("Zq9+/#?@%x");
        let text = "AUTH Zq9+/#?@%x failed; url had Zq9%2B%2F%23%3F%40%25x";
        let scrubbed = scrub(text);
        assert!(!scrubbed.contains("Zq9"), "{scrubbed}");
    }
}
