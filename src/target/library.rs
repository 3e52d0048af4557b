//! The `redis` crate's own clients for a target, built the way an application builds them from
//! its settings (the `redis-rs` profile): the crate's defaults, the target's TLS and credentials.

use super::{Discovery, Target};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, RedisError, TlsCertificates, TlsMode};

impl Target {
    /// The private CA of `FAILPROBE_TLS_CA_FILE`, as the crate takes it.
    fn library_certificates(&self) -> Option<TlsCertificates> {
        self.tls_ca.clone().filter(|_| self.tls).map(|ca| TlsCertificates { client_tls: None, root_cert: Some(ca) })
    }

    fn library_tls_mode(&self) -> Option<TlsMode> {
        self.tls.then_some(if self.insecure_tls { TlsMode::Insecure } else { TlsMode::Secure })
    }

    /// A `ClusterClient` on the seeds (the crate discovers the shards and follows MOVED itself).
    pub(crate) fn library_cluster_client(&self) -> Result<redis::cluster::ClusterClient, RedisError> {
        let Discovery::Cluster { seeds } = &self.discovery else {
            return Err(RedisError::from((redis::ErrorKind::InvalidClientConfig, "not a cluster target")));
        };
        let seeds = seeds.iter().map(|(host, port)| self.info(host, *port, self.password.as_deref(), 0));
        let mut builder = redis::cluster::ClusterClient::builder(seeds.collect::<Result<Vec<_>, _>>()?);
        if let Some(mode) = self.library_tls_mode() {
            builder = builder.tls(mode);
        }
        if let Some(certificates) = self.library_certificates() {
            builder = builder.certs(certificates);
        }
        builder.build()
    }

    /// The primary's `Client` as the crate's Sentinel support names it now (`SentinelClient`
    /// asked once, as an application does at start-up).
    pub(crate) async fn library_sentinel_primary(&self) -> Result<Client, RedisError> {
        let Discovery::Sentinel { sentinels, master } = &self.discovery else {
            return Err(RedisError::from((redis::ErrorKind::InvalidClientConfig, "not a Sentinel target")));
        };
        let addrs = sentinels.iter().map(|(host, port)| match self.tls {
            true => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: self.insecure_tls,
                tls_params: None,
            },
            false => ConnectionAddr::Tcp(host.clone(), *port),
        });
        let mut builder =
            SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?.set_client_to_redis_db(self.db);
        if let Some(user) = &self.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = &self.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if let Some(mode) = self.library_tls_mode() {
            builder = builder.set_client_to_redis_tls_mode(mode).set_client_to_sentinel_tls_mode(mode);
        }
        if let Some(certificates) = self.library_certificates() {
            builder = builder
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_certificates(certificates);
        }
        builder.build()?.async_get_client().await
    }
}
