//! Clients that misbehave: a wrong secret, an invalid MTProto packet, an oversize frame,
//! and the short padded frame that aborts C.

use std::time::{Duration, Instant};

use anyhow::ensure;
use mtproxy::protocol::transport::Transport;
use parity::client::{self, encrypted_message, Reaction};
use parity::subject::Subject;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::support::{each_subject, note, num, Rig, Setup};

const TRANSPORTS: [Transport; 3] = [
    Transport::Abridged,
    Transport::Intermediate,
    Transport::PaddedIntermediate,
];

/// Asserts the rig still serves: a fresh client echoes.
async fn still_serves(rig: &Rig, seed: u64) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = rig.client(Transport::Intermediate, 2, seed).await?;
    let p = encrypted_message(&mut rng, 64);
    let ex = rig
        .step("a new client's request", c.request(&p, false))
        .await?;
    ensure!(ex.answer[..] == p[..], "echo differs");
    rig.alive()
}

async fn silence_for_two_seconds(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(subject, Setup::default()).await?;
    let wait = Duration::from_secs(2);
    let (a, b, c) = tokio::join!(
        client::wrong_secret(rig.addr(), Transport::Abridged, 60, wait),
        client::wrong_secret(rig.addr(), Transport::Intermediate, 61, wait),
        client::wrong_secret(rig.addr(), Transport::PaddedIntermediate, 62, wait),
    );
    for r in [a, b, c] {
        let r = r?;
        ensure!(
            r == Reaction::Silence,
            "{}",
            rig.ctx(&format!(
                "wrong secret: expected silence with the connection open after 2 s, got {r:?}"
            ))
        );
    }
    still_serves(&rig, 69).await
}

/// The candidate only: with `MTPROXY_PRE_AUTH_TIMEOUT=2` the silent connection is closed
/// after about 2 s (divergence `wrong-secret-idle-timeout`: C never closes it).
async fn bounded_pre_auth(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(
        subject,
        Setup {
            env: vec![("MTPROXY_PRE_AUTH_TIMEOUT".into(), "2".into())],
            ..Setup::default()
        },
    )
    .await?;
    let before = num(&rig.stats().await?, "handshake_timeouts")?;
    let started = Instant::now();
    let r = client::wrong_secret(
        rig.addr(),
        Transport::Intermediate,
        63,
        Duration::from_secs(8),
    )
    .await?;
    let took = started.elapsed();
    ensure!(
        r == Reaction::Closed,
        "{}",
        rig.ctx(&format!(
            "wrong secret with a 2 s pre-auth timeout: expected a silent close, got {r:?}"
        ))
    );
    ensure!(
        took >= Duration::from_millis(1800) && took <= Duration::from_secs(5),
        "closed after {took:?}, expected about 2 s"
    );
    note(&format!(
        "candidate closed a wrong-secret connection after {took:?} (MTPROXY_PRE_AUTH_TIMEOUT=2)"
    ));
    rig.wait_stats("handshake_timeouts + 1", Duration::from_secs(5), |s| {
        num(s, "handshake_timeouts").is_ok_and(|v| v > before)
    })
    .await?;
    still_serves(&rig, 64).await
}

async fn wrong_secret(subject: &Subject) -> anyhow::Result<()> {
    if subject.is_candidate() {
        let (a, b) = tokio::join!(silence_for_two_seconds(subject), bounded_pre_auth(subject));
        a?;
        b
    } else {
        // Divergence `wrong-secret-idle-timeout`: C holds the connection forever, so only
        // the silence is checked on the reference.
        silence_for_two_seconds(subject).await
    }
}

/// Scenario 6: a wrong secret gets silence (no bytes, still open after 2 s); the
/// candidate also closes it after its bounded pre-authentication time.
#[tokio::test]
async fn wrong_secret_is_silent_and_bounded_on_the_candidate() {
    each_subject(
        "wrong_secret_is_silent_and_bounded_on_the_candidate",
        |t| async move { wrong_secret(&t).await },
    )
    .await;
}

async fn invalid_packet(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(subject, Setup::default()).await?;
    let before = num(&rig.stats().await?, "mtproto_proxy_errors")?;
    for (i, t) in TRANSPORTS.into_iter().enumerate() {
        let cfg = rig.cfg(t, 2, 80 + i as u64);
        let (valid, ex) = rig
            .step(
                &format!("{t:?}: invalid packet, then a valid one"),
                client::invalid_packet_then_valid(rig.addr(), cfg),
            )
            .await?;
        ensure!(
            ex.answer[..] == valid[..],
            "{t:?}: echo of the valid packet differs"
        );
    }
    // Only the valid packets reached the ME.
    ensure!(
        rig.me().records().len() == TRANSPORTS.len(),
        "the ME saw {} requests, expected only the {} valid ones",
        rig.me().records().len(),
        TRANSPORTS.len()
    );
    let after = num(&rig.stats().await?, "mtproto_proxy_errors")?;
    if subject.is_candidate() {
        ensure!(
            after >= before + TRANSPORTS.len() as i64,
            "mtproto_proxy_errors {before} → {after}, expected +{}",
            TRANSPORTS.len()
        );
    } else {
        note(&format!(
            "reference mtproto_proxy_errors {before} → {after} after {} invalid packets",
            TRANSPORTS.len()
        ));
    }
    rig.alive()
}

/// Scenario 8: an invalid packet is dropped without closing the client.
#[tokio::test]
async fn invalid_packet_is_dropped_without_closing() {
    each_subject(
        "invalid_packet_is_dropped_without_closing",
        |t| async move { invalid_packet(&t).await },
    )
    .await;
}

async fn oversize(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(subject, Setup::default()).await?;
    for (i, t) in TRANSPORTS.into_iter().enumerate() {
        let r = client::oversize_frame(
            rig.addr(),
            rig.cfg(t, 2, 90 + i as u64),
            Duration::from_secs(5),
        )
        .await?;
        ensure!(
            r == Reaction::Closed,
            "{}",
            rig.ctx(&format!(
                "{t:?}: oversize frame: expected a close, got {r:?}"
            ))
        );
    }
    ensure!(
        rig.me().records().is_empty(),
        "an oversize frame was forwarded"
    );
    still_serves(&rig, 99).await
}

/// Scenario 9: a frame above 1 044 480 bytes closes the connection (every transport).
#[tokio::test]
async fn oversize_frame_closes_the_connection() {
    each_subject("oversize_frame_closes_the_connection", |t| async move {
        oversize(&t).await
    })
    .await;
}

async fn short_padded(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(subject, Setup::default()).await?;
    if subject.is_candidate() {
        for len in 1..=3u8 {
            let r = client::short_padded_frame(
                rig.addr(),
                rig.cfg(Transport::PaddedIntermediate, 2, 110 + u64::from(len)),
                len,
                Duration::from_secs(5),
            )
            .await?;
            ensure!(
                r == Reaction::Closed,
                "{}",
                rig.ctx(&format!(
                    "padded frame of length {len}: expected a close, got {r:?}"
                ))
            );
        }
        ensure!(
            rig.me().records().is_empty(),
            "a short padded frame was forwarded"
        );
        return still_serves(&rig, 119).await;
    }
    // The reference: divergence `c-aborts-on-short-padded-frame` — C truncates the payload
    // to 0 bytes, an assert fails and the whole process aborts (§4.3, §11.15).
    let _ = client::short_padded_frame(
        rig.addr(),
        rig.cfg(Transport::PaddedIntermediate, 2, 111),
        2,
        Duration::from_secs(2),
    )
    .await;
    let exit = rig.proxy.wait_exit(Duration::from_secs(10)).await;
    ensure!(
        exit.is_some_and(|e| e.code != Some(0)),
        "{}",
        rig.ctx(&format!(
            "divergence c-aborts-on-short-padded-frame: the C build was expected to crash on a \
             padded frame of length 2, but its exit is {:?}",
            exit.map(|e| e.class())
        ))
    );
    note(&format!(
        "reference crashed on the short padded frame as documented (c-aborts-on-short-padded-frame): {}",
        exit.map(|e| e.class()).unwrap_or_default()
    ));
    Ok(())
}

/// Scenario 10: a padded frame of length 1..3 closes that connection on the candidate,
/// which keeps serving; the C reference aborts (divergence c-aborts-on-short-padded-frame).
#[tokio::test]
async fn short_padded_frame_closes_only_that_connection() {
    each_subject(
        "short_padded_frame_closes_only_that_connection",
        |t| async move { short_padded(&t).await },
    )
    .await;
}
