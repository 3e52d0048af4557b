//! ElastiCache through the AWS SDK: the client (credentials and region from aws-config's default
//! chain), target discovery, the event log and its local history, and update actions. The
//! triggers that call it live in `control::elasticache`.

pub mod error;
pub mod events;
pub(crate) mod fis;
pub mod group;
pub mod history;
pub mod maintenance;
pub(crate) mod modify;
pub(crate) mod snapshot;
pub mod watch;

use aws_config::{BehaviorVersion, Region};
pub use aws_sdk_elasticache::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use std::time::Duration;

/// `--region`, `--profile`, `--endpoint-url`; anything unset comes from aws-config's default
/// chain (environment, profiles, SSO, IMDS / ECS roles), `AWS_ENDPOINT_URL_ELASTICACHE` included.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AwsArgs {
    /// AWS region (default: AWS_REGION or the profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile (default: AWS_PROFILE or `default`).
    #[arg(long)]
    pub profile: Option<String>,
    /// ElastiCache API endpoint, e.g. a VPC endpoint (also AWS_ENDPOINT_URL_ELASTICACHE).
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

/// A client whose every call is bounded: a hung API call must not hold a trial forever.
pub async fn client(args: &AwsArgs) -> anyhow::Result<Client> {
    Ok(Client::new(&config(args).await?))
}

/// The configuration every AWS client of a run shares: bounded calls over HTTPS on ring,
/// `--region` / `--profile` / `--endpoint-url` over aws-config's default chain.
pub(crate) async fn config(args: &AwsArgs) -> anyhow::Result<aws_config::SdkConfig> {
    // HTTPS on ring, like the Redis TLS connections (one crypto library in the binary).
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(60))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http).timeout_config(timeouts);
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &args.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(crate::error::invalid(
            "no AWS region: pass --region, set AWS_REGION, or set `region` in the AWS profile",
        ));
    }
    Ok(config)
}
