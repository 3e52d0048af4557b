//! A real DNS server on loopback (hickory-server, UDP and TCP on one OS-chosen port) that is
//! authoritative for `failprobe.test.` and answers one name with an A record the test flips.

use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Zone = InMemoryZoneHandler<TokioRuntimeProvider>;

pub struct DnsServer {
    pub addr: SocketAddr,
    pub name: String,
    zone: Arc<Zone>,
    ttl: u32,
    runtime: tokio::runtime::Runtime,
}

impl DnsServer {
    /// Serves `<label>.failprobe.test` → `ip` with `ttl` seconds.
    pub fn start(label: &str, ip: Ipv4Addr, ttl: u32) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let origin = Name::from_str("failprobe.test.").unwrap();
        let name = Name::from_str(&format!("{label}.failprobe.test.")).unwrap();
        let soa = SOA::new(
            Name::from_str("ns.failprobe.test.").unwrap(),
            Name::from_str("hostmaster.failprobe.test.").unwrap(),
            1,
            60,
            60,
            600,
            ttl,
        );
        let mut records = BTreeMap::new();
        let soa = Record::from_rdata(origin.clone(), ttl, RData::SOA(soa));
        records.insert(RrKey::new(LowerName::new(&origin), RecordType::SOA), RecordSet::from(soa));
        let a = Record::from_rdata(name.clone(), ttl, RData::A(A(ip)));
        records.insert(RrKey::new(LowerName::new(&name), RecordType::A), RecordSet::from(a));
        let zone = Arc::new(Zone::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny).unwrap());
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let addr = runtime.block_on(async {
            // UDP and TCP on the same port: the resolver falls back to TCP on a truncated answer.
            loop {
                let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let addr = udp.local_addr().unwrap();
                let Ok(tcp) = tokio::net::TcpListener::bind(addr).await else { continue };
                let mut server = Server::new(catalog);
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 4096);
                tokio::spawn(async move {
                    let _ = server.block_until_done().await;
                });
                break addr;
            }
        });
        DnsServer { addr, name: name.to_string().trim_end_matches('.').to_string(), zone, ttl, runtime }
    }

    /// From now on the name answers `ip`.
    pub fn flip(&self, ip: Ipv4Addr) {
        let name = Name::from_str(&format!("{}.", self.name)).unwrap();
        let a = Record::from_rdata(name.clone(), self.ttl, RData::A(A(ip)));
        self.runtime.block_on(async {
            let mut records = self.zone.records_mut().await;
            records.insert(RrKey::new(LowerName::new(&name), RecordType::A), Arc::new(RecordSet::from(a)));
        });
    }

    /// Flips the answer to `ip` as soon as `file` exists (a trigger command creates it), on a
    /// thread of its own; the handle gives the moment it flipped.
    pub fn flip_when_created(self: &Arc<Self>, file: &Path, ip: Ipv4Addr) -> std::thread::JoinHandle<Option<Instant>> {
        let (server, file): (Arc<Self>, PathBuf) = (self.clone(), file.to_path_buf());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                if file.exists() {
                    server.flip(ip);
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            None
        })
    }
}
