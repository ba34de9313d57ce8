//! What a run is set up with: its [`Scale`] and the [`Settings`] every drill reads. The
//! binary a drill runs against is a [`parity::subject::Subject`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Seconds per drill: proves the drill code works (`cargo test`).
    Tiny,
    /// `--quick`: a couple of minutes for the whole suite (soak 2 min).
    Quick,
    /// The full drills (soak `--soak-minutes`, default 30).
    Full,
}

impl Scale {
    /// Picks the tiny, quick or full value.
    pub fn pick<T>(self, tiny: T, quick: T, full: T) -> T {
        match self {
            Scale::Tiny => tiny,
            Scale::Quick => quick,
            Scale::Full => full,
        }
    }
}

/// The settings every drill reads.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How big.
    pub scale: Scale,
    /// The soak's length.
    pub soak: Duration,
}

impl Settings {
    /// Settings for `scale` (the soak: 6 s tiny, 2 min quick, `soak_minutes` full).
    pub fn new(scale: Scale, soak_minutes: u64) -> Self {
        Self {
            scale,
            soak: scale.pick(
                Duration::from_secs(6),
                Duration::from_secs(120),
                Duration::from_secs(soak_minutes.max(1) * 60),
            ),
        }
    }
}
