//! Why failprobe speaks the memcached protocol itself: the `memcache` crate measured against
//! failprobe's client on a local memcached, for latency, a hung node (SIGSTOP) and a restarted
//! node. Prints figures; run with `cargo bench --bench memcache_client`.

use failprobe::lab::{Lab, Topology};
use failprobe::memcached::proto::{Conn, Item};
use std::time::{Duration, Instant};

const N: usize = 2000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("memcache_client: run with `cargo bench --bench memcache_client`");
        return;
    }
    if std::process::Command::new("memcached").arg("-h").output().is_err() {
        println!("memcache_client: memcached not on PATH, skipped");
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = rt.block_on(Lab::up(Topology::Memcached, dir.path(), true)).expect("lab");
    let node = lab.nodes()[0].clone();
    let addr = format!("127.0.0.1:{}", node.port);
    let url = format!("memcache://{addr}?timeout=0.25&protocol=ascii");
    let crate_client = memcache::Client::connect(url.as_str()).expect("memcache client");

    let crate_lat = percentiles((0..N).map(|i| {
        let t = Instant::now();
        crate_client.set(&format!("bench:{i}"), "v", 60).expect("set");
        let _: Option<String> = crate_client.get(&format!("bench:{i}")).expect("get");
        t.elapsed()
    }));
    let ours_lat = rt.block_on(async {
        let mut c = Conn::connect(&addr, tokio::time::Instant::now() + Duration::from_secs(1)).await.expect("connect");
        let mut out = Vec::new();
        for i in 0..N {
            let t = Instant::now();
            let d = tokio::time::Instant::now() + Duration::from_millis(250);
            let item = Item { key: format!("bench:{i}").into_bytes(), flags: 0, value: b"v".to_vec() };
            c.set(&item, Duration::from_secs(60), d).await.expect("set");
            c.get(&item.key, d).await.expect("get");
            out.push(t.elapsed());
        }
        percentiles(out.into_iter())
    });
    println!("set+get round trip, {N} sequential: memcache crate {crate_lat}; failprobe {ours_lat}");

    // A hung node: how long until each client gives up on one request?
    let _ = failprobe::os::signal_verified(node.pid as u64, &[node.addr()], libc::SIGSTOP);
    // The crate's call is given 5 s on its own thread, then the node is resumed.
    let (tx, rx) = std::sync::mpsc::channel();
    let client = crate_client.clone();
    let t = Instant::now();
    let worker = std::thread::spawn(move || {
        let r: Result<Option<String>, _> = client.get("bench:1");
        let _ = tx.send((t.elapsed(), r.is_err()));
    });
    let crate_hung = rx.recv_timeout(Duration::from_secs(5));
    let ours_hung = rt.block_on(async {
        let t = Instant::now();
        let d = tokio::time::Instant::now() + Duration::from_millis(250);
        let r = match Conn::connect(&addr, d).await {
            Ok(mut c) => c.get(b"bench:1", d).await.map(|_| ()),
            Err(e) => Err(e),
        };
        (t.elapsed(), r.is_err())
    });
    let _ = failprobe::os::signal_verified(node.pid as u64, &[node.addr()], libc::SIGCONT);
    let crate_hung = match crate_hung {
        Ok((took, err)) => format!("gave up after {took:?} (error: {err})"),
        Err(_) => "had not returned after 5 s".to_string(),
    };
    let _ = worker.join();
    println!(
        "SIGSTOPped node, one get: memcache crate {crate_hung}; failprobe gave up after {:?} (error: {})",
        ours_hung.0, ours_hung.1
    );

    // A replaced node: the crate's pooled connection is dead; how many requests fail, how long?
    rt.block_on(lab.restart_port(node.port)).expect("restart");
    let t = Instant::now();
    let mut failures = 0;
    while t.elapsed() < Duration::from_secs(5) {
        match crate_client.get::<String>("bench:1") {
            Ok(_) => break,
            Err(_) => failures += 1,
        }
    }
    println!(
        "after a node restart the memcache crate failed {failures} request(s) over {:?} before one succeeded",
        t.elapsed()
    );
}

fn percentiles(samples: impl Iterator<Item = Duration>) -> String {
    let mut v: Vec<Duration> = samples.collect();
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    format!("p50 {:?} p99 {:?} max {:?}", at(0.5), at(0.99), v[v.len() - 1])
}
