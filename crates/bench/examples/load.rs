//! Stand-alone `bench load` for use before (or without) the `switchyard` binary:
//! `cargo run --release -p switchyard-bench --example load -- --url http://127.0.0.1:8000`.

use clap::Parser;
use switchyard_bench::{LoadArgs, run_load_blocking};

#[derive(Parser)]
#[command(name = "load", about = "Load generator for OpenAI-compatible servers")]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = run_load_blocking(&cli.load)?;
    report.print(cli.load.json);
    Ok(())
}
