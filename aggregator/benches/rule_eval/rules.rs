//! `rule_eval`'s rule files: `--rules` alerting rules in the Prometheus rule-file shape.

use std::path::{Path, PathBuf};

use crate::data::CLUSTERS;

/// Rule `k`'s expression and `for` (kind `k % 20`; see the docs of `rule_eval.rs`).
fn rule_expr(k: usize, services: usize) -> (&'static str, String) {
    let s = (k * 7 + k / 20) % services;
    let v = (k / 20) % 10;
    let cluster = CLUSTERS[k % CLUSTERS.len()];
    match k % 20 {
        0 => ("HighCpu", format!("cpu_utilization > {}", 85 + v)),
        1 => ("HighMemory", format!("memory_utilization > {}", 86 + v)),
        2 => (
            "ServiceErrors",
            format!("error_rate{{service=\"svc-{s}\"}} > 0.05"),
        ),
        3 => (
            "SustainedCpu",
            format!("avg_over_time(cpu_utilization[5m]) > {}", 82 + v),
        ),
        4 => (
            "ErrorRate5m",
            format!("avg_over_time(error_rate[5m]) > 0.0{}", 5 + v % 5),
        ),
        5 => (
            "SlowP99",
            format!(
                "quantile_over_time(0.99, request_latency_seconds[5m]) > {}",
                1.0 + v as f64 * 0.1
            ),
        ),
        6 => (
            "ServiceSlowP95",
            format!(
                "quantile_over_time(0.95, request_latency_seconds{{service=\"svc-{s}\"}}[5m]) > 0.3"
            ),
        ),
        7 => (
            "CpuAndMemory",
            format!(
                "cpu_utilization > {} and memory_utilization > {}",
                70 + v,
                75 + v
            ),
        ),
        8 => (
            "ErrorsOr5xx",
            format!("error_rate > 0.1 or http_5xx_rate > 0.0{}", 5 + v % 5),
        ),
        9 => (
            "MemoryGiB",
            format!("memory_utilized / 1073741824 > {}", 1.7 + v as f64 * 0.02),
        ),
        10 => (
            "TaskLost",
            "max_over_time(running_task_count[15m]) - running_task_count > 0".to_string(),
        ),
        11 => (
            "ErrorLinesRate",
            format!(
                "rate(log_lines{{level=\"error\", cluster=\"{cluster}\"}}[5m]) > 0.0{}",
                1 + v % 9
            ),
        ),
        12 => (
            "OutOfMemory",
            "log_pattern_count{pattern=\"oom\"} > 0".to_string(),
        ),
        13 => (
            "ClusterCpu",
            format!("sum by (cluster) (cpu_utilized) / 1024 > {}", 60 + v * 5),
        ),
        14 => (
            "ServiceErrorBurst",
            format!("sum_over_time(error_count{{service=\"svc-{s}\"}}[5m]) > 10"),
        ),
        15 => (
            "ClusterMemory15m",
            format!("avg_over_time(memory_utilization{{cluster=\"{cluster}\"}}[15m]) > 85"),
        ),
        16 => (
            "Http5xxRegex",
            format!("http_5xx_rate{{service=~\"svc-{}.*\"}} > 0.02", 1 + v % 9),
        ),
        17 => (
            "Availability",
            format!(
                "(1 - avg_over_time(http_5xx_rate[5m])) * 100 < {}",
                99.0 - v as f64 * 0.2
            ),
        ),
        18 => (
            "CpuPeak30m",
            format!("max_over_time(cpu_utilization[30m]) > {}", 97 + v % 3),
        ),
        _ => (
            "ErrorCountIncrease",
            format!("increase(error_count{{service=\"svc-{s}\"}}[10m]) > 5"),
        ),
    }
}

/// Writes the rule files: `rules` rules in (about) `groups` groups over 4 files. Returns the
/// paths and the number of groups written.
pub fn write_rule_files(
    dir: &Path,
    rules: usize,
    groups: usize,
    services: usize,
) -> (Vec<PathBuf>, usize) {
    let per_group = rules.div_ceil(groups.max(1)).max(1);
    let groups = rules.div_ceil(per_group);
    let files = 4.min(groups);
    let mut texts = vec![String::from("groups:\n"); files];
    for g in 0..groups {
        let text = &mut texts[g % files];
        text.push_str(&format!("  - name: team-{g}\n    rules:\n"));
        for k in g * per_group..((g + 1) * per_group).min(rules) {
            let (name, expr) = rule_expr(k, services);
            let for_ = ["0s", "30s", "1m", "2m"][k % 4];
            let severity = if k % 3 == 0 { "page" } else { "ticket" };
            text.push_str(&format!(
                "      - alert: {name}{k}\n        expr: '{expr}'\n        for: {for_}\n        labels:\n          severity: {severity}\n          team: \"{{{{ $labels.cluster }}}}-oncall\"\n        annotations:\n          summary: \"{{{{ $labels.service }}}} in {{{{ $labels.cluster }}}}: {name} at {{{{ $value | humanize }}}}\"\n          runbook_url: https://runbooks.example/{name}\n"
            ));
        }
    }
    let paths = texts
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let p = dir.join(format!("team-rules-{i}.yml"));
            std::fs::write(&p, t).expect("write rule file");
            p
        })
        .collect();
    (paths, groups)
}
