//! One module per family. Add a family by adding its module, its data file and a row in [`ALL`].

use crate::Family;

/// Every family, in report order.
pub const ALL: &[Family] = &[];
