//! Client traffic: transports × dcs × proxy tag (PROXY_REQ flags, quick acks, routing),
//! RPC_PING, RPC_CLOSE_EXT, client close → RPC_CLOSE_CONN, several secrets, and 200
//! concurrent clients.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{ensure, Context};
use mtproxy::protocol::rpc::messages::flags;
use mtproxy::protocol::transport::Transport;
use parity::client::{
    encrypted_message, expected_confirm, unencrypted_req_pq_multi, ClientConfig, SimClient,
};
use parity::subject::Subject;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::support::{each_subject, num, Rig, Setup, CLIENT_TIMEOUT, SECRET, TAG};

const TRANSPORTS: [Transport; 3] = [
    Transport::Abridged,
    Transport::Intermediate,
    Transport::PaddedIntermediate,
];

/// The PROXY_REQ flags a client packet must carry (§5.7).
fn expected_flags(t: Transport, tag: bool, unencrypted: bool, quick_ack: bool) -> u32 {
    let mut f = flags::EXT | flags::EXTMODE2;
    f |= if t == Transport::Abridged {
        flags::COMPACT
    } else {
        flags::MEDIUM
    };
    if tag {
        f |= flags::PROXY_TAG;
    }
    if unencrypted {
        f |= flags::UNENCRYPTED;
    }
    if quick_ack {
        f |= flags::QUICKACK;
    }
    f
}

/// One client: three round trips (unencrypted + quick ack, encrypted, encrypted long +
/// quick ack), then the FakeMe's records for it checked field by field.
async fn one_client(
    rig: &Rig,
    t: Transport,
    dc: i16,
    expected_me: usize,
    tag: Option<[u8; 16]>,
    seed: u64,
) -> anyhow::Result<i64> {
    let what = format!("{t:?} dc {dc} tag {}", tag.is_some());
    let mut c = rig.client(t, dc, seed).await?;
    let local = c.local_addr()?;
    let mut rng = StdRng::seed_from_u64(seed);
    // 600 bytes is above abridged's one-byte length (0x7e words): the long form is used.
    let packets = [
        (unencrypted_req_pq_multi(&mut rng), true),
        (encrypted_message(&mut rng, 100), false),
        (encrypted_message(&mut rng, 600), true),
    ];
    for (p, qa) in &packets {
        let ex = rig
            .step(&format!("{what}: request"), c.request(p, *qa))
            .await?;
        ensure!(ex.answer[..] == p[..], "{what}: echo differs");
        if *qa {
            ensure!(
                ex.quick_ack == Some(expected_confirm(p)),
                "{what}: quick ack {:?}, expected {:#010x}",
                ex.quick_ack,
                expected_confirm(p)
            );
        } else {
            ensure!(ex.quick_ack.is_none(), "{what}: unrequested quick ack");
        }
    }
    for (i, me) in rig.mes.iter().enumerate() {
        let recs: Vec<_> = me
            .records()
            .into_iter()
            .filter(|r| r.client == local)
            .collect();
        if i != expected_me {
            ensure!(
                recs.is_empty(),
                "{what}: {} requests reached FakeMe {i}, expected FakeMe {expected_me}",
                recs.len()
            );
            continue;
        }
        ensure!(
            recs.len() == packets.len(),
            "{what}: FakeMe {i} recorded {} requests from {local}, expected {}",
            recs.len(),
            packets.len()
        );
        for (r, (p, qa)) in recs.iter().zip(&packets) {
            let unencrypted = p[..8] == [0u8; 8];
            let want = expected_flags(t, tag.is_some(), unencrypted, *qa);
            ensure!(
                r.flags == want,
                "{what}: PROXY_REQ flags {:#010x}, expected {want:#010x}",
                r.flags
            );
            ensure!(
                r.proxy_tag == tag,
                "{what}: tag {:?}, expected {tag:?}",
                r.proxy_tag
            );
            ensure!(r.payload[..] == p[..], "{what}: forwarded payload differs");
            ensure!(
                r.proxy == rig.addr(),
                "{what}: proxy address {} in PROXY_REQ, expected {}",
                r.proxy,
                rig.addr()
            );
            ensure!(
                r.ext_conn_id == recs[0].ext_conn_id && r.link == recs[0].link,
                "{what}: the client is not pinned to one conn id and link"
            );
        }
    }
    c.close().await;
    let rec = rig.mes[expected_me]
        .records()
        .into_iter()
        .find(|r| r.client == local)
        .context("record vanished")?;
    Ok(rec.ext_conn_id)
}

async fn round_trips_with(subject: &Subject, tag: Option<[u8; 16]>) -> anyhow::Result<()> {
    // dc 2 (also the default) → FakeMe 0; dc -2 → FakeMe 1; dc 99 is unknown → default.
    let rig = Rig::start(
        subject,
        Setup {
            mes: 2,
            routes: Some(vec![(2, 0), (-2, 1)]),
            tag,
            ..Setup::default()
        },
    )
    .await?;
    let mut ids = HashSet::new();
    let mut seed = 100;
    for t in TRANSPORTS {
        for (dc, me) in [(2i16, 0usize), (-2, 1), (99, 0)] {
            seed += 1;
            let id = one_client(&rig, t, dc, me, tag, seed).await?;
            ensure!(ids.insert(id), "conn id {id:#x} reused");
        }
    }
    rig.alive()
}

async fn round_trips(subject: &Subject) -> anyhow::Result<()> {
    let (a, b) = tokio::join!(
        round_trips_with(subject, None),
        round_trips_with(subject, Some(TAG))
    );
    a.context("without -P")?;
    b.context("with -P")
}

/// Scenario 1: every transport × dc 2 / -2 / 99 (default cluster) × with and without `-P`.
#[tokio::test]
async fn transports_dcs_and_tag_round_trip_with_exact_flags() {
    each_subject(
        "transports_dcs_and_tag_round_trip_with_exact_flags",
        |t| async move { round_trips(&t).await },
    )
    .await;
}

async fn ping_pong(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(subject, Setup::default()).await?;
    let id = 0x1122_3344_5566_7788_i64;
    let n = rig.me().send_ping(id).await?;
    ensure!(n >= 1, "no ready link to ping");
    let pongs = rig
        .step("PONGs", rig.me().wait_pongs(n, Duration::from_secs(5)))
        .await?;
    ensure!(
        pongs.iter().all(|p| p.ping_id == id),
        "PONG ids {:?}, expected {id:#x}",
        pongs.iter().map(|p| p.ping_id).collect::<Vec<_>>()
    );
    let links: HashSet<usize> = pongs.iter().map(|p| p.link).collect();
    ensure!(links.len() == n, "PONGs on {links:?} for {n} pinged links");
    rig.alive()
}

/// Scenario 2: RPC_PING from the ME → RPC_PONG with the same id on every link.
#[tokio::test]
async fn me_ping_is_answered_with_pong() {
    each_subject("me_ping_is_answered_with_pong", |t| async move {
        ping_pong(&t).await
    })
    .await;
}

async fn close_ext(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(subject, Setup::default()).await?;
    let mut rng = StdRng::seed_from_u64(3);
    let mut a = rig.client(Transport::Intermediate, 2, 31).await?;
    let mut b = rig.client(Transport::Abridged, 2, 32).await?;
    let (pa, pb) = (
        encrypted_message(&mut rng, 64),
        encrypted_message(&mut rng, 64),
    );
    rig.step("a request", a.request(&pa, false)).await?;
    rig.step("b request", b.request(&pb, false)).await?;
    let a_addr = a.local_addr()?;
    let a_id = rig
        .me()
        .records()
        .iter()
        .find(|r| r.client == a_addr)
        .map(|r| r.ext_conn_id)
        .context("no record of client a")?;
    rig.me().close_ext(a_id).await?;
    ensure!(
        a.closed_within(Duration::from_secs(5)).await,
        "{}",
        rig.ctx("client a not closed within 5 s of RPC_CLOSE_EXT")
    );
    let pb2 = encrypted_message(&mut rng, 128);
    let ex = rig.step("b after a's close", b.request(&pb2, true)).await?;
    ensure!(ex.answer[..] == pb2[..], "b's echo differs");
    ensure!(
        !rig.me().close_conns().iter().any(|c| c.conn_id == a_id),
        "the proxy answered RPC_CLOSE_EXT with RPC_CLOSE_CONN for {a_id:#x}"
    );
    rig.alive()
}

/// Scenario 3: RPC_CLOSE_EXT closes exactly that client.
#[tokio::test]
async fn close_ext_closes_only_that_client() {
    each_subject("close_ext_closes_only_that_client", |t| async move {
        close_ext(&t).await
    })
    .await;
}

async fn client_close(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(subject, Setup::default()).await?;
    let mut rng = StdRng::seed_from_u64(4);
    let mut c = rig.client(Transport::PaddedIntermediate, -3, 41).await?;
    let local = c.local_addr()?;
    rig.step(
        "request",
        c.request(&encrypted_message(&mut rng, 80), false),
    )
    .await?;
    let rec = rig
        .me()
        .records()
        .into_iter()
        .find(|r| r.client == local)
        .context("no record")?;
    c.close().await;
    let id = rec.ext_conn_id;
    rig.step(
        "RPC_CLOSE_CONN for the closed client",
        rig.me()
            .wait_for("CLOSE_CONN", Duration::from_secs(5), |s| {
                s.close_conns.iter().any(|c| c.conn_id == id)
            }),
    )
    .await?;
    let cc = rig
        .me()
        .close_conns()
        .into_iter()
        .find(|c| c.conn_id == id)
        .context("close record")?;
    ensure!(
        cc.link == rec.link,
        "CLOSE_CONN on link {}, the client was pinned to link {}",
        cc.link,
        rec.link
    );
    rig.alive()
}

/// Scenario 4: a client that closes → RPC_CLOSE_CONN with its conn id, on its link.
#[tokio::test]
async fn client_close_sends_close_conn() {
    each_subject("client_close_sends_close_conn", |t| async move {
        client_close(&t).await
    })
    .await;
}

async fn several_secrets(subject: &Subject) -> anyhow::Result<()> {
    let secrets = [[0xa1; 16], [0xb2; 16], [0xc3; 16]];
    let rig = Rig::start(
        subject,
        Setup {
            secrets: secrets.to_vec(),
            ..Setup::default()
        },
    )
    .await?;
    for (i, s) in secrets.iter().enumerate().rev() {
        let mut rng = StdRng::seed_from_u64(70 + i as u64);
        let cfg = ClientConfig::new(TRANSPORTS[i])
            .secret(*s)
            .dc(2)
            .seed(70 + i as u64)
            .timeout(CLIENT_TIMEOUT);
        let mut c = rig
            .step(
                &format!("connect with secret {i}"),
                SimClient::connect(rig.addr(), cfg),
            )
            .await?;
        let p = encrypted_message(&mut rng, 96);
        let ex = rig
            .step(&format!("request with secret {i}"), c.request(&p, true))
            .await?;
        ensure!(ex.answer[..] == p[..], "secret {i}: echo differs");
        ensure!(
            ex.quick_ack == Some(expected_confirm(&p)),
            "secret {i}: quick ack"
        );
    }
    rig.alive()
}

/// Scenario 7: with three `-S`, clients of the 2nd and 3rd secret (and the 1st) echo.
#[tokio::test]
async fn every_secret_of_several_is_accepted() {
    each_subject("every_secret_of_several_is_accepted", |t| async move {
        several_secrets(&t).await
    })
    .await;
}

const CLIENTS: usize = 200;
const REQUESTS: usize = 3;

async fn many_clients(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(subject, Setup::default()).await?;
    let addr = rig.addr();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let t = TRANSPORTS[i % 3];
        let dc = [2i16, -4, 99, 1][i % 4];
        let cfg = ClientConfig::new(t)
            .secret(SECRET)
            .dc(dc)
            .seed(1000 + i as u64)
            .timeout(Duration::from_secs(30));
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(5000 + i as u64);
            let mut c = SimClient::connect(addr, cfg)
                .await
                .with_context(|| format!("client {i} connect"))?;
            for k in 0..REQUESTS {
                let len = [56usize, 300, 2000, 17_000][(i + k) % 4];
                let p = if (i + k) % 5 == 0 {
                    unencrypted_req_pq_multi(&mut rng)
                } else {
                    encrypted_message(&mut rng, len)
                };
                let qa = (i + k) % 2 == 0;
                let ex = c
                    .request(&p, qa)
                    .await
                    .with_context(|| format!("client {i} request {k}"))?;
                ensure!(
                    ex.answer[..] == p[..],
                    "client {i} request {k}: echo differs"
                );
                if qa {
                    ensure!(
                        ex.quick_ack == Some(expected_confirm(&p)),
                        "client {i} request {k}: quick ack"
                    );
                }
            }
            c.close().await;
            anyhow::Ok(())
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{e:#}")),
            Err(e) => failures.push(format!("task: {e}")),
        }
    }
    ensure!(
        failures.is_empty(),
        "{}",
        rig.ctx(&format!(
            "{} of {CLIENTS} clients failed, e.g.:\n{}",
            failures.len(),
            failures
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ))
    );
    let want = (CLIENTS * REQUESTS) as i64;
    ensure!(
        rig.me().records().len() == CLIENTS * REQUESTS,
        "FakeMe recorded {} requests, expected {want}",
        rig.me().records().len()
    );
    rig.wait_stats("all queries counted", Duration::from_secs(5), |s| {
        num(s, "tot_forwarded_queries").is_ok_and(|v| v == want)
            && num(s, "tot_forwarded_responses").is_ok_and(|v| v == want)
    })
    .await?;
    rig.alive()
}

/// Scenario 17: 200 concurrent clients, mixed transports and dcs, a few requests each;
/// every echo is byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_echo_exactly() {
    each_subject(
        "two_hundred_concurrent_clients_echo_exactly",
        |t| async move { many_clients(&t).await },
    )
    .await;
}
