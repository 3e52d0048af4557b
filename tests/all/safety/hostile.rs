//! A fake Redis on loopback that answers the handshake and ROLE like a primary, then answers
//! failprobe's probes with replies no real server sends. Each run must end within its
//! deadlines, classify the failures, not panic, and keep its memory bounded.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Hostility {
    /// `$4294967296` and then as many bytes as the client will take.
    HugeBulk,
    /// A simple string in bytes that are not UTF-8.
    NotUtf8,
    /// `+aaaa…` that never ends.
    EndlessLine,
    /// Half of a bulk reply, then silence.
    HalfThenSilence,
    /// CLUSTER SLOTS with upside-down and out-of-range slot ranges.
    BrokenClusterSlots,
    /// Writes acknowledged, then a write log of 2^63 entries, none of them a number sent.
    EndlessLog,
    /// A well-behaved primary that reports Redis 6.0.16, which has no FAILOVER command; it
    /// counts the FAILOVER commands it is sent.
    OldVersion,
    /// A subscriber's channel that repeats failprobe's first message as fast as it can.
    RepeatingMessages,
}

/// FAILOVER commands the `OldVersion` server was sent.
static FAILOVERS_SENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Reads one RESP command (an array of bulk strings); None when the client is gone.
fn read_command<S: Read>(r: &mut std::io::BufReader<S>) -> Option<Vec<String>> {
    use std::io::BufRead;
    let mut line = String::new();
    r.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0; len + 2];
        r.read_exact(&mut buf).ok()?;
        args.push(String::from_utf8_lossy(&buf[..len]).to_uppercase());
    }
    Some(args)
}

fn serve<S: Read + Write>(stream: S, how: Hostility, port: u16) {
    let mut reader = std::io::BufReader::new(stream);
    let started = Instant::now();
    while let Some(cmd) = read_command(&mut reader) {
        let out = reader.get_mut();
        let name = cmd.first().cloned().unwrap_or_default();
        let reply: Vec<u8> = match (name.as_str(), cmd.get(1).map(String::as_str)) {
            ("ROLE", _) => b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n".to_vec(),
            ("INFO", _) => {
                let body = match how {
                    Hostility::OldVersion => {
                        "# Server\r\nredis_version:6.0.16\r\nredis_mode:standalone\r\nrun_id:fake\r\n"
                    }
                    _ => "# Server\r\nrun_id:fake\r\n",
                };
                format!("${}\r\n{body}\r\n", body.len()).into_bytes()
            }
            ("FAILOVER", _) => {
                FAILOVERS_SENT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                b"-ERR unknown command 'FAILOVER'\r\n".to_vec()
            }
            ("CLUSTER", Some("SLOTS")) => {
                let node = format!("*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$4\r\nfake\r\n");
                format!("*2\r\n*3\r\n:16000\r\n:5\r\n{node}*3\r\n:0\r\n:99999\r\n{node}").into_bytes()
            }
            ("SUBSCRIBE", Some(channel)) if matches!(how, Hostility::RepeatingMessages) => {
                let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
                let confirm = format!("*3\r\n{}{}:1\r\n", bulk("subscribe"), bulk(channel));
                let message = format!("*3\r\n{}{}{}", bulk("message"), bulk(channel), bulk("1 0")).repeat(1000);
                let _ = out.write_all(confirm.as_bytes());
                while started.elapsed() < Duration::from_secs(10) && out.write_all(message.as_bytes()).is_ok() {}
                return;
            }
            ("PUBLISH", _) => b":1\r\n".to_vec(),
            ("MULTI", _) => b"+OK\r\n".to_vec(),
            ("EXEC", _) if matches!(how, Hostility::EndlessLog) => b"*3\r\n:1\r\n:1\r\n$-1\r\n".to_vec(),
            ("GET", _) if matches!(how, Hostility::EndlessLog) => b"$-1\r\n".to_vec(),
            ("LLEN", _) if matches!(how, Hostility::EndlessLog) => b":9223372036854775807\r\n".to_vec(),
            ("LRANGE", _) if matches!(how, Hostility::EndlessLog) => {
                let mut page = b"*1000\r\n".to_vec();
                for _ in 0..1000 {
                    page.extend_from_slice(b"$9\r\n999999999\r\n");
                }
                page
            }
            ("RPUSH" | "PEXPIRE" | "EVAL", _) => b"+QUEUED\r\n".to_vec(),
            ("EXEC" | "GET" | "LRANGE" | "DBSIZE" | "EXISTS", _) => match how {
                Hostility::HugeBulk => {
                    let _ = out.write_all(b"$4294967296\r\n");
                    let chunk = vec![b'x'; 1 << 20];
                    while started.elapsed() < Duration::from_secs(20) && out.write_all(&chunk).is_ok() {}
                    return;
                }
                Hostility::EndlessLine => {
                    let _ = out.write_all(b"+");
                    let chunk = vec![b'a'; 1 << 20];
                    while started.elapsed() < Duration::from_secs(20) && out.write_all(&chunk).is_ok() {}
                    return;
                }
                Hostility::NotUtf8 => b"+\xff\xfe\xfd\r\n".to_vec(),
                Hostility::HalfThenSilence => {
                    let _ = out.write_all(b"$10\r\nabc");
                    std::thread::sleep(Duration::from_secs(20));
                    return;
                }
                Hostility::BrokenClusterSlots | Hostility::EndlessLog | Hostility::RepeatingMessages => {
                    b":0\r\n".to_vec()
                }
                Hostility::OldVersion if name == "EXEC" => b"*3\r\n:1\r\n:1\r\n$-1\r\n".to_vec(),
                Hostility::OldVersion => b"$-1\r\n".to_vec(),
            },
            _ => b"+OK\r\n".to_vec(),
        };
        if out.write_all(&reply).and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}

/// The fake server, in plain TCP or (with a server configuration) TLS.
fn fake_server(how: Hostility, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // Bounded: a run opens a handful of connections (probes, topology, integrity).
        for stream in listener.incoming().take(200).flatten() {
            let tls = tls.clone();
            std::thread::spawn(move || match tls {
                None => serve(stream, how, port),
                Some(config) => {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    serve(rustls::StreamOwned::new(conn, stream), how, port)
                }
            });
        }
    });
    port
}

/// A TLS server configuration from `certificates` (a private CA and a localhost certificate).
fn tls_server_config(dir: &std::path::Path) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    certificates(dir);
    let certs: Vec<CertificateDer> =
        CertificateDer::pem_file_iter(dir.join("server.crt")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    std::sync::Arc::new(config)
}

/// Runs `cmd` to the end, sampling its peak RSS every 20 ms; fails the test when it runs past
/// `limit`.
fn output_and_peak_rss(cmd: &mut std::process::Command, limit: Duration, what: &str) -> (std::process::Output, u64) {
    let started = Instant::now();
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let mut peak = 0;
    while !waiter.is_finished() {
        peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
        assert!(started.elapsed() < limit, "{what}: failprobe did not end within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (waiter.join().unwrap(), peak)
}

/// Peak resident memory of a running process (kB), from /proc.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

type RunOutcome = (std::process::Output, Option<serde_json::Value>, u64, Duration);

fn run_against(how: Hostility, tls: bool) -> RunOutcome {
    run_against_with(how, tls, &[])
}

fn run_against_with(how: Hostility, tls: bool, extra: &[&str]) -> RunOutcome {
    let dir = tempfile::tempdir().unwrap();
    let port = fake_server(how, tls.then(|| tls_server_config(dir.path())));
    let scheme = match (how, tls) {
        (Hostility::BrokenClusterSlots, _) => "redis+cluster",
        (_, true) => "rediss",
        (_, false) => "redis",
    };
    let target = format!("{scheme}://localhost:{port}");
    let out = dir.path().join("run");
    let started = Instant::now();
    let mut cmd = crate::common::failprobe_command();
    if tls {
        cmd.env("FAILPROBE_TLS_CA_FILE", dir.path().join("ca.crt"));
    }
    cmd.args(["run", "--target", &target, "--trigger", "none", "--duration", "2s", "--timeout", "100ms", "--quiet"])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .stdin(std::process::Stdio::null());
    let (o, peak) = output_and_peak_rss(&mut cmd, Duration::from_secs(60), &format!("{how:?}"));
    let s = std::fs::read_to_string(out.join("summary.json")).ok().map(|t| serde_json::from_str(&t).unwrap());
    (o, s, peak, started.elapsed())
}

#[test]
fn hostile_replies_end_in_classified_errors_with_bounded_memory() {
    let cases = [Hostility::HugeBulk, Hostility::EndlessLine, Hostility::NotUtf8, Hostility::HalfThenSilence];
    // The same replies over TLS: failprobe's own TLS stream passes through the same bounds.
    let tls_cases = [Hostility::HugeBulk, Hostility::EndlessLine];
    for (how, tls) in cases.map(|h| (h, false)).into_iter().chain(tls_cases.map(|h| (h, true))) {
        let (o, s, peak_kb, took) = run_against(how, tls);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{how:?}: {}", explain(&o));
        assert!(matches!(code(&o), 0..=2), "{how:?}: {}", explain(&o));
        assert!(took < Duration::from_secs(30), "{how:?} took {took:?}");
        assert!(peak_kb < 200_000, "{how:?}: peak RSS {peak_kb} kB");
        let s = s.unwrap_or_else(|| panic!("{how:?}: no summary: {}", explain(&o)));
        let writes = &s["trials"][0]["writes"];
        assert!(u(&writes["failed"]) > 0, "{how:?}: {writes}");
        let errors = writes["errors"].as_object().unwrap();
        assert!(!errors.is_empty(), "{how:?}: failures without a class");
        eprintln!("{how:?} (tls {tls}): exit {}, peak RSS {peak_kb} kB, {took:?}, errors {errors:?}", code(&o));
    }
}

#[test]
fn a_write_log_longer_than_the_writes_sent_is_not_followed() {
    let (o, s, peak_kb, took) = run_against(Hostility::EndlessLog, false);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(peak_kb < 200_000, "peak RSS {peak_kb} kB");
    let i = &s.unwrap()["trials"][0]["integrity"];
    // Read up to the writes sent; none of the server's numbers was ours: every write is lost.
    assert_eq!(i["checked"], true, "{i}");
    assert!(u(&i["acked_writes"]) > 0 && u(&i["lost_acked_writes"]) == u(&i["acked_writes"]), "{i}");
}

/// A server that repeats a message endlessly cannot make failprobe record more deliveries than
/// twice the messages it published (and a thousand spare): the subscription is dropped, said
/// so on the timeline, and memory stays bounded.
#[test]
fn a_channel_repeating_a_message_endlessly_is_not_followed() {
    let (o, s, peak_kb, took) = run_against_with(Hostility::RepeatingMessages, false, &["--probe", "pubsub"]);
    assert!(matches!(code(&o), 0..=1), "{}", explain(&o));
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(peak_kb < 200_000, "peak RSS {peak_kb} kB");
    let s = s.unwrap_or_else(|| panic!("no summary: {}", explain(&o)));
    let p = &s["trials"][0]["clients"][0]["pubsub"];
    let (published, duplicates) = (u(&p["published"]), u(&p["duplicates"]));
    assert!(published > 0 && duplicates > 0, "{p}");
    assert!(duplicates + u(&p["delivered"]) <= 2 * published + 1_000, "{p}");
    assert!(u(&p["subscriptions_lost"]) >= 1, "{p}");
}

#[test]
fn a_broken_cluster_slots_reply_is_refused_clearly() {
    let (o, _, _, took) = run_against(Hostility::BrokenClusterSlots, false);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no slots"), "{}", explain(&o));
}

/// A fake memcached: `lru_crawler metadump` lists keys, `get` answers with `reply`.
fn fake_memcached(reply: &'static [u8], endless: bool) -> u16 {
    use std::io::BufRead;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20).flatten() {
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                let mut line = String::new();
                let started = Instant::now();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if line.starts_with("lru_crawler") {
                        let _ = out.write_all(b"key=k1 exp=-1 la=1 cas=1 fetch=no cls=1 size=60\r\nEND\r\n");
                    } else if line.starts_with("get") {
                        let _ = out.write_all(reply);
                        let chunk = vec![b'x'; 1 << 20];
                        while endless && started.elapsed() < Duration::from_secs(20) && out.write_all(&chunk).is_ok() {}
                    } else {
                        let _ = out.write_all(b"ERROR\r\n");
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

#[test]
fn a_hostile_memcached_cannot_make_a_dump_allocate_what_it_announces() {
    let cases: [(&str, &'static [u8], bool); 3] = [
        ("4 GiB value", b"VALUE k1 0 4294967296\r\n", true),
        ("endless line", b"VALUE k1 0 ", true),
        ("more values than keys", b"VALUE k1 0 1\r\na\r\nVALUE k2 0 1\r\nb\r\nEND\r\n", false),
    ];
    for (what, reply, endless) in cases {
        let port = fake_memcached(reply, endless);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dump.fpmd");
        let mut cmd = crate::common::failprobe_command();
        cmd.args(["memcached", "dump", "--target", &format!("memcache://127.0.0.1:{port}"), "--file"]).arg(&file);
        let (o, peak) = output_and_peak_rss(&mut cmd, Duration::from_secs(30), what);
        assert_eq!(code(&o), 2, "{what}: {}", explain(&o));
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{what}: {}", explain(&o));
        assert!(peak < 200_000, "{what}: peak RSS {peak} kB");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{what}: a failed dump left {left:?}");
    }
}

#[test]
fn failover_is_refused_before_anything_is_written_on_a_server_without_it() {
    let port = fake_server(Hostility::OldVersion, None);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let target = format!("redis://127.0.0.1:{port}");
    let o = failprobe(&[
        "run",
        "--target",
        &target,
        "--trigger",
        "failover",
        "--yes",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs Redis 6.2 or later, or Valkey") && err.contains("runs redis 6.0.16"), "{err}");
    assert_eq!(FAILOVERS_SENT.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing was fired");
    assert!(!out.join("samples.csv").exists(), "nothing was recorded");
}
