//! The `passkey` command. `cargo run` with no arguments serves the bot with embedded defaults.

use clap::{Parser, Subcommand};
use passkey::app::{App, shutdown_signal};
use passkey::config::Settings;
use std::io::Write as _;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "passkey",
    version,
    about = "Just-in-time access to Keeper credentials from Microsoft Teams"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the bot endpoint and the issuance page (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted) and check each dependency.
    Doctor,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("passkey: {e}");
            return ExitCode::from(2);
        }
    };
    passkey::telemetry::init(&settings);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Doctor => {
            let report = passkey::doctor::run(&settings).await;
            print!("{}", report.render());
            if report.all_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let bind = settings.bind;
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("passkey: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("passkey: cannot listen on {bind}: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = listener.local_addr().unwrap_or(bind);
    // A closed stdout (the launcher went away) must not take the server down with it.
    let _ = writeln!(std::io::stdout(), "{}", app.banner(addr));
    match app.run_until_stopped(listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("passkey: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(settings: Settings) -> ExitCode {
    use secrecy::ExposeSecret;
    let label = settings.database_label();
    if let Err(e) = std::fs::create_dir_all(&settings.data_dir) {
        eprintln!(
            "passkey: cannot create {}: {e}",
            settings.data_dir.display()
        );
        return ExitCode::from(2);
    }
    let result = async {
        let store =
            passkey::store::connect(settings.effective_database_url().expose_secret(), 1).await?;
        store.migrate().await?;
        store.migration_state().await
    }
    .await;
    match result {
        Ok(state) => {
            println!("{label}: {} migrations applied", state.applied.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("passkey: migrate {label}: {e}");
            ExitCode::FAILURE
        }
    }
}
