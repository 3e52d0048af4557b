//! rediss:// against a real TLS redis-server: verified by default, a private CA trusted only
//! when given, `#insecure` only when asked for.

use crate::common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct TlsServer {
    child: Child,
    port: u16,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> TlsServer {
    certificates(dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--dir"])
        .arg(dir)
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    TlsServer { child, port }
}

fn probe(url: &str, ca: Option<&Path>, out: &Path) -> std::process::Output {
    let mut cmd = crate::common::failprobe_command();
    cmd.args(["run", "--target", url, "--trigger", "none", "--duration", "1s", "--quiet", "--out"]).arg(out);
    cmd.env_remove("FAILPROBE_TLS_CA_FILE");
    if let Some(ca) = ca {
        cmd.env("FAILPROBE_TLS_CA_FILE", ca);
    }
    cmd.output().unwrap()
}

#[test]
fn tls_is_verified_by_default() {
    let _turn = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let url = format!("rediss://127.0.0.1:{}", server.port);

    let untrusted = probe(&url, None, &dir.path().join("untrusted"));
    assert_eq!(code(&untrusted), 2, "an unknown CA must be refused: {}", explain(&untrusted));
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("tls"), "{}", explain(&untrusted));

    let trusted = probe(&url, Some(&dir.path().join("ca.crt")), &dir.path().join("trusted"));
    assert_eq!(code(&trusted), 0, "{}", explain(&trusted));
    assert_eq!(u(&summary(&dir.path().join("trusted"))["trials"][0]["writes"]["failed"]), 0);

    let insecure = probe(&format!("{url}#insecure"), None, &dir.path().join("insecure"));
    assert_eq!(code(&insecure), 0, "{}", explain(&insecure));
}
