//! Request counts and latencies per route, in Prometheus' text format
//! (`GET /metrics`). One mutex, held for a map lookup and a few additions
//! per request; fixed histogram buckets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Default)]
pub(super) struct Metrics {
    routes: Mutex<BTreeMap<&'static str, RouteStats>>,
    rejected_busy: AtomicU64,
}

impl Metrics {
    pub fn record(&self, route: &'static str, status: u16, took: Duration) {
        if status == 503 {
            self.rejected_busy.fetch_add(1, Ordering::Relaxed);
        }
        let secs = took.as_secs_f64();
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let r = routes.entry(route).or_default();
        *r.by_status.entry(status).or_default() += 1;
        for (slot, &bound) in r.buckets.iter_mut().zip(&BUCKETS) {
            if secs <= bound {
                *slot += 1;
            }
        }
        r.count += 1;
        r.sum_seconds += secs;
    }

    pub fn render(&self, in_flight: usize) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP pareil_requests_total Requests answered, by route and status.\n");
        out.push_str("# TYPE pareil_requests_total counter\n");
        for (route, r) in routes.iter() {
            for (status, n) in &r.by_status {
                let _ = writeln!(
                    out,
                    "pareil_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP pareil_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE pareil_request_duration_seconds histogram\n");
        for (route, r) in routes.iter() {
            for (bound, n) in BUCKETS.iter().zip(&r.buckets) {
                let _ = writeln!(
                    out,
                    "pareil_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "pareil_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                r.count
            );
            let _ = writeln!(
                out,
                "pareil_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                r.sum_seconds
            );
            let _ = writeln!(
                out,
                "pareil_request_duration_seconds_count{{route=\"{route}\"}} {}",
                r.count
            );
        }
        out.push_str("# HELP pareil_requests_in_flight Requests admitted and not yet answered.\n");
        out.push_str("# TYPE pareil_requests_in_flight gauge\n");
        let _ = writeln!(out, "pareil_requests_in_flight {in_flight}");
        out.push_str("# HELP pareil_requests_rejected_busy_total Requests answered 503 (full).\n");
        out.push_str("# TYPE pareil_requests_rejected_busy_total counter\n");
        let _ = writeln!(
            out,
            "pareil_requests_rejected_busy_total {}",
            self.rejected_busy.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record("/v1/similar", 200, Duration::from_millis(3));
        m.record("/v1/similar", 400, Duration::from_millis(30));
        let text = m.render(1);
        assert!(text.contains("pareil_requests_total{route=\"/v1/similar\",status=\"200\"} 1"));
        assert!(text.contains("pareil_requests_total{route=\"/v1/similar\",status=\"400\"} 1"));
        assert!(text.contains("_bucket{route=\"/v1/similar\",le=\"0.005\"} 1"));
        assert!(text.contains("_bucket{route=\"/v1/similar\",le=\"0.05\"} 2"));
        assert!(text.contains("_count{route=\"/v1/similar\"} 2"));
        assert!(text.contains("pareil_requests_in_flight 1"));
    }
}
