//! `switchyard`: the command line. Parses flags (`cli`), wires the libraries (`serve`) and
//! hands `bench` to the load generator. No logic of its own lives here.

mod cli;
mod cpu;
mod distributed;
mod external;
mod serve;

use clap::Parser;

use crate::cli::{BenchCommand, Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let cpu_threads = match &cli.command {
        Command::Serve(args) => args.engine.cpu.cpu_threads,
        Command::Worker(args) => args.engine.cpu.cpu_threads,
        _ => None,
    };
    if let Err(e) = cpu::apply_thread_count(cpu_threads) {
        eprintln!("error: cannot restart with --cpu-threads: {e}");
        return std::process::ExitCode::FAILURE;
    }
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("switchyard")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Frontend(args) => distributed::run_frontend(args).await,
            Command::Worker(args) => distributed::run_worker(args).await,
            Command::Bench(BenchCommand::Load(args)) => {
                let report = switchyard_bench::run_load(&args).await?;
                if args.json {
                    println!("{}", report.to_json());
                } else {
                    report.print_human();
                }
                Ok(())
            }
            Command::Bench(BenchCommand::Replay(args)) => {
                let report = switchyard_bench::run_replay(&args).await?;
                if args.json {
                    println!("{}", report.to_json());
                } else {
                    print!("{}", report.human_text());
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
