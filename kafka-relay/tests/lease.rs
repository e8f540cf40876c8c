//! The leader lease against real PostgreSQL: a deposed leader knows it before anyone else
//! can lead, and cannot store positions afterwards.

use std::time::Duration;

use kafka_relay::lease::Lease;
use kafka_relay::outbox::{self, Position};
use taskpool_core::{PgStore, Store};
use taskpool_testkit::{PgTestDb, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_gets_the_lease_only_after_the_leader_itself_considers_it_ended() {
    let db = PgTestDb::new().await;
    PgStore::migrate(&db.pool).await.unwrap();
    kafka_relay::relay::migrate(&db.pool).await.unwrap();
    let ttl = Duration::from_millis(800);
    let leader = Lease::new("r", "leader", ttl);
    let standby = Lease::new("r", "standby", ttl);

    assert!(leader.acquire_or_renew(&db.pool).await.unwrap());
    assert!(
        !standby.acquire_or_renew(&db.pool).await.unwrap(),
        "the lease is held"
    );
    let fence = leader.fence().unwrap();
    outbox::load_position(&db.pool, "r").await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let at = Position {
        tracking_xid: 1,
        position: 1,
    };
    assert!(
        outbox::store_position(&mut conn, "r", at, &fence)
            .await
            .unwrap()
    );

    // The leader stops renewing (a pause or a partition). The standby keeps trying.
    wait_for(
        "the standby to take over",
        Duration::from_secs(10),
        || async {
            standby
                .acquire_or_renew(&db.pool)
                .await
                .unwrap()
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        leader.remaining(),
        None,
        "the old leader's own clock said its lease was over before the standby got it"
    );
    assert!(
        !outbox::store_position(
            &mut conn,
            "r",
            Position {
                tracking_xid: 1,
                position: 2
            },
            &fence
        )
        .await
        .unwrap(),
        "a deposed leader cannot move the position"
    );
    assert_eq!(standby.fence().unwrap().epoch, fence.epoch + 1);
    assert!(
        !leader.acquire_or_renew(&db.pool).await.unwrap(),
        "the old leader cannot renew a lease it lost"
    );
    let position = outbox::load_position(&db.pool, "r").await.unwrap();
    assert_eq!(position.position, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_at_once() {
    let db = PgTestDb::new().await;
    PgStore::migrate(&db.pool).await.unwrap();
    kafka_relay::relay::migrate(&db.pool).await.unwrap();
    let leader = Lease::new("r", "leader", Duration::from_secs(60));
    let standby = Lease::new("r", "standby", Duration::from_secs(60));
    assert!(leader.acquire_or_renew(&db.pool).await.unwrap());
    assert!(!standby.acquire_or_renew(&db.pool).await.unwrap());
    leader.release(&db.pool).await.unwrap();
    assert!(standby.acquire_or_renew(&db.pool).await.unwrap());
    assert!(leader.remaining().is_none());
}
