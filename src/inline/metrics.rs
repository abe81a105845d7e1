//! Prometheus text exposition at `--metrics ADDR` (`GET /metrics`). Each scrape builds a
//! registry from the workers' last reports (as `ctl stats` does), so the packet path pays
//! nothing for metrics but a sampled latency observation.

use super::ctl::Stats;
use super::keeper::Keeper;
use super::Control;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

type Labels = Vec<(String, String)>;

fn gauge_family(r: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
    // Gauges hold values read elsewhere; a family is built per scrape.
    let fam = Family::<Labels, Gauge<u64, std::sync::atomic::AtomicU64>>::default();
    for (labels, v) in rows {
        fam.get_or_create(&labels).set(v);
    }
    r.register(name, help, fam);
}

/// The exposition text for one scrape.
pub fn render(ctl: &Control, keeper: &Keeper) -> String {
    let s = Stats::gather(ctl, keeper);
    let mut r = Registry::with_prefix("sipwall");
    let l = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];

    let mut rows: Vec<(Labels, u64)> = s
        .totals
        .reasons
        .iter()
        .map(|(reason, n)| (l("reason", reason), *n))
        .collect();
    rows.sort();
    r.register(
        "decisions",
        "Packets judged, by reason id (since the first start; kept across restarts)",
        ConstFamily(rows),
    );
    r.register(
        "verdicts",
        "Packets by verdict (since the first start)",
        ConstFamily(vec![
            (l("verdict", "accept"), s.totals.accepted),
            (l("verdict", "drop"), s.totals.dropped),
            (l("verdict", "observe"), s.totals.observed),
        ]),
    );
    r.register(
        "auth_failures",
        "Authentication failures read in the PBX's answers",
        ConstFamily(vec![(vec![], s.totals.auth_failures)]),
    );
    r.register(
        "would_drop",
        "Dry run: packets let through that would have been dropped, by reason",
        ConstFamily(
            s.would_drop
                .reasons
                .iter()
                .map(|(reason, n)| (l("reason", reason), *n))
                .collect(),
        ),
    );
    let q = |f: fn(&super::ctl::QueueStats) -> Option<u64>| -> Vec<(Labels, u64)> {
        s.queues
            .iter()
            .filter_map(|x| f(x).map(|v| (l("queue", &x.queue.to_string()), v)))
            .collect()
    };
    r.register(
        "queue_recv_errors",
        "Receive errors on the queue socket (ENOBUFS: messages the kernel could not deliver)",
        ConstFamily(q(|x| Some(x.recv_errors))),
    );
    r.register(
        "queue_kernel_dropped",
        "Packets the kernel dropped because the queue was full (fail-open lets them through instead and the kernel does not count those)",
        ConstFamily(q(|x| x.kernel_dropped)),
    );
    r.register(
        "queue_user_dropped",
        "Packets the kernel could not hand to sipwall (socket buffer full)",
        ConstFamily(q(|x| x.user_dropped)),
    );
    gauge_family(
        &mut r,
        "queue_backlog",
        "Packets waiting in the queue",
        q(|x| x.backlog),
    );
    gauge_family(
        &mut r,
        "bans_active",
        "Active bans by tier",
        s.bans_by_tier
            .iter()
            .map(|(t, n)| (l("tier", t), *n as u64))
            .collect(),
    );
    gauge_family(
        &mut r,
        "tracked",
        "Entries in the engine's tables (sources with rate state, dialogs, ...)",
        s.tracked
            .iter()
            .map(|(t, n)| (l("table", t), *n as u64))
            .collect(),
    );
    gauge_family(
        &mut r,
        "entries",
        "Runtime allow and deny entries (operator and feeds)",
        vec![
            (l("kind", "allow"), s.allow_entries as u64),
            (l("kind", "deny"), s.deny_entries as u64),
        ],
    );
    r.register(
        "kernel_set_packets",
        "Packets matched by each kernel set's rule (bans and deny entries dropped in the kernel)",
        ConstFamily(
            s.kernel_sets
                .iter()
                .map(|(k, n)| (l("set", k), *n))
                .collect(),
        ),
    );
    r.register(
        "decision_seconds",
        "Time to judge a packet (one packet in 64 is timed)",
        ctl.latency.clone(),
    );
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

/// A counter family whose values were read elsewhere.
#[derive(Debug)]
struct ConstFamily(Vec<(Labels, u64)>);

impl prometheus_client::encoding::EncodeMetric for ConstFamily {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        for (labels, v) in &self.0 {
            let e = encoder.encode_family(labels)?;
            ConstCounter::new(*v).encode(e)?;
        }
        Ok(())
    }
    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Counter
    }
}

impl prometheus_client::metrics::TypedMetric for ConstFamily {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Counter;
}

/// Serves `/metrics` until `ctl.stop`.
pub fn serve(server: tiny_http::Server, ctl: Arc<Control>, keeper: Arc<Mutex<Keeper>>) {
    while !ctl.stop.load(Ordering::Acquire) {
        let req = match server.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "metrics server");
                continue;
            }
        };
        let resp = if req.url() == "/metrics" || req.url() == "/" {
            let body = render(&ctl, &keeper.lock().expect("keeper lock"));
            tiny_http::Response::from_string(body).with_header(
                "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"
                    .parse::<tiny_http::Header>()
                    .expect("static header"),
            )
        } else {
            tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
        };
        let _ = req.respond(resp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inline::keeper::KeeperOptions;

    /// Every metric the shipped Grafana dashboard queries is one the daemon exposes.
    #[test]
    fn dashboard_queries_only_exposed_metrics() {
        let policy = crate::config::Config::default().compile().unwrap();
        let ctl = Control::new(Arc::new(policy), false);
        ctl.latency.observe(2e-6);
        let mut w = super::super::WorkerStats::default();
        w.counters.count(&crate::engine::Decision::drop(
            crate::engine::Reason::Scanner,
        ));
        ctl.workers.lock().unwrap().insert(0, w);
        let keeper = Keeper::start(
            ctl.clone(),
            &KeeperOptions {
                state_dir: None,
                offload: false,
            },
            1,
        );
        let text = render(&ctl, &keeper);
        assert!(
            text.contains("sipwall_decisions_total{reason=\"scanner\"} 1"),
            "{text}"
        );
        assert!(text.contains("sipwall_decision_seconds_count 1"), "{text}");
        // Families without samples (no bans yet, no kernel queue here) are left out of a
        // scrape, so the names registered in this file are the reference.
        let source = include_str!("metrics.rs");
        let dash = include_str!("../../config/grafana-dashboard.json");
        let mut queried = 0;
        for (i, _) in dash.match_indices("sipwall_") {
            let name: String = dash[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            let short = base.trim_start_matches("sipwall_");
            assert!(
                source.contains(&format!("\"{short}\",")),
                "{name} is not registered"
            );
            queried += 1;
        }
        assert!(queried >= 10);
    }
}
