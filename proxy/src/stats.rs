//! Counters under the C proxy's names, and their two renderings: the C-compatible
//! `/stats` text (`key\tvalue` lines, same keys and order as `mtfront_prepare_stats`)
//! and Prometheus text for `/metrics`.
//!
//! Counters are lock-free atomics bumped on the hot path. A [`Snapshot`] is a plain copy
//! that can be summed across workers (the `-M` master sums its workers' snapshots, as C
//! sums them through shared memory) and serialised between processes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Declares the live counters, the plain snapshot with the same fields, and the copy
/// between them, so that a counter cannot be added to one and forgotten in the other.
/// Each field is marked `counter` (only ever grows) or `gauge` (a current level), which is
/// its Prometheus type; its doc comment is its `# HELP` text.
macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $kind:ident $name:ident ),* $(,)?) => {
        /// Live counters, shared by every task of one process.
        #[derive(Debug, Default)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $name: AtomicI64, )*
            /// Connections and traffic per secret and per dc.
            pub labelled: Labelled,
            /// Middle-end round trips.
            pub me_rtt: Histogram,
        }

        /// A point-in-time copy of [`Counters`] plus the facts `/stats` reports.
        #[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
        pub struct Snapshot {
            $( $(#[doc = $doc])* pub $name: i64, )*
            /// Connections and traffic per secret: its index among the `-S` secrets, or `none`
            /// for a client accepted without one (no `-S`).
            #[serde(default)]
            pub by_secret: BTreeMap<String, TrafficSnapshot>,
            /// Connections and traffic per dc (negative: media).
            #[serde(default)]
            pub by_dc: BTreeMap<i16, TrafficSnapshot>,
            /// Middle-end round trips.
            #[serde(default)]
            pub me_rtt: HistogramSnapshot,
            /// Facts that are not summed across workers.
            pub info: Info,
        }

        impl Counters {
            /// Copies every counter into a snapshot carrying `info`.
            pub fn snapshot(&self, info: Info) -> Snapshot {
                let (by_secret, by_dc) = self.labelled.snapshot();
                Snapshot {
                    $( $name: self.$name.load(Relaxed), )*
                    by_secret,
                    by_dc,
                    me_rtt: self.me_rtt.snapshot(),
                    info,
                }
            }
        }

        impl Snapshot {
            /// Adds `other`'s counters into `self` (for summing workers); `info` is kept.
            pub fn add(&mut self, other: &Snapshot) {
                $( self.$name += other.$name; )*
                for (k, v) in &other.by_secret {
                    self.by_secret.entry(k.clone()).or_default().add(v);
                }
                for (k, v) in &other.by_dc {
                    self.by_dc.entry(*k).or_default().add(v);
                }
                self.me_rtt.add(&other.me_rtt);
            }

            /// Every counter as `(name, value)`, in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, i64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }
        }

        /// Every field of [`Counters`]: its name, kind and help text, in declaration order.
        pub const FAMILIES: &[Family] = &[
            $( Family {
                name: stringify!($name),
                kind: Kind::$kind,
                help: concat!($($doc),*),
            }, )*
        ];
    };
}

/// The Prometheus type of a [`Counters`] field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Kind {
    /// Only ever grows (until the process restarts).
    counter,
    /// A current level: goes up and down.
    gauge,
}

/// Name, kind and help text of one [`Counters`] field.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The field (and C `/stats` key) name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The doc comment.
    pub help: &'static str,
}

counters! {
    /// Client packets forwarded to a middle-end as RPC_PROXY_REQ.
    counter tot_forwarded_queries,
    /// Kept for C compatibility; always 0.
    counter expired_forwarded_queries,
    /// Client packets dropped because no middle-end connection was available.
    counter dropped_queries,
    /// RPC_PROXY_ANS delivered to a client.
    counter tot_forwarded_responses,
    /// RPC_PROXY_ANS for an unknown or closed client (answered with RPC_CLOSE_CONN).
    counter dropped_responses,
    /// RPC_SIMPLE_ACK delivered to a client as a quick ack.
    counter tot_forwarded_simple_acks,
    /// RPC_SIMPLE_ACK for an unknown or closed client.
    counter dropped_simple_acks,
    /// Middle-end targets with at least one ready connection.
    gauge total_ready_targets,
    /// Middle-end targets allocated (distinct ip:port of the config).
    gauge total_allocated_targets,
    /// Middle-end targets declared by the config.
    gauge total_declared_targets,
    /// Targets no longer in the config but still draining.
    gauge total_inactive_targets,
    /// Open sockets: clients, middle-end links and stats connections.
    gauge total_connections,
    /// Live AES contexts: ready middle-end links plus identified clients.
    gauge total_encrypted_connections,
    /// Outbound (middle-end) sockets open.
    gauge total_allocated_outbound_connections,
    /// Inbound (client and stats) sockets open.
    gauge total_allocated_inbound_connections,
    /// Accepted client sockets currently open.
    gauge total_special_connections,
    /// The accept cap (`-C`, else `-c`).
    gauge total_max_special_connections,
    /// Client↔middle-end bindings currently live.
    gauge ext_connections,
    /// Client↔middle-end bindings ever created.
    counter ext_connections_created,
    /// Bytes buffered for clients and middle-end links.
    gauge total_network_buffers_used_size,
    /// Client packets rejected by the acceptance rules.
    counter mtproto_proxy_errors,
    /// Clients closed by the global buffer budget (least recently active first).
    counter connections_failed_lru,
    /// Clients closed for exceeding the per-connection buffer cap.
    counter connections_failed_flood,
    /// Requests answered by the stats listener.
    counter http_queries,
    /// Middle-end connections ever created (outbound connects started).
    counter outbound_connections_created,
    /// Middle-end connections that completed the RPC handshake and are up.
    gauge ready_outbound_connections,
    /// Client listening sockets.
    gauge listening_connections,
    /// Middle-end connect or handshake failures.
    counter total_connect_failures,
    /// Client connections ever accepted.
    counter inbound_connections_accepted,
    /// Connections refused because the accept cap was reached.
    counter accept_connection_limit_failed,
    /// Obfuscated2 headers that matched no secret (silent skip mode entered).
    counter bad_secret_connections,
    /// Connections closed by the pre-authentication idle timeout.
    counter handshake_timeouts,
    /// Client frames rejected as malformed (overlong, bad length, short padded frame).
    counter transport_errors,
    /// Fake-TLS hellos rejected, by any cause.
    counter tls_rejected_hellos,
    /// Fake-TLS hellos rejected as replays.
    counter tls_replayed_hellos,
    /// Connections relayed to the fronting domain.
    counter tls_fronted_connections,
    /// Fake-TLS handshakes accepted (ServerHello sent).
    counter tls_handshakes,
    /// `-D`: first bytes that are not a fake-TLS ClientHello (plain obfuscated2, HTTP,
    /// garbage); fronted ("Expected TLS-transport").
    counter tls_not_tls_connections,
    /// `-D`: no full ClientHello within 10 s of accept; fronted.
    counter tls_hello_timeouts,
    /// `-D`: a ClientHello on local port 80; fronted to `<domain>:80`.
    counter tls_port80_connections,
    /// Fake-TLS hellos rejected: not one well-formed record.
    counter tls_hello_malformed,
    /// Fake-TLS hellos rejected: missing, malformed or unknown SNI.
    counter tls_hello_unknown_sni,
    /// Fake-TLS hellos rejected: bytes after the one ClientHello record.
    counter tls_hello_too_much_data,
    /// Fake-TLS hellos rejected: record longer than 4096 bytes.
    counter tls_hello_too_big,
    /// Fake-TLS hellos rejected: the random matches no secret's HMAC.
    counter tls_hello_bad_hmac,
    /// Fake-TLS hellos rejected: timestamp more than 3 s in the future.
    counter tls_hello_future_timestamp,
    /// Fake-TLS hellos rejected: timestamp 600 s or more in the past.
    counter tls_hello_stale_timestamp,
    /// Fake-TLS hellos rejected: no TLS 1.3 cipher suite first.
    counter tls_hello_bad_cipher_suite,
    /// Fake-TLS sessions closed after the ServerHello: bad records or an inner
    /// obfuscated2 header that is not `dd` under a secret (or replayed).
    counter tls_bad_client_records,
    /// Fronting refused because the target is one of this proxy's own listening
    /// addresses (or a connection came back from our own fronting socket).
    counter tls_fronting_loops,
    /// Fronting failed: no address for the domain, or the connect failed.
    counter tls_fronting_failures,
    /// Domain probes that succeeded (start-up and periodic refresh).
    counter tls_domain_probes_ok,
    /// Domain probes that failed (the previous or the fallback profile is kept).
    counter tls_domain_probes_failed,
    /// Obfuscated2 headers rejected because their nonce was seen before.
    counter obfs2_replayed_headers,
    /// Replay-cache queries that got no answer in time (the client is rejected).
    counter replay_cache_errors,
    /// Configuration reloads applied (SIGHUP).
    counter config_reloads,
    /// Configuration reloads refused (bad new file; the old one stays).
    counter config_reload_failures,
    /// Worker processes respawned after an unexpected exit.
    counter worker_restarts,
    /// Clients closed for holding a large incomplete frame while the global buffer budget
    /// (`--msg-buffers-size`, which counts incomplete input too) was ¾ used.
    counter connections_failed_input,
    /// Clients closed after the idle timeout (identified, silent both ways).
    counter client_idle_timeouts,
    /// Connections closed at once because their address held `--max-connections-per-ip`.
    counter per_ip_refusals,
    /// Connections closed before authenticating to admit a new one at the `-C` cap.
    counter preauth_evictions,
    /// `-D` relays closed because no byte went either way for
    /// [`crate::net::fronting::splice::FRONT_IDLE`].
    counter tls_fronting_idle_timeouts,
    /// `-D` relays closed because one side had closed and the other direction was not done
    /// within [`crate::net::fronting::splice::FRONT_HALF_CLOSE`].
    counter tls_fronting_half_close_timeouts,
    /// Fake-TLS hellos rejected because the replay cache was full of recent entries (it
    /// refuses rather than forget a random that could still be replayed).
    counter tls_replay_cache_full,
    /// Obfuscated2 headers rejected because the header replay cache was full of recent
    /// nonces.
    counter obfs2_replay_cache_full,
    /// Middle-end links closed because the middle end made us queue control messages
    /// (RPC_CLOSE_CONN) without reading them: more than
    /// [`crate::net::me_pool::CTL_QUEUE_LIMIT`], or [`crate::net::me_link::CTL_GATE`] and
    /// no write for [`crate::net::me_link::WRITER_STALL`].
    counter me_links_closed_ctl_backlog,
    /// Middle-end links closed because RPC_PONG answers to its pings stayed unsent (it
    /// pings and does not read): more than [`crate::net::me_link::PONG_BACKLOG`] bytes, or
    /// [`crate::net::me_link::PONG_GATE`] and no write for
    /// [`crate::net::me_link::WRITER_STALL`].
    counter me_links_closed_pong_backlog,
    /// Middle-end links closed for a burst of junk: [`crate::net::me_link::JUNK_LIMIT`]
    /// malformed or unknown messages with no valid one between them.
    counter me_links_closed_junk,
    /// Clients closed because they read nothing of what was queued for them for
    /// [`crate::net::client::WRITE_STALL`] (a full socket that never drains).
    counter client_write_stalls,
    /// Log lines that could not be written (full disk, a `-M` worker's pipe to its
    /// master full, a broken stderr); the process goes on serving.
    counter log_write_failures,
}

/// Facts reported by `/stats` that are not counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Info {
    /// Process id of the process answering.
    pub pid: u32,
    /// Unix time the process started.
    pub start_time: i64,
    /// Unix time of the snapshot.
    pub current_time: i64,
    /// The config file name as given on the command line.
    pub config_filename: String,
    /// Unix time the current config was loaded.
    pub config_loaded_at: i64,
    /// Size of the config file in bytes.
    pub config_size: usize,
    /// MD5 of the config file, lower-case hex.
    pub config_md5: String,
    /// Number of clusters in the config.
    pub config_auth_clusters: usize,
    /// MD5 of the proxy-secret file, lower-case hex (empty without one).
    pub aes_pwd_hash: String,
    /// `-M` value.
    pub workers: u32,
    /// TCP window clamp applied to client sockets (0 when none).
    pub window_clamp: u32,
    /// Whether `-P` was given.
    pub proxy_tag_set: bool,
    /// Resident set size in bytes (read from `/proc/self/status` by the caller).
    pub vmrss_bytes: u64,
    /// Virtual size in bytes.
    pub vmsize_bytes: u64,
    /// Data segment size in bytes.
    pub vmdata_bytes: u64,
    /// The version string.
    pub version: String,
    /// The `-p` port (−1 without one), shown in the `PID` line.
    pub stats_port: i32,
    /// `--msg-buffers-size`.
    pub msg_buffers_size: u64,
    /// Open file descriptors (with `-M`: the master's and its workers').
    #[serde(default)]
    pub open_fds: u64,
    /// The descriptor limit (`RLIMIT_NOFILE`, soft) of the process answering.
    #[serde(default)]
    pub max_fds: u64,
}

/// Connections and traffic of one secret or one dc, bumped on the hot path.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Identified clients open now.
    pub connections: AtomicI64,
    /// Identified clients ever.
    pub connections_total: AtomicI64,
    /// Payload bytes from clients forwarded to middle ends.
    pub bytes_from_clients: AtomicI64,
    /// Payload bytes from middle ends delivered to clients.
    pub bytes_to_clients: AtomicI64,
}

impl Traffic {
    fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            connections: self.connections.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            bytes_from_clients: self.bytes_from_clients.load(Relaxed),
            bytes_to_clients: self.bytes_to_clients.load(Relaxed),
        }
    }
}

/// A copy of [`Traffic`].
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// Identified clients open now.
    pub connections: i64,
    /// Identified clients ever.
    pub connections_total: i64,
    /// Payload bytes from clients forwarded to middle ends.
    pub bytes_from_clients: i64,
    /// Payload bytes from middle ends delivered to clients.
    pub bytes_to_clients: i64,
}

impl TrafficSnapshot {
    fn add(&mut self, o: &TrafficSnapshot) {
        self.connections += o.connections;
        self.connections_total += o.connections_total;
        self.bytes_from_clients += o.bytes_from_clients;
        self.bytes_to_clients += o.bytes_to_clients;
    }
}

/// [`Traffic`] per secret and per dc. A client looks its two entries up once, when it is
/// identified, and then only touches their atomics.
#[derive(Debug, Default)]
pub struct Labelled {
    by_secret: Mutex<BTreeMap<String, Arc<Traffic>>>,
    by_dc: Mutex<BTreeMap<i16, Arc<Traffic>>>,
}

/// The label of a secret: its index among the `-S` secrets, `none` without one. Never the
/// secret itself.
pub fn secret_label(index: Option<usize>) -> String {
    index.map_or_else(|| "none".into(), |i| i.to_string())
}

impl Labelled {
    /// The entries of a client of secret `secret` (see [`secret_label`]) for `dc`.
    pub fn entries(&self, secret: Option<usize>, dc: i16) -> (Arc<Traffic>, Arc<Traffic>) {
        let by_secret = Arc::clone(
            lock(&self.by_secret)
                .entry(secret_label(secret))
                .or_default(),
        );
        let by_dc = Arc::clone(lock(&self.by_dc).entry(dc).or_default());
        (by_secret, by_dc)
    }

    fn snapshot(
        &self,
    ) -> (
        BTreeMap<String, TrafficSnapshot>,
        BTreeMap<i16, TrafficSnapshot>,
    ) {
        (
            lock(&self.by_secret)
                .iter()
                .map(|(k, v)| (k.clone(), v.snapshot()))
                .collect(),
            lock(&self.by_dc)
                .iter()
                .map(|(k, v)| (*k, v.snapshot()))
                .collect(),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Upper bounds (seconds) of the middle-end round-trip histogram's buckets.
pub const RTT_BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A Prometheus histogram with the [`RTT_BUCKETS`] bounds, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; RTT_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = RTT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(RTT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            sum_micros: self.sum_micros.load(Relaxed),
        }
    }
}

/// A copy of a [`Histogram`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    pub buckets: Vec<u64>,
    /// Sum of the observations, in microseconds.
    pub sum_micros: u64,
}

impl HistogramSnapshot {
    fn add(&mut self, o: &HistogramSnapshot) {
        if self.buckets.len() < o.buckets.len() {
            self.buckets.resize(o.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.sum_micros += o.sum_micros;
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl Snapshot {
    /// Renders the C-compatible `/stats` body: `key\tvalue\n` lines, C's key names in C's
    /// order, followed by our additional keys.
    pub fn render_stats(&self) -> String {
        let i = &self.info;
        let uptime = (i.current_time - i.start_time).max(0);
        let mut s = String::with_capacity(4096);
        let mut kv = |k: &str, v: &dyn std::fmt::Display| {
            let _ = writeln!(s, "{k}\t{v}");
        };
        // The generic engine block, in C's order (`prepare_stats` of the C engine). Keys
        // with no counterpart in this design (thread pools, message-buffer chunks, job
        // queues) are present with 0 so that parsers and dashboards keyed on them keep
        // working; the meaningful ones carry our values.
        let zero3 = "0.000";
        let per_thread = "0.000 0.000 0.000 0.000  0.000 0.000 0.000 0.000  0.000 0.000 0.000 0.000  0.000 0.000 0.000 0.000";
        let threads = format!("0 {} 0 1  0 0 0 0  0 0 0 0  0 0 0 0", i.workers.max(1));
        let pid_text = format!("[0.0.0.0:{}:{}:{}]", i.stats_port, i.pid, i.start_time);
        let accepted_failed = self.accept_connection_limit_failed;
        let active = self.total_connections;
        let engine: Vec<(&str, String)> = vec![
            ("pid", i.pid.to_string()),
            ("start_time", i.start_time.to_string()),
            ("current_time", i.current_time.to_string()),
            ("uptime", uptime.to_string()),
            ("tot_idle_time", zero3.into()),
            ("average_idle_percent", zero3.into()),
            ("recent_idle_percent", zero3.into()),
            ("active_network_events", "0".into()),
            ("time_after_epoll", "0.000000".into()),
            ("epoll_calls", "0".into()),
            ("epoll_intr", "0".into()),
            ("PID", pid_text),
            (">>>>>>connections>>>>>>", "start".into()),
            ("active_connections", active.to_string()),
            ("active_dh_connections", "0".into()),
            (
                "outbound_connections",
                self.total_allocated_outbound_connections.to_string(),
            ),
            (
                "ready_outbound_connections",
                self.ready_outbound_connections.to_string(),
            ),
            (
                "active_outbound_connections",
                self.ready_outbound_connections.to_string(),
            ),
            (
                "outbound_connections_created",
                self.outbound_connections_created.to_string(),
            ),
            (
                "total_connect_failures",
                self.total_connect_failures.to_string(),
            ),
            (
                "inbound_connections",
                self.total_allocated_inbound_connections.to_string(),
            ),
            (
                "active_inbound_connections",
                self.total_allocated_inbound_connections.to_string(),
            ),
            (
                "inbound_connections_accepted",
                self.inbound_connections_accepted.to_string(),
            ),
            (
                "listening_connections",
                self.listening_connections.to_string(),
            ),
            ("unused_connections_closed", "0".into()),
            ("ready_targets", self.total_ready_targets.to_string()),
            (
                "allocated_targets",
                self.total_allocated_targets.to_string(),
            ),
            ("active_targets", self.total_allocated_targets.to_string()),
            ("inactive_targets", self.total_inactive_targets.to_string()),
            ("free_targets", "0".into()),
            (
                "max_connections",
                self.total_max_special_connections.to_string(),
            ),
            (
                "active_special_connections",
                self.total_special_connections.to_string(),
            ),
            (
                "max_special_connections",
                self.total_max_special_connections.to_string(),
            ),
            ("max_accept_rate", "0".into()),
            ("cur_accept_rate_remaining", "0.000000".into()),
            ("max_connection", active.to_string()),
            (
                "conn_generation",
                (self.inbound_connections_accepted + self.outbound_connections_created).to_string(),
            ),
            ("allocated_connections", active.to_string()),
            (
                "allocated_outbound_connections",
                self.total_allocated_outbound_connections.to_string(),
            ),
            (
                "allocated_inbound_connections",
                self.total_allocated_inbound_connections.to_string(),
            ),
            ("allocated_socket_connections", active.to_string()),
            ("tcp_readv_calls", "0".into()),
            ("tcp_readv_intr", "0".into()),
            ("tcp_readv_bytes", "0".into()),
            ("tcp_writev_calls", "0".into()),
            ("tcp_writev_intr", "0".into()),
            ("tcp_writev_bytes", "0".into()),
            ("free_later_size", "0".into()),
            ("free_later_total", "0".into()),
            ("accept_calls_failed", "0".into()),
            ("accept_nonblock_set_failed", "0".into()),
            (
                "accept_connection_limit_failed",
                accepted_failed.to_string(),
            ),
            ("accept_rate_limit_failed", "0".into()),
            ("accept_init_accepted_failed", "0".into()),
            ("<<<<<<connections<<<<<<", "end".into()),
            (">>>>>>raw_msg>>>>>>", "start".into()),
            ("rwm_total_msgs", "0".into()),
            ("rwm_total_msg_parts", "0".into()),
            ("<<<<<<raw_msg<<<<<<", "end".into()),
            (">>>>>>raw_msg_buffer>>>>>>", "start".into()),
            (
                "total_used_buffers_size",
                self.total_network_buffers_used_size.to_string(),
            ),
            ("total_used_buffers", "0".into()),
            (
                "allocated_buffer_bytes",
                self.total_network_buffers_used_size.to_string(),
            ),
            ("buffer_chunk_alloc_ops", "0".into()),
            ("allocated_buffer_chunks", "0".into()),
            ("max_allocated_buffer_chunks", "0".into()),
            ("max_buffer_chunks", "0".into()),
            ("max_allocated_buffer_bytes", i.msg_buffers_size.to_string()),
            ("<<<<<<raw_msg_buffer<<<<<<", "end".into()),
            (">>>>>>tl_parse>>>>>>", "start".into()),
            ("rpc_queries_received", "0".into()),
            ("rpc_answers_error", "0".into()),
            ("rpc_answers_received", "0".into()),
            ("rpc_sent_errors", "0".into()),
            ("rpc_sent_answers", "0".into()),
            ("rpc_sent_queries", "0".into()),
            ("tl_in_allocated", "0".into()),
            ("tl_out_allocated", "0".into()),
            ("rpc_qps", "0.000000".into()),
            ("default_rpc_flags", "2048".into()),
            ("<<<<<<tl_parse<<<<<<", "end".into()),
            (">>>>>>crypto_aes>>>>>>", "start".into()),
            (
                "allocated_aes_crypto",
                self.total_encrypted_connections.to_string(),
            ),
            ("allocated_aes_crypto_temp", "0".into()),
            ("aes_pwd_hash", i.aes_pwd_hash.clone()),
            ("<<<<<<crypto_aes<<<<<<", "end".into()),
            (">>>>>>crypto_dh>>>>>>", "start".into()),
            ("tot_dh_rounds", "0 0 0".into()),
            ("<<<<<<crypto_dh<<<<<<", "end".into()),
            (">>>>>>jobs>>>>>>", "start".into()),
            ("thread_average_idle_percent", per_thread.into()),
            ("thread_recent_idle_percent", per_thread.into()),
            ("tot_threads", threads),
            ("thread_load_average_user", per_thread.into()),
            ("thread_load_average_sys", per_thread.into()),
            ("thread_load_average", per_thread.into()),
            ("thread_load_recent_user", per_thread.into()),
            ("thread_load_recent_sys", per_thread.into()),
            ("thread_load_recent", per_thread.into()),
            ("load_average_user", zero3.into()),
            ("load_average_sys", zero3.into()),
            ("load_average_total", zero3.into()),
            ("load_recent_user", zero3.into()),
            ("load_recent_sys", zero3.into()),
            ("load_recent_total", zero3.into()),
            ("max_average_user", zero3.into()),
            ("max_average_sys", zero3.into()),
            ("max_average_total", zero3.into()),
            ("max_recent_user", zero3.into()),
            ("max_recent_sys", zero3.into()),
            ("max_recent_total", zero3.into()),
            ("job_timers_allocated", "0".into()),
            ("jobs_created", "0".into()),
            ("jobs_active", "0".into()),
            ("jobs_running", "0 0 0 0  0 0 0 0  0 0 0 0  0 0 0 0".into()),
            ("jobs_allocated_memory", "0".into()),
            ("timer_ops", "0".into()),
            ("timer_ops_scheduler", "0".into()),
            ("<<<<<<jobs<<<<<<", "end".into()),
            (">>>>>>mp_queue>>>>>>", "start".into()),
            ("mpq_blocks_allocated", "0".into()),
            ("mpq_blocks_allocated_max", "0".into()),
            ("mpq_blocks_allocations", "0".into()),
            ("mpq_blocks_true_allocations", "0".into()),
            ("mpq_blocks_wasted", "0".into()),
            ("mpq_blocks_prepared", "0".into()),
            ("mpq_small_blocks_allocated", "0".into()),
            ("mpq_small_blocks_allocated_max", "0".into()),
            ("mpq_active", "0".into()),
            ("mpq_allocated", "0".into()),
            ("<<<<<<mp_queue<<<<<<", "end".into()),
            (">>>>>>timers>>>>>>", "start".into()),
            ("event_timer_insert_ops", "0".into()),
            ("event_timer_remove_ops", "0".into()),
            ("event_timer_alarms", "0".into()),
            ("total_timers", "0".into()),
            ("<<<<<<timers<<<<<<", "end".into()),
            (">>>>>>rpc_targets>>>>>>", "start".into()),
            (
                "total_rpc_targets",
                self.total_allocated_targets.to_string(),
            ),
            (
                "total_connections_in_rpc_targets",
                self.ready_outbound_connections.to_string(),
            ),
            ("<<<<<<rpc_targets<<<<<<", "end".into()),
            ("stats_generate_time", "0.000000".into()),
        ];
        for (k, v) in &engine {
            kv(k, v);
        }
        kv("vmsize_bytes", &i.vmsize_bytes);
        kv("vmrss_bytes", &i.vmrss_bytes);
        kv("vmdata_bytes", &i.vmdata_bytes);
        kv("config_filename", &i.config_filename);
        kv("config_loaded_at", &i.config_loaded_at);
        kv("config_size", &i.config_size);
        kv("config_md5", &i.config_md5);
        kv("config_auth_clusters", &i.config_auth_clusters);
        kv("workers", &i.workers);
        kv("queries_get", &0);
        kv("qps_get", &"0.000");
        kv("tot_forwarded_queries", &self.tot_forwarded_queries);
        kv("expired_forwarded_queries", &self.expired_forwarded_queries);
        kv("dropped_queries", &self.dropped_queries);
        kv("tot_forwarded_responses", &self.tot_forwarded_responses);
        kv("dropped_responses", &self.dropped_responses);
        kv("tot_forwarded_simple_acks", &self.tot_forwarded_simple_acks);
        kv("dropped_simple_acks", &self.dropped_simple_acks);
        kv("active_rpcs_created", &0);
        kv("active_rpcs", &0);
        kv("rpc_dropped_answers", &0);
        kv("rpc_dropped_running", &0);
        kv("window_clamp", &i.window_clamp);
        kv("total_ready_targets", &self.total_ready_targets);
        kv("total_allocated_targets", &self.total_allocated_targets);
        kv("total_declared_targets", &self.total_declared_targets);
        kv("total_inactive_targets", &self.total_inactive_targets);
        kv("total_connections", &self.total_connections);
        kv(
            "total_encrypted_connections",
            &self.total_encrypted_connections,
        );
        kv("total_allocated_connections", &self.total_connections);
        kv(
            "total_allocated_outbound_connections",
            &self.total_allocated_outbound_connections,
        );
        kv(
            "total_allocated_inbound_connections",
            &self.total_allocated_inbound_connections,
        );
        kv(
            "total_allocated_socket_connections",
            &self.total_connections,
        );
        kv("total_dh_connections", &0);
        kv("total_dh_rounds", &"0 0 0");
        kv("total_special_connections", &self.total_special_connections);
        kv(
            "total_max_special_connections",
            &self.total_max_special_connections,
        );
        kv(
            "total_accept_connections_failed",
            &format!("0 0 {} 0 0", self.accept_connection_limit_failed),
        );
        kv("ext_connections", &self.ext_connections);
        kv("ext_connections_created", &self.ext_connections_created);
        kv("total_active_network_events", &0);
        kv(
            "total_network_buffers_used_size",
            &self.total_network_buffers_used_size,
        );
        kv(
            "total_network_buffers_allocated_bytes",
            &self.total_network_buffers_used_size,
        );
        kv("total_network_buffers_used", &0);
        kv("total_network_buffer_chunks_allocated", &0);
        kv("total_network_buffer_chunks_allocated_max", &0);
        kv("mtproto_proxy_errors", &self.mtproto_proxy_errors);
        kv("connections_failed_lru", &self.connections_failed_lru);
        kv("connections_failed_flood", &self.connections_failed_flood);
        kv("http_connections", &0);
        kv("pending_http_queries", &0);
        kv("http_queries", &self.http_queries);
        kv("http_bad_headers", &0);
        let http_qps = if uptime > 0 {
            self.http_queries as f64 / uptime as f64
        } else {
            0.0
        };
        kv("http_qps", &format!("{http_qps:.6}"));
        kv("proxy_mode", &2);
        kv("proxy_tag_set", &u8::from(i.proxy_tag_set));
        // Keys beyond C's block (ours), after C's so C parsers see their keys first.
        for (k, v) in [
            (
                "outbound_connections_created",
                self.outbound_connections_created,
            ),
            (
                "inbound_connections_accepted",
                self.inbound_connections_accepted,
            ),
            ("bad_secret_connections", self.bad_secret_connections),
            ("handshake_timeouts", self.handshake_timeouts),
            ("transport_errors", self.transport_errors),
            ("tls_rejected_hellos", self.tls_rejected_hellos),
            ("tls_replayed_hellos", self.tls_replayed_hellos),
            ("tls_fronted_connections", self.tls_fronted_connections),
            ("tls_handshakes", self.tls_handshakes),
            ("tls_not_tls_connections", self.tls_not_tls_connections),
            ("tls_hello_timeouts", self.tls_hello_timeouts),
            ("tls_port80_connections", self.tls_port80_connections),
            ("tls_hello_malformed", self.tls_hello_malformed),
            ("tls_hello_unknown_sni", self.tls_hello_unknown_sni),
            ("tls_hello_too_much_data", self.tls_hello_too_much_data),
            ("tls_hello_too_big", self.tls_hello_too_big),
            ("tls_hello_bad_hmac", self.tls_hello_bad_hmac),
            (
                "tls_hello_future_timestamp",
                self.tls_hello_future_timestamp,
            ),
            ("tls_hello_stale_timestamp", self.tls_hello_stale_timestamp),
            (
                "tls_hello_bad_cipher_suite",
                self.tls_hello_bad_cipher_suite,
            ),
            ("tls_bad_client_records", self.tls_bad_client_records),
            ("tls_fronting_loops", self.tls_fronting_loops),
            ("tls_fronting_failures", self.tls_fronting_failures),
            ("tls_domain_probes_ok", self.tls_domain_probes_ok),
            ("tls_domain_probes_failed", self.tls_domain_probes_failed),
            ("obfs2_replayed_headers", self.obfs2_replayed_headers),
            ("replay_cache_errors", self.replay_cache_errors),
            ("config_reloads", self.config_reloads),
            ("config_reload_failures", self.config_reload_failures),
            ("worker_restarts", self.worker_restarts),
            ("log_write_failures", self.log_write_failures),
            (
                "tls_fronting_idle_timeouts",
                self.tls_fronting_idle_timeouts,
            ),
            (
                "tls_fronting_half_close_timeouts",
                self.tls_fronting_half_close_timeouts,
            ),
            ("tls_replay_cache_full", self.tls_replay_cache_full),
            ("obfs2_replay_cache_full", self.obfs2_replay_cache_full),
            (
                "me_links_closed_ctl_backlog",
                self.me_links_closed_ctl_backlog,
            ),
            (
                "me_links_closed_pong_backlog",
                self.me_links_closed_pong_backlog,
            ),
            ("me_links_closed_junk", self.me_links_closed_junk),
            ("client_write_stalls", self.client_write_stalls),
            ("preauth_evictions", self.preauth_evictions),
            ("per_ip_refusals", self.per_ip_refusals),
            ("connections_failed_input", self.connections_failed_input),
            ("client_idle_timeouts", self.client_idle_timeouts),
        ] {
            kv(k, &v);
        }
        kv("version", &i.version);
        s
    }

    /// Renders Prometheus text exposition (format 0.0.4) by Prometheus's conventions: every
    /// family has `# HELP` and `# TYPE`; counters are `counter`s named `…_total`, levels are
    /// `gauge`s; connections and traffic are broken down by `secret` (an index, never the
    /// secret) and by `dc`; the middle-end round trip is a histogram; the process metrics
    /// use the standard `process_*` names.
    pub fn render_prometheus(&self) -> String {
        let mut s = String::with_capacity(16 * 1024);
        let family = |s: &mut String, name: &str, kind: &str, help: &str| {
            let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
            let help = help.replace('\\', "\\\\");
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let values: BTreeMap<&str, i64> = self.counters().into_iter().collect();
        for f in FAMILIES {
            let v = values.get(f.name).copied().unwrap_or(0);
            let name = match f.kind {
                Kind::counter => format!("mtproxy_{}_total", f.name),
                Kind::gauge => format!("mtproxy_{}", f.name),
            };
            let kind = match f.kind {
                Kind::counter => "counter",
                Kind::gauge => "gauge",
            };
            family(&mut s, &name, kind, f.help);
            let _ = writeln!(s, "{name} {v}");
        }
        let labelled: [(&str, Vec<(String, TrafficSnapshot)>); 2] = [
            (
                "secret",
                self.by_secret
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
            ),
            (
                "dc",
                self.by_dc
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
            ),
        ];
        for (label, rows) in &labelled {
            let per: [PerLabel; 4] = [
                (
                    "client_connections",
                    "gauge",
                    "Identified clients open now",
                    |t| t.connections,
                ),
                (
                    "client_connections_total",
                    "counter",
                    "Identified clients ever",
                    |t| t.connections_total,
                ),
                (
                    "client_bytes_received_total",
                    "counter",
                    "Payload bytes from clients forwarded to middle ends",
                    |t| t.bytes_from_clients,
                ),
                (
                    "client_bytes_sent_total",
                    "counter",
                    "Payload bytes from middle ends delivered to clients",
                    |t| t.bytes_to_clients,
                ),
            ];
            for (what, kind, help, get) in per {
                let name = format!("mtproxy_{label}_{what}");
                family(&mut s, &name, kind, &format!("{help}, by {label}."));
                for (k, v) in rows {
                    let _ = writeln!(s, "{name}{{{label}=\"{k}\"}} {}", get(v));
                }
            }
        }
        family(
            &mut s,
            "mtproxy_me_rtt_seconds",
            "histogram",
            "Middle-end round trip: a handshake message of ours (RPC_NONCE, RPC_HANDSHAKE) written to the first bytes of the answer read, on every link handshake.",
        );
        let mut cumulative = 0u64;
        for (i, bound) in RTT_BUCKETS.iter().enumerate() {
            cumulative += self.me_rtt.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                s,
                "mtproxy_me_rtt_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            s,
            "mtproxy_me_rtt_seconds_bucket{{le=\"+Inf\"}} {}\nmtproxy_me_rtt_seconds_sum {}\nmtproxy_me_rtt_seconds_count {}",
            self.me_rtt.count(),
            self.me_rtt.sum_micros as f64 / 1e6,
            self.me_rtt.count()
        );
        let i = &self.info;
        for (name, kind, help, value) in [
            (
                "mtproxy_workers",
                "gauge",
                "Worker processes (-M).",
                i.workers.to_string(),
            ),
            (
                "mtproxy_uptime_seconds",
                "gauge",
                "Seconds since the process started.",
                (i.current_time - i.start_time).max(0).to_string(),
            ),
            (
                "mtproxy_config_loaded_at_seconds",
                "gauge",
                "Unix time the current configuration was loaded.",
                i.config_loaded_at.to_string(),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes (with -M: the master's and its workers').",
                i.vmrss_bytes.to_string(),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes of the process answering.",
                i.vmsize_bytes.to_string(),
            ),
            (
                "process_open_fds",
                "gauge",
                "Open file descriptors (with -M: the master's and its workers').",
                i.open_fds.to_string(),
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                i.max_fds.to_string(),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                i.start_time.to_string(),
            ),
        ] {
            family(&mut s, name, kind, help);
            let _ = writeln!(s, "{name} {value}");
        }
        family(
            &mut s,
            "mtproxy_build_info",
            "gauge",
            "Version and configuration digest; always 1.",
        );
        let _ = writeln!(
            s,
            "mtproxy_build_info{{version=\"{}\",config_md5=\"{}\"}} 1",
            escape_label(&i.version),
            escape_label(&i.config_md5)
        );
        s
    }
}

/// A labelled family: name suffix, type, help, and how to read it from a row.
type PerLabel = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TrafficSnapshot) -> i64,
);

/// A label value with `\`, `"` and newlines escaped (text format 0.0.4).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Parses a `/stats` body into `(key, value)` pairs (used by tests and the harness).
pub fn parse_stats(body: &str) -> Vec<(String, String)> {
    body.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reads `VmRSS`, `VmSize` and `VmData` (bytes) from `/proc/self/status` text.
pub fn parse_proc_status(text: &str) -> (u64, u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmSize:"), field("VmData:"))
}

/// Bumps a counter by one.
#[inline]
pub fn inc(c: &AtomicI64) {
    c.fetch_add(1, Relaxed);
}

/// Lowers a gauge by one.
#[inline]
pub fn dec(c: &AtomicI64) {
    c.fetch_sub(1, Relaxed);
}

/// A process-wide monotonically increasing id source (connection ids).
#[derive(Debug, Default)]
pub struct IdSource(AtomicU64);

impl IdSource {
    /// A source whose first id is `first`.
    pub fn starting_at(first: u64) -> Self {
        Self(AtomicU64::new(first))
    }

    /// The next id.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_text_carries_c_keys_in_c_order_and_sums() {
        let c = Counters::default();
        inc(&c.tot_forwarded_queries);
        inc(&c.tot_forwarded_queries);
        inc(&c.dropped_responses);
        let info = Info {
            workers: 2,
            config_filename: "proxy-multi.conf".into(),
            start_time: 100,
            current_time: 110,
            ..Info::default()
        };
        let mut a = c.snapshot(info.clone());
        let b = c.snapshot(info);
        a.add(&b);
        let text = a.render_stats();
        let kv = parse_stats(&text);
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("tot_forwarded_queries").as_deref(), Some("4"));
        assert_eq!(get("dropped_responses").as_deref(), Some("2"));
        assert_eq!(get("workers").as_deref(), Some("2"));
        assert_eq!(get("uptime").as_deref(), Some("10"));
        let pos = |k: &str| kv.iter().position(|(key, _)| key == k).unwrap();
        assert!(pos("config_filename") < pos("tot_forwarded_queries"));
        assert!(pos("tot_forwarded_queries") < pos("ext_connections"));
        assert!(pos("ext_connections") < pos("connections_failed_flood"));
        assert_eq!(kv.last().unwrap().0, "version");
        let prom = a.render_prometheus();
        assert!(prom.contains("\nmtproxy_tot_forwarded_queries_total 4\n"));
    }

    /// What a scraper reads: every family typed and explained, counters named `_total`,
    /// labelled traffic summed across workers, the histogram cumulative.
    #[test]
    fn prometheus_text_follows_the_conventions_and_sums_labels() {
        let c = Counters::default();
        inc(&c.tot_forwarded_queries);
        inc(&c.total_connections);
        let (sec, dc) = c.labelled.entries(Some(1), -2);
        inc(&sec.connections);
        sec.bytes_from_clients.fetch_add(100, Relaxed);
        dc.bytes_to_clients.fetch_add(7, Relaxed);
        let _ = c.labelled.entries(None, 2);
        c.me_rtt.observe(Duration::from_micros(300));
        c.me_rtt.observe(Duration::from_secs(5));
        let mut a = c.snapshot(Info::default());
        a.add(&c.snapshot(Info::default()));
        let scrape = prometheus_parse::Scrape::parse(
            a.render_prometheus().lines().map(|l| Ok(l.to_string())),
        )
        .unwrap();
        let value = |name: &str, label: Option<(&str, &str)>| {
            scrape
                .samples
                .iter()
                .find(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
                .map(|x| x.value.clone())
        };
        use prometheus_parse::Value;
        assert_eq!(
            value("mtproxy_tot_forwarded_queries_total", None),
            Some(Value::Counter(2.0))
        );
        assert_eq!(
            value("mtproxy_total_connections", None),
            Some(Value::Gauge(2.0))
        );
        assert_eq!(
            value(
                "mtproxy_secret_client_bytes_received_total",
                Some(("secret", "1"))
            ),
            Some(Value::Counter(200.0))
        );
        assert_eq!(
            value("mtproxy_secret_client_connections", Some(("secret", "1"))),
            Some(Value::Gauge(2.0))
        );
        assert_eq!(
            value("mtproxy_dc_client_bytes_sent_total", Some(("dc", "-2"))),
            Some(Value::Counter(14.0))
        );
        assert!(value(
            "mtproxy_secret_client_connections",
            Some(("secret", "none"))
        )
        .is_some());
        match value("mtproxy_me_rtt_seconds", None) {
            Some(Value::Histogram(h)) => {
                let le = |b: f64| h.iter().find(|x| x.less_than == b).map(|x| x.count);
                assert_eq!(le(0.000_25), Some(0.0));
                assert_eq!(le(0.000_5), Some(2.0));
                assert_eq!(le(1.0), Some(2.0));
                assert_eq!(le(f64::INFINITY), Some(4.0));
            }
            other => panic!("me_rtt is not a histogram: {other:?}"),
        }
        for f in FAMILIES {
            let name = match f.kind {
                Kind::counter => format!("mtproxy_{}_total", f.name),
                Kind::gauge => format!("mtproxy_{}", f.name),
            };
            assert!(
                scrape.docs.get(&name).is_some_and(|h| !h.is_empty()),
                "{name} has no HELP"
            );
        }
        assert!(scrape.docs.contains_key("process_open_fds"));
        assert!(scrape.docs.contains_key("mtproxy_me_rtt_seconds"));
    }

    #[test]
    fn proc_status_is_parsed_in_bytes() {
        let t = "Name:\tx\nVmSize:\t  1000 kB\nVmRSS:\t   20 kB\nVmData:\t 300 kB\n";
        assert_eq!(parse_proc_status(t), (20 * 1024, 1000 * 1024, 300 * 1024));
    }
}
