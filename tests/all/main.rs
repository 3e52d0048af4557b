//! Every integration test in one binary: each test binary links the AWS SDK and the servers'
//! clients, and on two cores the links dominated the build. Tests that start servers take turns
//! through `common::alone` / `TestLab` (starved servers look like outages).

mod common;
mod safety;

mod adapters;
mod adapters_jvm;
mod aws_replay;
mod cli;
mod clients;
mod cluster;
mod dns;
mod docs;
mod elasticache;
mod engines;
mod failover;
mod fis;
mod fixtures;
mod fleet;
mod keep_clients;
mod memcached;
mod metrics;
mod network;
mod pubsub;
mod reports;
mod servers;
mod silent;
mod streams;
mod tls;
mod triggers;
