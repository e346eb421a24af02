use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = receiptctl::Cli::parse();
    match receiptctl::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
