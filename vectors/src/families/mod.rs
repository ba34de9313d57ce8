//! One module per family. Add a family by adding its module, its data file and a row in [`ALL`].

use crate::Family;

pub mod multi_conf;

/// Every family, in report order.
pub const ALL: &[Family] = &[Family {
    name: "multi_conf",
    replay: multi_conf::replay,
}];
