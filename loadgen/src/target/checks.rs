//! How the harness checks the challenge service's answers: the shape of a challenge list (fed as
//! it arrives), the goals a list shows as claimable, the probe's progress sum, and what became
//! of an event or a claim by its answer (SPEC §5).

use std::borrow::Cow;

use serde::Deserialize;

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Acknowledged: the SUT must apply it exactly once.
    Accepted,
    /// Refused as a whole: the SUT must not apply it.
    Refused,
    /// No answer that says: it may be applied, or not.
    Unknown,
}

/// What became of an event, from its call's answer (`ok`, the gRPC code): `OK` accepted; `INVALID_ARGUMENT` and
/// `RESOURCE_EXHAUSTED` refused whole (SPEC §5); anything else unknown.
pub fn event_fate(ok: bool, code: i32) -> Fate {
    match (ok, code) {
        (true, _) => Fate::Accepted,
        (false, 3 | 8) => Fate::Refused,
        _ => Fate::Unknown,
    }
}

/// What became of a claim, from its HTTP status (0: no answer): 200 succeeded; another answer from the service refused; no answer
/// or a gateway's (502–504: the grant may have happened) unknown.
pub fn claim_fate(status: i32) -> Fate {
    match status {
        200 => Fate::Accepted,
        400..=501 | 505..=599 => Fate::Refused,
        _ => Fate::Unknown,
    }
}

/// How much of a challenges list's start is searched for its `challenges` key.
const HEAD: usize = 4096;

/// The check of a `GET /v1/challenges` body, fed as it arrives: a JSON object with a
/// `challenges` array among its first 4 KB (parsing every ~150 KB body would cost the generator
/// more than the request). Keeps at most the first 4 KB and the last byte that is not blank.
#[derive(Debug, Default)]
pub struct BodyShape {
    head: Vec<u8>,
    last: Option<u8>,
}

impl BodyShape {
    /// Takes the next piece of the body.
    pub fn feed(&mut self, piece: &[u8]) {
        if self.head.len() < HEAD {
            let take = piece.len().min(HEAD - self.head.len());
            self.head.extend_from_slice(&piece[..take]);
        }
        if let Some(&last) = piece.trim_ascii_end().last() {
            self.last = Some(last);
        }
    }

    /// Whether the body fed so far has the shape.
    pub fn holds(&self) -> bool {
        let head = self.head.trim_ascii_start();
        if !(head.starts_with(b"{") && self.last == Some(b'}')) {
            return false;
        }
        let key = b"\"challenges\"";
        head.windows(key.len()).enumerate().filter(|(_, w)| *w == key).any(|(at, _)| {
            let rest = head[at + key.len()..].trim_ascii_start();
            rest.strip_prefix(b":").is_some_and(|r| r.trim_ascii_start().starts_with(b"["))
        })
    }
}

/// [`BodyShape`] of a whole body.
pub fn challenges_shape(body: &[u8]) -> bool {
    let mut shape = BodyShape::default();
    shape.feed(body);
    shape.holds()
}

/// The fields of a `GET /v1/challenges` response the harness reads, borrowed from the body
/// (everything else is skipped unparsed).
#[derive(Debug, Deserialize)]
struct View<'a> {
    #[serde(borrow, default)]
    challenges: Vec<ChallengeView<'a>>,
}

#[derive(Debug, Deserialize)]
struct ChallengeView<'a> {
    #[serde(rename = "challengeId", borrow, default)]
    challenge_id: Cow<'a, str>,
    #[serde(borrow, default)]
    goals: Vec<GoalView<'a>>,
}

#[derive(Debug, Deserialize)]
struct GoalView<'a> {
    #[serde(rename = "goalId", borrow, default)]
    goal_id: Cow<'a, str>,
    #[serde(borrow, default)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    prerequisites: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    progress: Option<f64>,
    #[serde(borrow, default)]
    requirement: Option<RequirementView<'a>>,
}

#[derive(Debug, Deserialize)]
struct RequirementView<'a> {
    #[serde(rename = "statCode", borrow, default)]
    stat_code: Option<Cow<'a, str>>,
}

/// `(challengeId, goalId)` of every goal a player could claim from this GET response: shown as
/// completed, with every prerequisite shown as completed or claimed (a game client offers no
/// other claim; the SUT answers others with 400).
pub fn completed_goals(body: &[u8]) -> Vec<(String, String)> {
    let Ok(view) = serde_json::from_slice::<View>(body) else { return Vec::new() };
    let goals = || view.challenges.iter().flat_map(|c| c.goals.iter().map(move |g| (c, g)));
    let done: std::collections::HashSet<&str> = goals()
        .filter(|(_, g)| g.status == "completed" || g.status == "claimed")
        .map(|(_, g)| g.goal_id.as_ref())
        .collect();
    goals()
        .filter(|(_, g)| g.status == "completed" && g.prerequisites.iter().flatten().all(|p| done.contains(p.as_ref())))
        .map(|(c, g)| (c.challenge_id.clone().into_owned(), g.goal_id.clone().into_owned()))
        .collect()
}

/// The summed progress of every goal on `wins` in a GET response (-1 if it cannot be read).
pub fn wins_progress_sum(body: &[u8]) -> i64 {
    let Ok(view) = serde_json::from_slice::<View>(body) else { return -1 };
    view.challenges
        .iter()
        .flat_map(|c| &c.goals)
        .filter(|g| g.requirement.as_ref().and_then(|r| r.stat_code.as_deref()) == Some("wins"))
        .filter_map(|g| g.progress.filter(|p| p.fract() == 0.0).map(|p| p as i64))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_get_check_wants_an_object_with_a_challenges_array() {
        assert!(challenges_shape(br#"{"challenges":[]}"#));
        assert!(challenges_shape(br#" {"paging": {}, "challenges" : [{"challengeId":"c"}]} "#));
        assert!(!challenges_shape(br#"{"challenges":null}"#));
        assert!(!challenges_shape(br#"{"error":"x"}"#));
        assert!(!challenges_shape(b"<html>busy</html>"));
        assert!(!challenges_shape(br#"{"challenges":[{"#), "cut off");
    }

    #[test]
    fn the_check_is_the_same_fed_in_pieces() {
        let body = format!(r#"{{"challenges":[{}]}}  "#, vec![r#"{"challengeId":"c"}"#; 500].join(","));
        for size in [1, 7, 4096, 10_000] {
            let mut shape = BodyShape::default();
            body.as_bytes().chunks(size).for_each(|piece| shape.feed(piece));
            assert!(shape.holds(), "pieces of {size}");
            assert!(shape.head.len() <= HEAD);
        }
        let mut cut = BodyShape::default();
        body.as_bytes()[..body.len() - 3].chunks(100).for_each(|piece| cut.feed(piece));
        assert!(!cut.holds(), "a body cut off before its closing brace");
        let mut blank_tail = BodyShape::default();
        blank_tail.feed(br#"{"challenges":[]}"#);
        blank_tail.feed(b"   ");
        assert!(blank_tail.holds(), "a blank last piece keeps the brace before it");
    }

    #[test]
    fn completed_goals_are_read_from_the_response() {
        let body = br#"{"challenges":[{"challengeId":"c1","goals":[
            {"goalId":"g1","status":"completed"},{"goalId":"g2","status":"claimed"},{"goalId":"g3","status":"in_progress"}]},
            {"challengeId":"c2","goals":[{"goalId":"g4","status":"completed","prerequisites":["g1","g2"]},
             {"goalId":"g5","status":"completed","prerequisites":["g3"]}]}]}"#;
        assert_eq!(
            completed_goals(body),
            vec![("c1".into(), "g1".into()), ("c2".into(), "g4".into())],
            "g5's prerequisite g3 is not done"
        );
        assert!(completed_goals(b"not json").is_empty());
    }

    #[test]
    fn the_probe_reads_the_progress_of_wins_goals() {
        let body = br#"{"challenges":[{"challengeId":"c1","goals":[
            {"goalId":"g1","status":"in_progress","progress":3,"requirement":{"statCode":"wins","targetValue":10}},
            {"goalId":"g2","status":"in_progress","progress":5,"requirement":{"statCode":"kills"}},
            {"goalId":"g3","status":"completed","progress":4,"prerequisites":null,"requirement":{"statCode":"wins"}}]}]}"#;
        assert_eq!(wins_progress_sum(body), 7);
        assert_eq!(wins_progress_sum(b"{"), -1);
    }
}
