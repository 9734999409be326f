//! `switchboard-bench`: parses the command line, builds the runtime and hands over
//! to [`switchboard_bench::run`]. Everything else lives in the library.

use clap::Parser;
use switchboard_bench::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(switchboard_bench::run(cli))
}
