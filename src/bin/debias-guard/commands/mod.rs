//! One module per subcommand.

pub mod audit;
pub mod check;
pub mod completions;
pub mod dataset;
pub mod export;
pub mod render;
pub mod score;
