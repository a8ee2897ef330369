//! What reading an input costs. The interpreter copies a value out of a
//! variable when a rule reads it, all of it, every time: a rule reading
//! `service.annotations[k]` once per annotation copies the whole map once
//! per annotation. The weight of each input field is worked out once per
//! evaluation (`weights`) and charged at each read (`super::cost`).

use super::cost::text;
use crate::inputs::Inputs;

/// The variables a rule sees.
const ROOTS: [&str; 4] = ["namespace", "service", "pool", "request"];

/// The fields of those variables, as a rule names them (`inputs.rs`).
const FIELDS: [(&str, &str); 18] = [
    ("namespace", "name"),
    ("namespace", "labels"),
    ("namespace", "annotations"),
    ("service", "name"),
    ("service", "namespace"),
    ("service", "labels"),
    ("service", "annotations"),
    ("service", "ports"),
    ("service", "externalTrafficPolicy"),
    ("service", "ipFamilies"),
    ("service", "loadBalancerClass"),
    ("service", "sharingKey"),
    ("pool", "name"),
    ("pool", "labels"),
    ("pool", "addresses"),
    ("request", "pool"),
    ("request", "ips"),
    ("request", "automatic"),
];

/// Units per read: one per field of `FIELDS`, then one per root.
pub(crate) type Weights = [u64; FIELDS.len() + ROOTS.len()];

/// Which weight a read of `root` (or of `root.field`) is charged.
pub(crate) fn index(root: &str, field: Option<&str>) -> Option<usize> {
    match field {
        Some(f) => FIELDS.iter().position(|&(r, n)| r == root && n == f),
        None => ROOTS
            .iter()
            .position(|&r| r == root)
            .map(|i| FIELDS.len() + i),
    }
}

fn map(m: &std::collections::BTreeMap<String, String>) -> u64 {
    1 + m
        .iter()
        .map(|(k, v)| text(k.len()) + text(v.len()))
        .sum::<u64>()
}

fn list(l: &[String]) -> u64 {
    1 + l.iter().map(|s| text(s.len())).sum::<u64>()
}

/// The weight of every input field and variable.
pub(crate) fn weights(i: &Inputs) -> Weights {
    let (ns, svc, pool, req) = (&i.namespace, &i.service, &i.pool, &i.request);
    let ports = 1 + svc
        .ports
        .iter()
        .map(|p| 3 + text(p.name.len()) + text(p.protocol.len()))
        .sum::<u64>();
    let fields: [u64; FIELDS.len()] = [
        text(ns.name.len()),
        map(&ns.labels),
        map(&ns.annotations),
        text(svc.name.len()),
        text(svc.namespace.len()),
        map(&svc.labels),
        map(&svc.annotations),
        ports,
        text(svc.external_traffic_policy.len()),
        list(&svc.ip_families),
        text(svc.load_balancer_class.len()),
        text(svc.sharing_key.len()),
        text(pool.name.len()),
        map(&pool.labels),
        list(&pool.addresses),
        text(req.pool.len()),
        list(&req.ips),
        1,
    ];
    let mut all = [0; FIELDS.len() + ROOTS.len()];
    all[..FIELDS.len()].copy_from_slice(&fields);
    for (r, root) in ROOTS.iter().enumerate() {
        all[FIELDS.len() + r] = 1 + FIELDS
            .iter()
            .zip(fields)
            .filter(|((owner, _), _)| owner == root)
            .map(|(_, w)| w)
            .sum::<u64>();
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field a rule can read is weighed: the list matches what the
    /// inputs serialize to.
    #[test]
    fn every_serialized_field_is_listed() {
        let value = serde_json::to_value(Inputs::default()).unwrap();
        let mut serialized: Vec<(String, String)> = value
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(root, v)| {
                v.as_object()
                    .unwrap()
                    .keys()
                    .map(|f| (root.clone(), f.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        serialized.sort();
        let mut listed: Vec<(String, String)> = FIELDS
            .iter()
            .map(|(r, f)| (r.to_string(), f.to_string()))
            .collect();
        listed.sort();
        assert_eq!(serialized, listed);
    }

    #[test]
    fn a_variable_weighs_its_fields() {
        let mut i = Inputs::default();
        i.service.annotations = (0..100).map(|n| (format!("k{n}"), "v".into())).collect();
        let w = weights(&i);
        let annotations = w[index("service", Some("annotations")).unwrap()];
        assert_eq!(annotations, 201);
        assert!(w[index("service", None).unwrap()] > annotations);
        assert_eq!(index("service", Some("nope")), None);
    }
}
