//! Building the `GET /v1/challenges` response for a user with progress on all 500 goals of the
//! reference configuration: merge and JSON serialisation, as the handler does it.
//!
//! Run with: `cargo bench -p sut --bench challenges_view`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sut::api::view;
use sut::challenges::{FixtureShape, generate_challenges, parse};
use sut::db::{ProgressRow, Status};

fn bench(c: &mut Criterion) {
    let config = parse("reference", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap();
    let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap().naive_utc();
    let rows: Vec<ProgressRow> = config
        .challenges()
        .iter()
        .flat_map(|c| &c.goals)
        .enumerate()
        .map(|(i, goal)| {
            let status = [Status::InProgress, Status::Completed, Status::Claimed][i % 3];
            ProgressRow {
                goal_id: goal.id.clone(),
                progress: i as i32,
                status,
                completed_at: status.is_done().then_some(at),
                claimed_at: (status == Status::Claimed).then_some(at),
            }
        })
        .collect();
    assert_eq!(rows.len(), 500);
    c.bench_function("GET /v1/challenges view, 500 goals with progress (build + JSON)", |b| {
        b.iter(|| {
            let view = view::build(black_box(&config), black_box(&rows));
            serde_json::to_vec(&view).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
