//! Memcached: a small async client for the text protocol (every request under a deadline, a
//! failed connection rebuilt), and the dump / restore the seed's team ran around every node
//! replacement.

pub mod dump;
pub mod proto;
