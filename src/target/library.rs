//! The `redis` crate's own clients for a target, built the way an application builds them from
//! its settings (the `redis-rs` profile): the crate's defaults, the target's TLS and credentials.

use super::{Discovery, Target};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, RedisError, TlsCertificates, TlsMode};

impl Target {
    /// The target as an external adapter is given it (`FAILPROBE_TARGET`): its scheme, user
    /// name, hosts, master name and db, `#insecure` kept, and no password (that travels apart,
    /// in `FAILPROBE_PASSWORD`, and is never printed).
    pub(crate) fn url_without_password(&self) -> String {
        let tls = if self.tls { "s" } else { "" };
        let join =
            |nodes: &[(String, u16)]| nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",");
        let (scheme, hosts, path) = match &self.discovery {
            Discovery::Direct { host, port } => {
                (format!("redis{tls}"), format!("{host}:{port}"), format!("/{}", self.db))
            }
            Discovery::Sentinel { sentinels, master } => {
                (format!("redis{tls}+sentinel"), join(sentinels), format!("/{master}/{}", self.db))
            }
            Discovery::Cluster { seeds } => (format!("redis{tls}+cluster"), join(seeds), String::new()),
            Discovery::Memcache { nodes } => ("memcache".to_string(), join(nodes), String::new()),
            Discovery::Nodes { nodes } => (format!("redis{tls}"), join(nodes), format!("/{}", self.db)),
        };
        let user = self
            .username
            .as_deref()
            .map(|u| format!("{}@", percent_encoding::utf8_percent_encode(u, percent_encoding::NON_ALPHANUMERIC)))
            .unwrap_or_default();
        let fragment = if self.tls && self.insecure_tls { "#insecure" } else { "" };
        format!("{scheme}://{user}{hosts}{path}{fragment}")
    }

    /// The data nodes' and the sentinels' passwords, for an adapter's environment.
    pub(crate) fn passwords(&self) -> (Option<&str>, Option<&str>) {
        (self.password.as_deref(), self.sentinel_password.as_deref())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adapter_gets_the_url_without_its_password() {
        let cases = [
            ("redis://user:Xq9-adapter-pw@db.example:6380/2", "redis://user@db.example:6380/2"),
            ("rediss://:Xq9-adapter-pw@h:1#insecure", "rediss://h:1/0#insecure"),
            ("redis+sentinel://:Xq9-adapter-pw@s1:1,s2:2/mymaster/3", "redis+sentinel://s1:1,s2:2/mymaster/3"),
            ("redis+cluster://a:1,b:2", "redis+cluster://a:1,b:2"),
        ];
        for (url, expected) in cases {
            let target = Target::parse(url).unwrap();
            assert_eq!(target.url_without_password(), expected);
        }
        assert_eq!(Target::parse("redis://:Xq9-adapter-pw@h:1").unwrap().passwords().0, Some("Xq9-adapter-pw"));
    }
}
