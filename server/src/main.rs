use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = ibex::config::parse_cli();
    match ibex::commands::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ibex: {e}");
            ExitCode::FAILURE
        }
    }
}
