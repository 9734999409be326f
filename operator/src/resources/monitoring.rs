//! The Prometheus Operator's `ServiceMonitor`, typed here with only the fields
//! the operator sets (the Prometheus Operator's CRD is not a dependency: its
//! schema stays out, and objects read back keep only these fields), and the
//! builder of the one that scrapes a cluster's servers.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};

use super::{meta, metrics_port_name, names, selector_labels, ENDPOINT_LABEL};
use crate::crd::SignalingCluster;

/// The fields of a `monitoring.coreos.com/v1` ServiceMonitor the operator uses.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "ServiceMonitor",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorFields {
    /// Services to scrape.
    pub selector: LabelSelector,
    /// Namespaces of those Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// How to scrape each Service's endpoints.
    #[serde(default)]
    pub endpoints: Vec<ScrapeEndpoint>,
}

/// Namespaces by name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default)]
    pub match_names: Vec<String>,
}

/// One scraped port.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeEndpoint {
    /// Service port name.
    pub port: String,
    /// HTTP path.
    pub path: String,
    /// Scrape interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// The ServiceMonitor, when enabled: every server pod's `/metrics`, through the
/// internal Service when the internal listener is on, else the public one.
pub fn service_monitor(sc: &SignalingCluster) -> Option<ServiceMonitor> {
    let spec = sc.spec.monitoring.as_ref()?;
    let sm = &spec.service_monitor;
    if !sm.enabled {
        return None;
    }
    let port = metrics_port_name(sc);
    let endpoint = if port == "internal" {
        "internal"
    } else {
        "public"
    };
    let mut match_labels: BTreeMap<String, String> = selector_labels(sc, "server");
    match_labels.insert(ENDPOINT_LABEL.into(), endpoint.into());
    let mut metadata = meta(sc, &names(sc).server, "server");
    if let Some(l) = metadata.labels.as_mut() {
        l.extend(sm.labels.clone());
    }
    let mut obj = ServiceMonitor::new(
        &names(sc).server,
        ServiceMonitorFields {
            selector: LabelSelector {
                match_labels: Some(match_labels),
                ..Default::default()
            },
            namespace_selector: Some(NamespaceSelector {
                match_names: sc.namespace().into_iter().collect(),
            }),
            endpoints: vec![ScrapeEndpoint {
                port: port.into(),
                path: "/metrics".into(),
                interval: Some(sm.interval.clone()),
            }],
        },
    );
    obj.metadata = metadata;
    Some(obj)
}
