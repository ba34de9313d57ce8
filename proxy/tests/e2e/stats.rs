//! The `--http-stats` page (§6): C's keys and counters after traffic, 404s, and the
//! candidate's Prometheus `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context};
use mtproxy::protocol::transport::Transport;
use parity::client::{encrypted_message, unencrypted_req_pq_multi};
use parity::subject::Subject;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::support::{each_subject, http_get, md5_hex, num, Rig, Setup, Stats, TAG};

/// Keys every build must report (C's names).
const REQUIRED: [&str; 25] = [
    "tot_forwarded_queries",
    "tot_forwarded_responses",
    "tot_forwarded_simple_acks",
    "dropped_queries",
    "dropped_responses",
    "dropped_simple_acks",
    "ext_connections",
    "ext_connections_created",
    "total_special_connections",
    "total_max_special_connections",
    "total_ready_targets",
    "total_declared_targets",
    "config_filename",
    "config_loaded_at",
    "config_size",
    "config_md5",
    "config_auth_clusters",
    "aes_pwd_hash",
    "workers",
    "proxy_tag_set",
    "window_clamp",
    "connections_failed_lru",
    "connections_failed_flood",
    "vmrss_bytes",
    "version",
];

fn parse_body(body: &str) -> anyhow::Result<Stats> {
    let mut m = BTreeMap::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('\t')
            .with_context(|| format!("/stats line without a tab: {line:?}"))?;
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

fn delta(before: &Stats, after: &Stats, key: &str) -> anyhow::Result<i64> {
    Ok(num(after, key)? - num(before, key)?)
}

async fn stats_page(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(
        subject,
        Setup {
            tag: Some(TAG),
            ..Setup::default()
        },
    )
    .await?;
    let before = rig.stats().await?;
    let mut rng = StdRng::seed_from_u64(11);
    let mut c = rig.client(Transport::Intermediate, 2, 11).await?;
    let mut payload_bytes = 0usize;
    for (p, qa) in [
        (unencrypted_req_pq_multi(&mut rng), true),
        (encrypted_message(&mut rng, 64), false),
        (encrypted_message(&mut rng, 128), true),
    ] {
        let ex = rig.step("request", c.request(&p, qa)).await?;
        ensure!(ex.answer[..] == p[..], "echo differs");
        payload_bytes += p.len();
    }
    let stats_addr = rig.proxy.stats_addr();
    let (status, head, body) = rig
        .step("GET /stats", http_get(stats_addr, "/stats"))
        .await?;
    ensure!(status == 200, "GET /stats: {status}\n{head}");
    ensure!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "GET /stats head: {head}"
    );
    let s = parse_body(&body)?;
    let missing: Vec<_> = REQUIRED.iter().filter(|k| !s.contains_key(**k)).collect();
    ensure!(missing.is_empty(), "/stats lacks {missing:?}");

    for (key, want) in [
        ("tot_forwarded_queries", 3),
        ("tot_forwarded_responses", 3),
        ("tot_forwarded_simple_acks", 2),
        ("dropped_queries", 0),
        ("dropped_responses", 0),
        ("dropped_simple_acks", 0),
        ("ext_connections", 1),
        ("ext_connections_created", 1),
        ("connections_failed_lru", 0),
        ("connections_failed_flood", 0),
    ] {
        let d = delta(&before, &s, key)?;
        ensure!(d == want, "{key} moved by {d}, expected {want}");
    }
    let conf = std::fs::read(rig.proxy.conf_path())?;
    let secret = std::fs::read(rig.proxy.secret_path())?;
    let text = |k: &str| s.get(k).map(String::as_str).unwrap_or("");
    ensure!(
        num(&s, "total_special_connections")? >= 1,
        "total_special_connections"
    );
    ensure!(
        num(&s, "total_max_special_connections")? == 4096,
        "total_max_special_connections {} (-c 4096)",
        text("total_max_special_connections")
    );
    ensure!(num(&s, "total_ready_targets")? == 1, "total_ready_targets");
    ensure!(
        num(&s, "total_declared_targets")? == 1,
        "total_declared_targets"
    );
    ensure!(
        text("config_filename") == rig.proxy.conf_path().display().to_string(),
        "config_filename {}",
        text("config_filename")
    );
    let now = mtproxy::clock::unix_now();
    let loaded = num(&s, "config_loaded_at")?;
    ensure!(
        (now - 120..=now + 5).contains(&loaded),
        "config_loaded_at {loaded}, now {now}"
    );
    ensure!(num(&s, "config_size")? == conf.len() as i64, "config_size");
    ensure!(
        text("config_md5") == md5_hex(&conf),
        "config_md5 {}",
        text("config_md5")
    );
    // dcs ±1..±5: ten clusters.
    ensure!(
        num(&s, "config_auth_clusters")? == 10,
        "config_auth_clusters"
    );
    ensure!(
        text("aes_pwd_hash") == md5_hex(&secret),
        "aes_pwd_hash {} is not the MD5 of the proxy-secret",
        text("aes_pwd_hash")
    );
    ensure!(num(&s, "workers")? == 0, "workers");
    ensure!(num(&s, "proxy_tag_set")? == 1, "proxy_tag_set");
    ensure!(num(&s, "window_clamp")? == 131_072, "window_clamp");
    ensure!(num(&s, "vmrss_bytes")? > 0, "vmrss_bytes");
    ensure!(
        text("version").starts_with("mtproxy"),
        "version {}",
        text("version")
    );

    // The binding ends with the client.
    c.close().await;
    rig.wait_stats("ext_connections back to 0", Duration::from_secs(5), |s| {
        num(s, "ext_connections").is_ok_and(|v| v == num(&before, "ext_connections").unwrap_or(0))
    })
    .await?;

    for path in ["/foo", "/stats?x", "/"] {
        let (status, _, _) = http_get(stats_addr, path).await?;
        ensure!(status == 404, "GET {path}: {status}, expected 404");
    }
    if subject.is_candidate() {
        let (status, head, body) = http_get(stats_addr, "/metrics").await?;
        ensure!(status == 200, "GET /metrics: {status}");
        ensure!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain"),
            "GET /metrics head: {head}"
        );
        check_metrics(&body, payload_bytes)?;
    }
    rig.alive()
}

/// `/metrics` read by a Prometheus text-format parser: types, `_total` suffixes, HELP on
/// every family, the per-secret and per-dc series of the one client (secret 0, dc 2, closed
/// by now), the middle-end round trips of the one link, and the process metrics.
fn check_metrics(body: &str, payload_bytes: usize) -> anyhow::Result<()> {
    use prometheus_parse::{Scrape, Value};
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))?;
    let find = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
            .map(|x| x.value.clone())
    };
    let bytes = payload_bytes as f64;
    for (name, label, want) in [
        (
            "mtproxy_tot_forwarded_queries_total",
            None,
            Value::Counter(3.0),
        ),
        (
            "mtproxy_ext_connections_created_total",
            None,
            Value::Counter(1.0),
        ),
        ("mtproxy_total_declared_targets", None, Value::Gauge(1.0)),
        (
            "mtproxy_secret_client_connections_total",
            Some(("secret", "0")),
            Value::Counter(1.0),
        ),
        (
            "mtproxy_secret_client_connections",
            Some(("secret", "0")),
            Value::Gauge(0.0),
        ),
        (
            "mtproxy_secret_client_bytes_received_total",
            Some(("secret", "0")),
            Value::Counter(bytes),
        ),
        (
            "mtproxy_secret_client_bytes_sent_total",
            Some(("secret", "0")),
            Value::Counter(bytes),
        ),
        (
            "mtproxy_dc_client_connections_total",
            Some(("dc", "2")),
            Value::Counter(1.0),
        ),
        (
            "mtproxy_dc_client_bytes_sent_total",
            Some(("dc", "2")),
            Value::Counter(bytes),
        ),
    ] {
        let got = find(name, label);
        ensure!(
            got.as_ref() == Some(&want),
            "{name}{label:?}: {got:?}, expected {want:?}\n{body}"
        );
    }
    // Every series is explained.
    for s in &scrape.samples {
        let family = s
            .metric
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        ensure!(
            scrape.docs.contains_key(&s.metric) || scrape.docs.contains_key(family),
            "{} has no HELP",
            s.metric
        );
        if let Value::Counter(_) = s.value {
            ensure!(
                s.metric.ends_with("_total"),
                "counter {} lacks _total",
                s.metric
            );
        }
    }
    let gauge = |name: &str| match find(name, None) {
        Some(Value::Gauge(v)) => Ok(v),
        other => Err(anyhow::anyhow!("{name}: {other:?}")),
    };
    // Each link's handshake: RPC_NONCE and RPC_HANDSHAKE, one round trip each.
    let links = gauge("mtproxy_ready_outbound_connections")?;
    match find("mtproxy_me_rtt_seconds", None) {
        Some(Value::Histogram(h)) => {
            let all = h
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count);
            ensure!(
                links >= 1.0 && all == Some(2.0 * links),
                "me_rtt observations: {all:?} for {links} links"
            );
        }
        other => anyhow::bail!("mtproxy_me_rtt_seconds is not a histogram: {other:?}"),
    }
    ensure!(gauge("process_open_fds")? >= 3.0, "process_open_fds");
    ensure!(
        gauge("process_max_fds")? >= 4096.0,
        "process_max_fds (-c 4096)"
    );
    ensure!(
        gauge("process_resident_memory_bytes")? > 0.0,
        "process_resident_memory_bytes"
    );
    let now = mtproxy::clock::unix_now() as f64;
    let start = gauge("process_start_time_seconds")?;
    ensure!(
        (now - 300.0..=now).contains(&start),
        "process_start_time_seconds {start}"
    );
    Ok(())
}

/// Scenario 11: `GET /stats` answers C's keys with counters that moved as traffic did;
/// other paths get 404; the candidate also serves Prometheus text at `/metrics`.
#[tokio::test]
async fn stats_page_reports_c_keys_and_counters() {
    each_subject("stats_page_reports_c_keys_and_counters", |t| async move {
        stats_page(&t).await
    })
    .await;
}
