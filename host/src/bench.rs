//! `herald bench`: figures, printed as key=value lines.

use anyhow::Result;
use clap::Args;

/// Options of `herald bench`.
#[derive(Args)]
pub struct BenchArgs {}

/// Run the benchmarks.
pub async fn run(_args: BenchArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
