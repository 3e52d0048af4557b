//! `--aws-tag KEY=VALUE`: the replication groups of a fleet, found by their tags. Read-only:
//! DescribeReplicationGroups (every page) and ListTagsForResource per group; nothing else.

use crate::aws::error::explain;
use crate::aws::AwsArgs;
use crate::error::invalid;
use anyhow::Result;

/// Each `KEY=VALUE`, checked: a tag key is never empty.
pub fn parse_tags(texts: &[String]) -> Result<Vec<(String, String)>> {
    texts
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(invalid(format!("--aws-tag {t}: give KEY=VALUE"))),
        })
        .collect()
}

/// The ids of the replication groups that carry every tag, in the order AWS lists them.
pub async fn tagged_groups(api: &AwsArgs, tags: &[(String, String)]) -> Result<Vec<String>> {
    let client = crate::aws::client(api).await?;
    let mut found = Vec::new();
    let mut pages = client.describe_replication_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("DescribeReplicationGroups", e))?;
        for g in page.replication_groups() {
            let (Some(id), Some(arn)) = (g.replication_group_id(), g.arn()) else { continue };
            let listed = client
                .list_tags_for_resource()
                .resource_name(arn)
                .send()
                .await
                .map_err(|e| explain("ListTagsForResource", e))?;
            let has = |(k, v): &(String, String)| {
                listed.tag_list().iter().any(|t| t.key() == Some(k.as_str()) && t.value() == Some(v.as_str()))
            };
            if tags.iter().all(has) {
                found.push(id.to_string());
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_key_value_pairs() {
        let tags = parse_tags(&["team=cache".into(), "maintenance=".into()]).unwrap();
        assert_eq!(tags, [("team".into(), "cache".into()), ("maintenance".into(), String::new())]);
        assert!(parse_tags(&["=x".into()]).is_err());
        assert!(parse_tags(&["novalue".into()]).is_err());
    }
}
