//! Building the `GET /v1/challenges` response for a user with progress on all 500 goals of the
//! reference configuration, from what each store layout reads: the merge of the stored rows into
//! every goal's progress, and the JSON, as the handler does it.
//!
//! Run with: `cargo bench -p sut --bench challenges_view`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sut::api::view::ViewTemplate;
use sut::challenges::{FixtureShape, generate_challenges, parse};
use sut::db::{ProgressRow, Status};
use sut::events::derive::StatState;
use sut::events::store::{GoalProgress, per_goal, per_stat};

fn bench(c: &mut Criterion) {
    let config = parse("reference", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap();
    let template = ViewTemplate::new(&config);
    let at = chrono::DateTime::from_timestamp(1_790_000_000, 123_456_000).unwrap().naive_utc();

    // Per-goal: one row per goal, a third each in progress, completed and claimed.
    let rows: Vec<ProgressRow> = config
        .goal_refs()
        .iter()
        .enumerate()
        .map(|(i, goal)| {
            let status = [Status::InProgress, Status::Completed, Status::Claimed][i % 3];
            ProgressRow {
                goal_id: goal.goal.id.clone(),
                progress: i as i32,
                status,
                completed_at: status.is_done().then_some(at),
                claimed_at: (status == Status::Claimed).then_some(at),
            }
        })
        .collect();
    assert_eq!(rows.len(), 500);

    // Per-stat: a row per source (progress on every goal) and a goal row for a third of the
    // goals completed and a third claimed.
    let stats: Vec<(u32, StatState)> = config
        .sources()
        .iter()
        .map(|source| {
            let state = StatState {
                latest: Some(450),
                max: Some(700),
                total: 320,
                day_count: 3,
                last_day: Some(at.date()),
                first_event_at: at,
                updated_at: at,
            };
            (source.index, state)
        })
        .collect();
    let goal_rows: Vec<(u32, GoalProgress)> = config
        .goal_refs()
        .iter()
        .filter(|g| g.index % 3 != 0)
        .map(|g| {
            let claimed = g.index % 3 == 2;
            let status = if claimed { Status::Claimed } else { Status::Completed };
            let row = GoalProgress { progress: 5, status, completed_at: Some(at), claimed_at: claimed.then_some(at) };
            (g.index, row)
        })
        .collect();

    let mut group = c.benchmark_group("GET /v1/challenges view, 500 goals with progress (merge + JSON)");
    group.bench_function("per-stat", |b| {
        b.iter(|| {
            let progress = per_stat::derive_user(black_box(&config), black_box(&stats), black_box(&goal_rows));
            template.render(&progress)
        })
    });
    group.bench_function("per-goal", |b| {
        // The rows are decoded per request in the service too; their copy is not timed here.
        b.iter_batched(
            || rows.clone(),
            |rows| template.render(&per_goal::progress_from_rows(black_box(&config), rows)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
