//! What went wrong with a probe, in the words a client would use.

use crate::sample::ErrorClass;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// A probe's failure: its class (what a client would have seen) and the server's or the OS's
/// own words. Cloned into every probe waiting on the same broken connection, so it holds text,
/// not the source error.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{class}: {text}")]
pub struct ProbeError {
    pub class: ErrorClass,
    pub text: String,
}

impl ProbeError {
    pub fn new(class: ErrorClass, text: impl Into<String>) -> Self {
        Self { class, text: text.into() }
    }

    pub fn timeout(what: &str) -> Self {
        Self::new(ErrorClass::Timeout, format!("{what}: deadline passed"))
    }

    /// Whether the connection that produced this error must be dropped and reopened: it is
    /// broken, hung, or talks to a server that is no longer (or not yet) a usable primary.
    /// Whether the connection itself failed (what makes a plain client library reconnect): not
    /// an error reply, which a connection survives.
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Refused | ErrorClass::Reset | ErrorClass::Timeout | ErrorClass::Dns | ErrorClass::Tls
        )
    }

    pub(crate) fn needs_reconnect(&self) -> bool {
        !matches!(
            self.class,
            ErrorClass::Other
                | ErrorClass::Moved
                | ErrorClass::Tryagain
                | ErrorClass::Clusterdown
                | ErrorClass::AckTimeout
        )
    }
}

pub fn classify(e: &RedisError) -> ProbeError {
    let text = e.to_string();
    ProbeError { class: class_of(e, &text), text }
}

fn class_of(e: &RedisError, text: &str) -> ErrorClass {
    if e.is_timeout() {
        return ErrorClass::Timeout;
    }
    if e.is_connection_refusal() {
        return ErrorClass::Refused;
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed => return ErrorClass::Auth,
        ErrorKind::Server(ServerErrorKind::ReadOnly) => return ErrorClass::Readonly,
        ErrorKind::Server(ServerErrorKind::BusyLoading) => return ErrorClass::Loading,
        ErrorKind::Server(ServerErrorKind::MasterDown) => return ErrorClass::Masterdown,
        ErrorKind::Server(ServerErrorKind::ClusterDown) => return ErrorClass::Clusterdown,
        ErrorKind::Server(ServerErrorKind::TryAgain) => return ErrorClass::Tryagain,
        ErrorKind::Server(ServerErrorKind::Moved) | ErrorKind::Server(ServerErrorKind::Ask) => {
            return ErrorClass::Moved
        }
        _ => {}
    }
    class_from_text(text).unwrap_or(if e.is_connection_dropped() { ErrorClass::Reset } else { ErrorClass::Other })
}

/// `w` as a word of `text`: "MOVED 3999 …" is a redirect, a connection "removed" is not.
fn word(text: &str, w: &str) -> bool {
    text.match_indices(w).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !c.is_ascii_alphanumeric());
        let after = text[i + w.len()..].chars().next().is_none_or(|c| !c.is_ascii_alphanumeric());
        before && after
    })
}

/// Server replies inside a MULTI/EXEC abort, and I/O errors, arrive as text.
pub(crate) fn class_from_text(text: &str) -> Option<ErrorClass> {
    let upper = text.to_uppercase();
    let has = |s: &str| upper.contains(s);
    Some(if has("ACKTIMEOUT") {
        ErrorClass::AckTimeout
    } else if has("READONLY") {
        ErrorClass::Readonly
    } else if has("LOADING") {
        ErrorClass::Loading
    } else if has("MASTERDOWN") {
        ErrorClass::Masterdown
    } else if has("NOREPLICAS") {
        ErrorClass::Noreplicas
    } else if has("CLUSTERDOWN") {
        ErrorClass::Clusterdown
    } else if has("TRYAGAIN") {
        ErrorClass::Tryagain
    } else if word(&upper, "MOVED") || word(&upper, "ASK") {
        ErrorClass::Moved
    } else if has("NOAUTH") || has("WRONGPASS") || has("AUTHENTICATION") {
        ErrorClass::Auth
    } else if has("CERTIFICATE") || has("TLS") || has("HANDSHAKE") {
        ErrorClass::Tls
    } else if has("REFUSED") {
        ErrorClass::Refused
    } else if has("RESET") || has("BROKEN PIPE") || has("EOF") || has("CONNECTION ABORTED") || has("CLOSED") {
        ErrorClass::Reset
    } else if has("TIMED OUT") || has("TIMEOUT") {
        ErrorClass::Timeout
    } else if has("LOOKUP") || has("NAME OR SERVICE") || has("NO SUCH HOST") || has("RESOLVE") {
        ErrorClass::Dns
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_server_texts() {
        let cases = [
            (
                "EXECABORT Transaction discarded: READONLY You can't write against a read only replica.",
                ErrorClass::Readonly,
            ),
            ("LOADING Redis is loading the dataset in memory", ErrorClass::Loading),
            ("MASTERDOWN Link with MASTER is down", ErrorClass::Masterdown),
            ("Connection refused (os error 111)", ErrorClass::Refused),
            ("Connection reset by peer (os error 104)", ErrorClass::Reset),
            ("failed to lookup address information: Name or service not known", ErrorClass::Dns),
            ("WRONGPASS invalid username-password pair", ErrorClass::Auth),
            ("MOVED 3999 127.0.0.1:6381", ErrorClass::Moved),
            ("NOREPLICAS Not enough good replicas to write.", ErrorClass::Noreplicas),
            ("ASK 3999 127.0.0.1:6381", ErrorClass::Moved),
        ];
        for (text, class) in cases {
            assert_eq!(class_from_text(text), Some(class), "{text}");
        }
        assert_eq!(class_from_text("WRONGTYPE Operation against a key"), None);
        // A word, not a part of one: GLIDE says a dead node's connection was "removed".
        assert_ne!(class_from_text("the connection has been removed"), Some(ErrorClass::Moved));
        // Nor "ASK" inside "task" (a library's background task ending with its connection).
        assert_ne!(class_from_text("the reader task ended: broken connection"), Some(ErrorClass::Moved));
    }
}
