//! The middle-end link: loss and recovery, and answers for unknown connections.

use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use mtproxy::protocol::transport::Transport;
use parity::client::encrypted_message;
use parity::subject::Subject;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::support::{each_subject, note, num, Rig, Setup, LINKS_PER_TARGET};

/// C retries after ~1.1 s, then ~1.6 s, … (§5.1); recovery must come well within this.
const RECOVERY: Duration = Duration::from_secs(10);

async fn loss_and_recovery(subject: &Subject) -> anyhow::Result<()> {
    let rig = Rig::start(subject, Setup::default()).await?;
    let me = rig.me();
    let mut rng = StdRng::seed_from_u64(5);
    let mut pinned = Vec::new();
    for (i, t) in [Transport::Intermediate, Transport::Abridged]
        .into_iter()
        .enumerate()
    {
        let mut c = rig.client(t, 2, 50 + i as u64).await?;
        let p = encrypted_message(&mut rng, 64);
        rig.step("request before the loss", c.request(&p, false))
            .await?;
        pinned.push(c);
    }
    let before = me.handshakes();
    let lost_at = std::time::Instant::now();
    let dropped = me.drop_all().await;
    ensure!(dropped >= 1, "no link to drop");
    for (i, c) in pinned.iter_mut().enumerate() {
        ensure!(
            c.closed_within(Duration::from_secs(5)).await,
            "{}",
            rig.ctx(&format!(
                "pinned client {i} not closed after the ME link loss"
            ))
        );
    }
    rig.step(
        "the proxy reconnects to the ME",
        me.wait_handshakes(before + LINKS_PER_TARGET.min(dropped), RECOVERY),
    )
    .await?;
    note(&format!(
        "{}: {dropped} ME links dropped; a full set of new handshakes {:?} later",
        subject.name(),
        lost_at.elapsed()
    ));
    rig.wait_stats("a ready target again", RECOVERY, |s| {
        num(s, "total_ready_targets").is_ok_and(|v| v >= 1)
    })
    .await?;
    let mut c = rig.client(Transport::PaddedIntermediate, 2, 59).await?;
    let p = encrypted_message(&mut rng, 200);
    let ex = rig
        .step("request after the recovery", c.request(&p, true))
        .await?;
    ensure!(ex.answer[..] == p[..], "echo after recovery differs");

    // An answer for a conn id the proxy never issued: CLOSE_CONN back, dropped_responses +1.
    let dropped_before = num(&rig.stats().await?, "dropped_responses")?;
    let ghost = 0x7eed_0000_0000_1234_i64;
    me.send_proxy_ans(ghost, Bytes::from_static(&[1, 2, 3, 4]))
        .await?;
    rig.step(
        "CLOSE_CONN for the unknown conn id",
        me.wait_for("CLOSE_CONN(ghost)", Duration::from_secs(5), |s| {
            s.close_conns.iter().any(|c| c.conn_id == ghost)
        }),
    )
    .await?;
    rig.wait_stats("dropped_responses + 1", Duration::from_secs(5), |s| {
        num(s, "dropped_responses").is_ok_and(|v| v == dropped_before + 1)
    })
    .await?;
    rig.alive()
}

/// Scenario 5: `drop_all` closes the pinned clients; the proxy reconnects with backoff and
/// new clients echo; an answer for an unknown conn id gets CLOSE_CONN and is counted.
#[tokio::test]
async fn me_loss_closes_pinned_clients_and_recovers() {
    each_subject(
        "me_loss_closes_pinned_clients_and_recovers",
        |t| async move { loss_and_recovery(&t).await },
    )
    .await;
}
