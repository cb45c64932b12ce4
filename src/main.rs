use std::process::ExitCode;

use clap::Parser;
use ecr_refresh::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    ecr_refresh::telemetry::init(cli.global.log_format.into());
    // Both the AWS SDK and kube use rustls; pick one crypto provider for the process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(ecr_refresh::run(cli)))
}
