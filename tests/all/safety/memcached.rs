//! `memcached dump` / `restore` never harm the application's data: newer keys are kept, long
//! TTLs survive, a dump cannot smuggle commands, the file is private, bytes keys are fine.

use crate::common::*;
use failprobe::lab::Topology;
use failprobe::memcached::proto::{Conn, Item};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

struct Node {
    lab: TestLab,
    addr: String,
}

impl Node {
    fn start() -> Self {
        let lab = TestLab::start(Topology::Memcached);
        let addr = lab.lab.nodes()[0].addr().to_string();
        Self { lab, addr }
    }

    /// Only the first node: the lab has two, the dump covers the ones named.
    fn target(&self) -> String {
        format!("memcache://{}", self.addr)
    }

    fn conn<T>(&self, f: impl AsyncFnOnce(&mut Conn, Instant) -> T) -> T {
        self.lab.rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut c = Conn::connect(&self.addr, deadline).await.unwrap();
            f(&mut c, deadline).await
        })
    }

    fn put(&self, key: &[u8], value: &str, exptime: u64) {
        let item = Item { key: key.to_vec(), flags: 0, value: value.as_bytes().to_vec() };
        self.conn(async |c, d| c.store("set", &item, exptime, d).await.unwrap());
    }

    fn get(&self, key: &[u8]) -> Option<String> {
        self.conn(async |c, d| c.get(key, d).await.unwrap()).map(|i| String::from_utf8_lossy(&i.value).into_owned())
    }

    fn delete(&self, key: &str) {
        self.lab.rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
            s.write_all(format!("delete {key}\r\n").as_bytes()).await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await.unwrap();
        });
    }

    fn cli(&self, verb: &str, file: &Path, extra: &[&str]) -> std::process::Output {
        let target = self.target();
        failprobe(&[&["memcached", verb, "--target", &target, "--file", file.to_str().unwrap()][..], extra].concat())
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn restore_keeps_newer_data_unless_overwrite_is_confirmed() {
    let node = Node::start();
    for k in ["a", "b", "c"] {
        node.put(k.as_bytes(), &format!("old-{k}"), 0);
    }
    let file = node.lab.out("dump.fpmd");
    let o = node.cli("dump", &file, &[]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    node.put(b"a", "new-a", 0);
    node.delete("b");
    let o = node.cli("restore", &file, &[]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 left as they were"), "{}", explain(&o));
    assert_eq!(node.get(b"a").as_deref(), Some("new-a"), "the application's newer value was overwritten");
    assert_eq!(node.get(b"b").as_deref(), Some("old-b"), "a missing key comes back");

    let o = node.cli("restore", &file, &["--overwrite"]);
    assert_eq!(code(&o), 2, "--overwrite without --yes must ask: {}", explain(&o));
    assert_eq!(node.get(b"a").as_deref(), Some("new-a"));
    let o = node.cli("restore", &file, &["--overwrite", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(node.get(b"a").as_deref(), Some("old-a"));
}

#[test]
fn long_ttls_survive_a_restore_and_dumps_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::start();
    let forty_days = now() + 40 * 86400;
    node.put(b"long", "kept", forty_days);
    node.put(&[b'b', 0xff, 0xfe], "bytes key", 0);
    let file = node.lab.out("dump.fpmd");
    let o = node.cli("dump", &file, &[]);
    assert_eq!(code(&o), 0, "a key that is not UTF-8 must not abort a dump: {}", explain(&o));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    node.delete("long");
    node.lab.rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
        s.write_all(b"delete b\xff\xfe\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).await.unwrap();
    });
    let o = node.cli("restore", &file, &[]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(node.get(b"long").as_deref(), Some("kept"), "a 40-day TTL sent as relative seconds vanishes at once");
    assert_eq!(node.get(&[b'b', 0xff, 0xfe]).as_deref(), Some("bytes key"));
    // The LRU crawler behind metadump may be busy a moment (another dump, on a loaded machine):
    // asked again, at most ten times.
    let listed = || node.conn(async |c, d| c.metadump(d).await.unwrap()).into_iter().find(|(k, _)| k == b"long");
    let long = (0..10)
        .find_map(|_| {
            listed().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(200));
                None
            })
        })
        .expect("listed")
        .1;
    assert!((long - forty_days as i64).abs() <= 2, "expiry {long}, expected {forty_days}");
}

#[test]
fn a_dump_cannot_smuggle_commands_into_the_text_protocol() {
    use base64::Engine;
    let node = Node::start();
    node.put(b"canary", "alive", 0);
    // A well-formed dump (right count and checksum) whose key would end the `add` line and send
    // `flush_all` as a command of its own.
    let b64 = base64::engine::general_purpose::STANDARD;
    let line = serde_json::json!({
        "node": 0, "key": b64.encode(b"x 0 0 1\r\nz\r\nflush_all"), "flags": 0, "exp": -1, "value": b64.encode(b"v")
    })
    .to_string();
    let mut hash = 0xcbf29ce484222325u64;
    for b in line.as_bytes() {
        hash = (hash ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    let file = node.lab.out("evil.fpmd");
    let trailer = serde_json::json!({"items": 1, "fnv1a": format!("{hash:016x}")});
    std::fs::write(&file, format!("failprobe-memcached-dump v1\n{line}\n{trailer}\n")).unwrap();
    let o = node.cli("restore", &file, &["--overwrite", "--yes"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2"), "{}", explain(&o));
    assert_eq!(node.get(b"canary").as_deref(), Some("alive"));
}
