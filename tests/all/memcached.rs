//! Memcached: a node replacement empties the node; dump and restore around it loses nothing.

use crate::common::*;
use failprobe::lab::Topology;
use failprobe::memcached::proto::{Conn, Item};
use std::time::Duration;
use tokio::time::Instant;

fn node_addr(lab: &TestLab, i: usize) -> String {
    lab.lab.nodes()[i].addr().to_string()
}

fn target(lab: &TestLab) -> String {
    lab.lab.target_url()
}

/// Items a real application might hold: binary values, keys that metadump has to URL-encode.
fn items() -> Vec<(Item, Duration)> {
    (0..500u32)
        .map(|i| {
            let value: Vec<u8> = (0..(i % 300) + 1).map(|j| ((i * 7 + j * 13) % 256) as u8).collect();
            let key = format!("app:{{user}}:%{i}:ü").into_bytes();
            let ttl = if i % 2 == 0 { Duration::ZERO } else { Duration::from_secs(600) };
            (Item { key, flags: i * 3, value }, ttl)
        })
        .collect()
}

#[test]
fn an_elasticache_configuration_endpoint_stands_for_its_nodes() {
    let lab = TestLab::start(Topology::Memcached);
    let endpoint = ConfigEndpoint::start(lab.lab.nodes().iter().map(|n| n.addr()).collect());
    let out = lab.out("run");
    let o = failprobe(&[
        "run",
        "--target",
        &format!("memcache://127.0.0.1:{}", endpoint.port),
        "--trigger",
        "none",
        "--duration",
        "1s",
        "--seed-keys",
        "100",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let shards = s["trials"][0]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "both listed nodes probed");
    let listed = s["trials"][0]["topology"][0]["primary"].as_str().unwrap();
    assert!(
        lab.lab.nodes().iter().all(|n| listed.contains(&n.port.to_string())),
        "node list on the timeline: {listed}"
    );
    for (sh, node) in shards.iter().zip(lab.lab.nodes()) {
        assert_eq!(sh["integrity"]["log_server"], node.addr().to_string());
        assert_eq!(u(&sh["integrity"]["surviving_seeded_keys"]), 100);
        assert_eq!(u(&sh["writes"]["failed"]), 0);
    }
}

#[test]
fn restart_empties_the_replaced_node_only() {
    let lab = TestLab::start(Topology::Memcached);
    let (o, out) = lab.run("run", &["--trigger", "restart", "--shard", "0", "--seed-keys", "3000"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let shards = s["trials"][0]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    let (n0, n1) = (&shards[0], &shards[1]);
    assert_eq!(u(&n0["integrity"]["seeded_keys"]), 3000);
    assert_eq!(u(&n0["integrity"]["surviving_seeded_keys"]), 0, "a replaced node keeps nothing");
    assert_eq!(u(&n1["integrity"]["surviving_seeded_keys"]), 3000, "the other node keeps everything");
    let outages = n0["writes"]["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{outages:?}");
    assert_eq!(outages[0]["recovered"], true);
    assert!(n1["writes"]["outages"].as_array().unwrap().is_empty());
    // The probe's own acknowledged writes on the restarted node are gone too.
    assert!(u(&n0["integrity"]["lost_acked_writes"]) > 0);
    assert_eq!(u(&n1["integrity"]["lost_acked_writes"]), 0);
    // What was lost where, and how memcached data comes back.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lost = format!("trial 0 {}: 3000 of 3000 seeded keys lost", n0["name"].as_str().unwrap());
    assert!(stdout.contains(&lost), "{stdout}");
    assert!(stdout.contains("failprobe memcached restore --target URL --file F"), "{stdout}");
}

#[test]
fn dump_restart_restore_brings_every_key_back_byte_identical() {
    let lab = TestLab::start(Topology::Memcached);
    let addr = node_addr(&lab, 0);
    let items = items();
    let rt = &lab.rt;
    let exp_before = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut c = Conn::connect(&addr, deadline).await.unwrap();
        for (item, ttl) in &items {
            c.set(item, *ttl, deadline).await.unwrap();
        }
        c.metadump(deadline).await.unwrap()
    });
    let file = lab.out("dump.fpmd");
    let o = failprobe(&["memcached", "dump", "--target", &target(&lab), "--file", file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    rt.block_on(lab.lab.restart_port(lab.lab.nodes()[0].port)).unwrap();
    let o = failprobe(&["memcached", "restore", "--target", &target(&lab), "--file", file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("restored 500 keys"), "{}", explain(&o));
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut c = Conn::connect(&addr, deadline).await.unwrap();
        for (item, _) in &items {
            let got = c.get(&item.key, deadline).await.unwrap().expect("key restored");
            assert_eq!(&got, item, "byte-identical with its flags");
        }
        for (key, exp) in c.metadump(deadline).await.unwrap() {
            let before = exp_before.iter().find(|(k, _)| *k == key).map(|(_, e)| *e).expect("same keys");
            if before == -1 {
                assert_eq!(exp, -1);
            } else {
                assert!(exp != -1 && exp <= before, "TTL no longer than before: {exp} > {before}");
            }
        }
    });
}

#[test]
fn a_damaged_dump_is_refused_whole_and_an_unreachable_node_is_named() {
    let lab = TestLab::start(Topology::Memcached);
    let addr = node_addr(&lab, 0);
    lab.rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = Conn::connect(&addr, deadline).await.unwrap();
        for (item, ttl) in items().iter().take(50) {
            c.set(item, *ttl, deadline).await.unwrap();
        }
    });
    let file = lab.out("dump.fpmd");
    let o = failprobe(&["memcached", "dump", "--target", &target(&lab), "--file", file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let text = std::fs::read_to_string(&file).unwrap();
    lab.rt.block_on(lab.lab.restart_port(lab.lab.nodes()[0].port)).unwrap();

    let cut = lab.out("cut.fpmd");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let altered = lab.out("altered.fpmd");
    std::fs::write(&altered, text.replacen("\"flags\":3", "\"flags\":4", 1)).unwrap();
    for bad in [&cut, &altered] {
        let o = failprobe(&["memcached", "restore", "--target", &target(&lab), "--file", bad.to_str().unwrap()]);
        assert_eq!(code(&o), 2, "{}", explain(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was restored"), "{}", explain(&o));
    }
    let keys = lab.rt.block_on(async {
        let mut c = Conn::connect(&addr, Instant::now() + Duration::from_secs(5)).await.unwrap();
        c.metadump(Instant::now() + Duration::from_secs(5)).await.unwrap()
    });
    assert!(keys.is_empty(), "a refused dump wrote nothing: {} keys", keys.len());

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = failprobe(&[
        "memcached",
        "dump",
        "--target",
        &format!("memcache://127.0.0.1:{port}"),
        "--file",
        lab.out("x").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("127.0.0.1:{port} not reachable")), "{}", explain(&o));
    let o = failprobe(&[
        "run",
        "--target",
        &format!("memcache://127.0.0.1:{port}"),
        "--quiet",
        "--out",
        lab.out("r").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(!lab.out("r").exists());
}
