//! Event handler replicas on one database: two handlers take the same users' events at once
//! (a load balancer spreads them) and every accepted event counts exactly once. The first events
//! of a user new to both are the hard case: neither flush finds a row to lock.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use sut::challenges::ChallengeConfig;
use sut::events::store::StoreKind;
use sut::services::event_handler::EventHandlerSettings;

use crate::events::{Event, Model, connect, send, test_config};
use crate::helpers::{fresh_database, handler_settings, spawn_handler};

for_both_stores!(
    two_handlers_on_one_database_count_every_event_of_a_user_new_to_both,
    the_latest_value_is_the_last_received_whichever_replica_flushes_last,
);

async fn two_handlers_on_one_database_count_every_event_of_a_user_new_to_both(store: StoreKind) {
    let database = fresh_database().await;
    let config = test_config();
    let settings = handler_settings(&database, store);
    let first = spawn_handler(&settings, config.clone()).await;
    let second = spawn_handler(&settings, config.clone()).await;
    let (mut to_first, mut to_second) = (connect(&first.grpc_url).await, connect(&second.grpc_url).await);
    let mut sent = Vec::new();
    for n in 0..300 {
        let user = format!("new-{n}");
        // The same latest value twice: which replica writes last does not change it, so the
        // model's order is the only one.
        let events = [
            Event::Login { user: user.clone() },
            Event::Stat { user: user.clone(), code: "wins", value: 7.0, inc: 1.0 },
        ];
        for event in events {
            let (a, b) = tokio::join!(send(&mut to_first, &event), send(&mut to_second, &event));
            a.expect("accepted by the first replica");
            b.expect("accepted by the second replica");
            sent.extend([event.clone(), event]);
        }
    }
    first.stop().await;
    second.stop().await;
    assert_stored(config, &sent, &database, store).await;
}

async fn the_latest_value_is_the_last_received_whichever_replica_flushes_last(store: StoreKind) {
    let database = fresh_database().await;
    let config = test_config();
    // The first replica flushes only when it stops; the second every 50 ms.
    let slow = EventHandlerSettings { flush_interval: Duration::from_secs(3600), ..handler_settings(&database, store) };
    let first = spawn_handler(&slow, config.clone()).await;
    let second = spawn_handler(&handler_settings(&database, store), config.clone()).await;
    let (mut to_first, mut to_second) = (connect(&first.grpc_url).await, connect(&second.grpc_url).await);
    let mut sent = Vec::new();
    for n in 0..20 {
        let user = format!("player-{n}");
        let (earlier, later) = (
            Event::Stat { user: user.clone(), code: "enemy_kills", value: 255.0, inc: 0.0 },
            Event::Stat { user: user.clone(), code: "enemy_kills", value: 595.0, inc: 0.0 },
        );
        // 255 is answered before 595 is sent: 595 is the user's latest value.
        send(&mut to_first, &earlier).await.expect("accepted");
        send(&mut to_second, &later).await.expect("accepted");
        sent.extend([earlier, later]);
    }
    // The later values are written first, the earlier ones last.
    second.stop().await;
    first.stop().await;
    assert_stored(config, &sent, &database, store).await;
}

/// The database holds what `sent`, applied in order, makes.
async fn assert_stored(config: Arc<ChallengeConfig>, sent: &[Event], database: &str, store: StoreKind) {
    let mut model = Model::new(config);
    let today = Utc::now().date_naive();
    for event in sent {
        model.apply(event, today);
    }
    model.assert_matches(&PgPool::connect(database).await.unwrap(), store).await;
}
