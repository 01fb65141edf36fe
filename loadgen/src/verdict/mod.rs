//! # Verdicts: whether a run, a level, a threshold held
//!
//! Everything that turns measurements into pass or fail lives here, so a run, the sweep and the
//! reports judge alike.
//!
//! - [`thresholds`]: the plan's k6 thresholds over the whole run.
//! - [`source`]: the observed value of a metric over measured data (the run, or a window).
//! - [`live`]: thresholds judged every second during the run, aborting on `abortOnFail`.
//! - [`limits`]: the limits a sustainable level keeps, the first one broken, the maximum
//!   sustainable level, the figures of a run's steady part.
//! - [`scaling`]: the Universal Scalability Law fitted to measured levels, and a sweep's knee.

pub mod limits;
pub mod live;
pub mod scaling;
pub mod source;
pub mod thresholds;
