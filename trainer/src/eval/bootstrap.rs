//! The cluster bootstrap of the library ([`debias_guard::stats::bootstrap`]), under the path the
//! evaluation has always used.

pub use debias_guard::stats::bootstrap::*;
