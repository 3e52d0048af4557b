//! AWS errors as a person reads them: the operation, AWS's error code and message, and what it
//! means for this tool. Never the SDK's debug dump.

use aws_sdk_elasticache::error::{ProvideErrorMetadata, SdkError};
use std::error::Error as StdError;
use std::fmt;

/// An ElastiCache call that failed. `code` is AWS's (e.g. `TestFailoverNotAvailableFault`), or
/// absent when the API was never reached.
#[derive(Debug)]
pub struct AwsError {
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{}: {code}: {}", self.operation, self.message)?,
            None => write!(f, "{}: {}", self.operation, self.message)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, " — {hint}")?;
        }
        Ok(())
    }
}

impl StdError for AwsError {}

impl AwsError {
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Turns an SDK error into an `AwsError` for `operation`.
pub fn explain<E, R>(operation: &'static str, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: fmt::Debug + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("UnknownError").to_string();
            let message = e.message().unwrap_or("(no message)").to_string();
            let hint = hint_for(&code, operation);
            AwsError { operation, code: Some(code), message, hint }
        }
        SdkError::TimeoutError(_) => AwsError {
            operation,
            code: None,
            message: "no answer from the ElastiCache API in time".into(),
            hint: Some("check network access to the endpoint (VPC endpoint, proxy, --endpoint-url)".into()),
        },
        _ => {
            let chain = source_chain(&err);
            let hint = if chain.contains("credential") || chain.contains("identity") {
                "no usable AWS credentials: set AWS_PROFILE / --profile, run `aws sso login`, or export AWS_ACCESS_KEY_ID"
            } else {
                "the ElastiCache API could not be reached: check --region, --endpoint-url and the network"
            };
            AwsError { operation, code: None, message: chain, hint: Some(hint.into()) }
        }
    }
}

/// Every distinct message down the error's source chain, joined: short, and still says why.
fn source_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// What an AWS error code means here, in one sentence.
pub(crate) fn hint_for(code: &str, operation: &str) -> Option<String> {
    let text = match code {
        "TestFailoverNotAvailableFault" => {
            "TestFailover quota: 15 node groups (shards) per rolling 24 h per account and region, and a cluster-mode group must finish its previous node replacement first"
        }
        "ApiCallRateForCustomerExceededFault" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
            "AWS throttled this account's API calls: wait a minute and retry"
        }
        "InvalidReplicationGroupStateFault" => {
            "the replication group is not `available` (modifying, snapshotting or failing over): wait until it is"
        }
        "InvalidCacheClusterStateFault" => "a cache cluster is not `available`: wait until it is",
        "NodeGroupNotFoundFault" => "no such node group in this replication group (they are named 0001, 0002, ...)",
        "ReplicationGroupNotFoundFault" => "no such replication group here: check the id, --region and --profile",
        "CacheClusterNotFoundFault" => "no such cache cluster here: check the id, --region and --profile",
        "InvalidKmsKeyFault" => "the group's KMS key is disabled or not accessible to these credentials",
        "InvalidParameterCombination" | "InvalidParameterValue" => "ElastiCache refused the parameters as given",
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            return Some(format!("these credentials may not call elasticache:{operation} (IAM policy)"))
        }
        "InvalidClientTokenId" | "UnrecognizedClientException" | "SignatureDoesNotMatch" | "AuthFailure" => {
            "AWS rejected the credentials: check the profile or access key"
        }
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => {
            "the credentials have expired: refresh them (e.g. `aws sso login`)"
        }
        _ => return None,
    };
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_known_codes_and_keeps_aws_words() {
        let e = AwsError {
            operation: "TestFailover",
            code: Some("TestFailoverNotAvailableFault".into()),
            message: "quota exceeded".into(),
            hint: hint_for("TestFailoverNotAvailableFault", "TestFailover"),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("TestFailover: TestFailoverNotAvailableFault: quota exceeded — TestFailover quota: 15")
        );
        assert!(hint_for("AccessDenied", "TestFailover").unwrap().contains("elasticache:TestFailover"));
        assert_eq!(hint_for("SomethingNew", "X"), None);
    }
}
