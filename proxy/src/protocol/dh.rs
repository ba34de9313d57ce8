//! placeholder, owned by a protocol helper
