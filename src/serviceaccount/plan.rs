//! What a link or an unlink writes: JSON patch operations on the list and on our record.

use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
use serde_json::{json, Value};

use super::{ServiceAccountOutcome, Unlink, LINKED_ANNOTATION};

/// [`LINKED_ANNOTATION`] as a JSON pointer (`/` is written `~1`).
const LINKED_PATH: &str = "/metadata/annotations/ecr-refresh~1linked";

/// What linking `secret` takes: the patch operations (none: nothing to write) and what they
/// do. Appending the entry records it as ours in the same patch.
pub(super) fn link_plan(sa: &ServiceAccount, secret: &str) -> (Vec<Value>, ServiceAccountOutcome) {
    let refs = sa.image_pull_secrets.as_deref().unwrap_or_default();
    if refs.iter().any(|r| r.name == secret) {
        // Ours or someone else's: either way there is nothing to write, and nothing to claim.
        return (Vec::new(), ServiceAccountOutcome::AlreadyLinked);
    }
    let mut ops = vec![if refs.is_empty() {
        // No list yet: create it.
        json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": secret}]})
    } else {
        json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": secret}})
    }];
    let mut ours = linked_by_us(sa);
    ours.push(secret.to_string());
    ops.extend(record_ops(sa, ours));
    (ops, ServiceAccountOutcome::Linked)
}

/// What unlinking `secret` takes: [`link_plan`]'s counterpart. An entry not recorded as ours is
/// left alone unless `which` is [`Unlink::Any`]; a record of ours without its entry is dropped.
pub(super) fn unlink_plan(
    sa: &ServiceAccount,
    secret: &str,
    which: Unlink,
) -> (Vec<Value>, ServiceAccountOutcome) {
    let mut ours = linked_by_us(sa);
    let recorded = ours.iter().any(|n| n == secret);
    ours.retain(|n| n != secret);
    let record = record_ops(sa, ours);
    let ops = unlink_ops(sa.image_pull_secrets.as_deref(), secret);
    match (ops.is_empty(), recorded || which == Unlink::Any) {
        (false, true) => ([ops, record].concat(), ServiceAccountOutcome::Unlinked),
        (false, false) => (Vec::new(), ServiceAccountOutcome::NotOurs),
        (true, _) => (record, ServiceAccountOutcome::NotLinked),
    }
}

/// The Secrets [`LINKED_ANNOTATION`] records as linked by us.
fn linked_by_us(sa: &ServiceAccount) -> Vec<String> {
    let value = sa
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LINKED_ANNOTATION));
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// JSON patch operations that make [`LINKED_ANNOTATION`] record exactly `names`; none when it
/// already does. The `test` of the resourceVersion makes "no annotations yet" safe to act on.
fn record_ops(sa: &ServiceAccount, mut names: Vec<String>) -> Vec<Value> {
    names.sort();
    names.dedup();
    let annotations = sa.metadata.annotations.as_ref();
    let current = annotations.and_then(|a| a.get(LINKED_ANNOTATION));
    let value = names.join(",");
    match (current, annotations) {
        (Some(v), _) if *v == value => Vec::new(),
        (None, _) if names.is_empty() => Vec::new(),
        (Some(_), _) if names.is_empty() => vec![json!({"op": "remove", "path": LINKED_PATH})],
        (_, Some(_)) => vec![json!({"op": "add", "path": LINKED_PATH, "value": value})],
        (_, None) => vec![json!({
            "op": "add",
            "path": "/metadata/annotations",
            "value": {LINKED_ANNOTATION: value},
        })],
    }
}

/// JSON patch operations that remove every `secret` entry, by index from the back so earlier
/// removals do not shift later ones; none when it is not listed.
fn unlink_ops(refs: Option<&[LocalObjectReference]>, secret: &str) -> Vec<Value> {
    let refs = refs.unwrap_or_default();
    let ours: Vec<usize> = (0..refs.len())
        .filter(|&i| refs[i].name == secret)
        .collect();
    if !ours.is_empty() && ours.len() == refs.len() {
        // Leave no empty list behind, as an update of a None field would not.
        return vec![json!({"op": "remove", "path": "/imagePullSecrets"})];
    }
    ours.iter()
        .rev()
        .map(|i| json!({"op": "remove", "path": format!("/imagePullSecrets/{i}")}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn refs(names: &[&str]) -> Vec<LocalObjectReference> {
        names
            .iter()
            .map(|n| LocalObjectReference {
                name: n.to_string(),
            })
            .collect()
    }

    fn sa(names: &[&str], annotations: Option<&[(&str, &str)]>) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                annotations: annotations.map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                ..Default::default()
            },
            image_pull_secrets: (!names.is_empty()).then(|| refs(names)),
            ..Default::default()
        }
    }

    #[test]
    fn link_appends_or_creates_the_list_and_records_it() {
        let (ops, change) = link_plan(&sa(&[], None), "ours");
        assert_eq!(change, ServiceAccountOutcome::Linked);
        assert_eq!(
            ops,
            [
                json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": "ours"}]}),
                json!({"op": "add", "path": "/metadata/annotations", "value": {LINKED_ANNOTATION: "ours"}}),
            ]
        );
        // Other annotations stay: only our key is added, next to a record of another Secret.
        let (ops, _) = link_plan(
            &sa(&["theirs"], Some(&[("a", "b"), (LINKED_ANNOTATION, "zz")])),
            "ours",
        );
        assert_eq!(
            ops,
            [
                json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ours"}}),
                json!({"op": "add", "path": LINKED_PATH, "value": "ours,zz"}),
            ]
        );
        // Listed already, by us or by hand: nothing to write, and not claimed.
        for annotations in [None, Some(&[(LINKED_ANNOTATION, "ours")][..])] {
            let (ops, change) = link_plan(&sa(&["theirs", "ours"], annotations), "ours");
            assert!(ops.is_empty());
            assert_eq!(change, ServiceAccountOutcome::AlreadyLinked);
        }
    }

    #[test]
    fn unlink_takes_out_only_what_we_recorded_unless_uninstalling() {
        let ours = Some(&[(LINKED_ANNOTATION, "ours"), ("a", "b")][..]);
        let (ops, change) = unlink_plan(&sa(&["a", "ours"], ours), "ours", Unlink::Recorded);
        assert_eq!(change, ServiceAccountOutcome::Unlinked);
        assert_eq!(
            ops,
            [
                json!({"op": "remove", "path": "/imagePullSecrets/1"}),
                json!({"op": "remove", "path": LINKED_PATH}),
            ]
        );
        // Added by hand (or by a version that kept no record): theirs.
        let by_hand = sa(&["ours"], Some(&[("a", "b")]));
        assert_eq!(
            unlink_plan(&by_hand, "ours", Unlink::Recorded),
            (vec![], ServiceAccountOutcome::NotOurs)
        );
        let (ops, change) = unlink_plan(&by_hand, "ours", Unlink::Any);
        assert_eq!(change, ServiceAccountOutcome::Unlinked);
        assert_eq!(ops, [json!({"op": "remove", "path": "/imagePullSecrets"})]);
        // A record without its entry is dropped; another Secret's record stays.
        let stale = sa(&["x"], Some(&[(LINKED_ANNOTATION, "other,ours")]));
        assert_eq!(
            unlink_plan(&stale, "ours", Unlink::Recorded),
            (
                vec![json!({"op": "add", "path": LINKED_PATH, "value": "other"})],
                ServiceAccountOutcome::NotLinked
            )
        );
        assert_eq!(
            unlink_plan(&sa(&[], None), "ours", Unlink::Any),
            (vec![], ServiceAccountOutcome::NotLinked)
        );
    }

    #[test]
    fn unlink_removes_only_our_entries_from_the_back() {
        assert_eq!(
            unlink_ops(Some(&refs(&["ours", "a", "ours", "b"])), "ours"),
            [
                json!({"op": "remove", "path": "/imagePullSecrets/2"}),
                json!({"op": "remove", "path": "/imagePullSecrets/0"}),
            ]
        );
        assert_eq!(
            unlink_ops(Some(&refs(&["ours"])), "ours"),
            [json!({"op": "remove", "path": "/imagePullSecrets"})]
        );
        assert!(unlink_ops(Some(&refs(&["a"])), "ours").is_empty());
        assert!(unlink_ops(None, "ours").is_empty());
    }
}
