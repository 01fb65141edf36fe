//! One stream of load as a scenario writes it (k6's executor fields, the operations' weights),
//! and the validated [`Executor`] it gives.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::executor::{AUTO_MAX_VUS, Executor, MAX_POISSON_ARRIVALS, Stage};
use super::text::{NonNegative, Positive, checked_number, optional_duration_text};
use crate::target::operations::OperationKind;

/// One stream of load, as written: the executor's fields are checked together by
/// [`Stream::executor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    /// k6's executor name.
    pub executor: ExecutorKind,
    /// Arrivals per `time_unit` (constant-arrival-rate).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de_rate")]
    pub rate: Option<Positive>,
    /// The unit of `rate`, `start_rate` and stage targets of arrival-rate executors (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub time_unit: Option<Duration>,
    /// Starting rate (ramping-arrival-rate).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de_start_rate")]
    pub start_rate: Option<NonNegative>,
    /// Virtual users (constant-vus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vus: Option<u32>,
    /// Starting virtual users (ramping-vus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_vus: Option<u32>,
    /// Ramp stages (ramping executors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<Stage>>,
    /// Virtual users allocated before the run (arrival-rate executors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_allocated_vus: Option<u32>,
    /// The most iterations in flight at once (arrival-rate executors): a number, or `auto`
    /// (the peak rate × the stream's latency limit, see [`crate::definition::executor::auto_pool`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vus: Option<MaxVus>,
    /// How arrivals fall within the rate (arrival-rate executors): `even` (default) or
    /// `poisson` (independent arrivals, exponential gaps: a rush of players).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<ArrivalProcess>,
    /// Operations and their weights.
    #[serde(deserialize_with = "operations")]
    pub operations: BTreeMap<OperationKind, u32>,
}

/// How an arrival-rate stream's arrivals fall within its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalProcess {
    /// Evenly spaced (k6's behaviour).
    Even,
    /// A Poisson process of the rate.
    Poisson,
}

/// `max_vus`: a number of virtual users, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxVus {
    /// This many.
    Count(u32),
    /// Sized from the rate and the latency limit.
    Auto,
}

impl Serialize for MaxVus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxVus::Count(n) => s.serialize_u32(*n),
            MaxVus::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for MaxVus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Count(u32),
            Text(String),
        }
        match Written::deserialize(d) {
            Ok(Written::Count(n)) => Ok(MaxVus::Count(n)),
            Ok(Written::Text(t)) if t == "auto" => Ok(MaxVus::Auto),
            _ => Err(serde::de::Error::custom("`max_vus` must be a number of virtual users or auto")),
        }
    }
}

/// k6's executor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    /// A fixed number of arrivals per time unit (open model).
    ConstantArrivalRate,
    /// An arrival rate that follows stages (open model).
    RampingArrivalRate,
    /// A fixed number of looping virtual users (closed model).
    ConstantVus,
    /// A number of looping virtual users that follows stages (closed model).
    RampingVus,
}

fn de_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Positive>, D::Error> {
    checked_number(d, "rate", false).map(|v| Some(Positive(v)))
}

fn de_start_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NonNegative>, D::Error> {
    checked_number(d, "start_rate", true).map(|v| Some(NonNegative(v)))
}

impl Stream {
    /// The validated executor (its fields checked together); `duration` is the scenario's, for
    /// constant executors; `latency_limit` sizes a `max_vus: auto` pool.
    pub fn executor(&self, duration: Duration, latency_limit: Duration) -> Result<Executor, String> {
        let s = self;
        let mut executor = self.executor_fields(duration)?;
        if s.max_vus == Some(MaxVus::Auto) {
            executor.size_pool(latency_limit)?;
        }
        let expected = executor.rate_curve().map_or(0, |c| c.total_arrivals());
        if s.arrivals == Some(ArrivalProcess::Poisson) && expected > MAX_POISSON_ARRIVALS * 9 / 10 {
            return Err(format!(
                "arrivals: poisson takes at most about {MAX_POISSON_ARRIVALS} arrivals; this stream has {expected}"
            ));
        }
        Ok(executor)
    }

    /// The executor the fields give, an `auto` pool at [`AUTO_MAX_VUS`] until it is sized.
    fn executor_fields(&self, duration: Duration) -> Result<Executor, String> {
        let s = self;
        let per_second = 1.0 / s.time_unit.unwrap_or(Duration::from_secs(1)).as_secs_f64();
        let pool = |name: &str| -> Result<(u32, u32), String> {
            let max = match s.max_vus {
                Some(MaxVus::Count(n)) => n,
                Some(MaxVus::Auto) => AUTO_MAX_VUS,
                None => s.pre_allocated_vus.ok_or(format!("{name} needs max_vus (or pre_allocated_vus)"))?,
            };
            let pre = s.pre_allocated_vus.unwrap_or(max);
            let pre = if s.max_vus == Some(MaxVus::Auto) { pre.min(max) } else { pre };
            if max == 0 {
                return Err("max_vus must be > 0".into());
            }
            if max < pre {
                return Err(format!("max_vus ({max}) is below pre_allocated_vus ({pre})"));
            }
            Ok((pre, max))
        };
        let stages = |name: &str| -> Result<Vec<Stage>, String> {
            let stages = s.stages.clone().ok_or(format!("{name} needs stages"))?;
            if stages.is_empty() || stages.iter().all(|st| st.duration.is_zero()) {
                return Err("stages must last longer than 0s".into());
            }
            Ok(stages)
        };
        let unexpected = |fields: &[(&str, bool)]| -> Result<(), String> {
            match fields.iter().find(|(_, present)| *present) {
                Some((field, _)) => Err(format!("{field} does not apply to this executor")),
                None => Ok(()),
            }
        };
        let poisson = s.arrivals == Some(ArrivalProcess::Poisson);
        if poisson && !matches!(s.executor, ExecutorKind::ConstantArrivalRate | ExecutorKind::RampingArrivalRate) {
            return Err("arrivals: poisson applies to the arrival-rate executors".into());
        }
        match s.executor {
            ExecutorKind::ConstantArrivalRate => {
                unexpected(&[
                    ("stages", s.stages.is_some()),
                    ("vus", s.vus.is_some()),
                    ("start_rate", s.start_rate.is_some()),
                ])?;
                let rate = s.rate.ok_or("constant-arrival-rate needs rate")?.0 * per_second;
                let (pre_allocated_vus, max_vus) = pool("constant-arrival-rate")?;
                Ok(Executor::ConstantArrivalRate { rate, duration, pre_allocated_vus, max_vus, poisson })
            }
            ExecutorKind::RampingArrivalRate => {
                unexpected(&[("rate", s.rate.is_some()), ("vus", s.vus.is_some())])?;
                let (pre_allocated_vus, max_vus) = pool("ramping-arrival-rate")?;
                let stages = stages("ramping-arrival-rate")?
                    .into_iter()
                    .map(|st| Stage { target: st.target * per_second, ..st })
                    .collect();
                let start_rate = s.start_rate.map_or(0.0, |r| r.0) * per_second;
                Ok(Executor::RampingArrivalRate { start_rate, stages, pre_allocated_vus, max_vus, poisson })
            }
            ExecutorKind::ConstantVus => {
                unexpected(&[
                    ("rate", s.rate.is_some()),
                    ("stages", s.stages.is_some()),
                    ("max_vus", s.max_vus.is_some()),
                ])?;
                let vus = s.vus.filter(|v| *v > 0).ok_or("constant-vus needs vus > 0")?;
                Ok(Executor::ConstantVus { vus, duration })
            }
            ExecutorKind::RampingVus => {
                unexpected(&[("rate", s.rate.is_some()), ("max_vus", s.max_vus.is_some())])?;
                Ok(Executor::RampingVus { start_vus: s.start_vus.unwrap_or(0), stages: stages("ramping-vus")? })
            }
        }
    }

    /// True when every operation uses REST.
    pub fn is_rest(&self) -> bool {
        self.operations.keys().all(|o| o.is_rest())
    }

    /// True when every operation calls the event handler.
    pub fn is_grpc(&self) -> bool {
        self.operations.keys().all(|o| o.is_grpc())
    }
}

fn operations<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<OperationKind, u32>, D::Error> {
    let ops = BTreeMap::<OperationKind, u32>::deserialize(d)?;
    if ops.is_empty() || ops.values().all(|w| *w == 0) {
        return Err(serde::de::Error::custom("operations: give at least one operation with a weight > 0"));
    }
    Ok(ops)
}
