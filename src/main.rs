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
    /// Admin changes against the configured database, audited as `admin-cli`.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The audit trail: export for SIEMs and auditors, offline verification, archive.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Probe this instance's `/healthz` (for a container HEALTHCHECK): exit 0 when it answers
    /// 200, 1 otherwise.
    Healthcheck {
        /// What to GET; default `/healthz` on loopback at the port of `bind`.
        #[arg(long)]
        url: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
    /// Reports read from the configured database (nothing is written).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// The Teams app package.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write the trail as JSON lines (header, events, signed checkpoints, public keys), after
    /// signing a checkpoint so the whole file is covered. Recorded as AUDIT_EXPORTED.
    Export {
        /// Where to write.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Only events after this sequence number (incremental exports for a SIEM).
        #[arg(long, default_value_t = 0)]
        from: i64,
    },
    /// Verify an exported trail offline (no database). Exit 0 verified, 1 tampered (the first
    /// bad sequence number is printed), 2 the file cannot be read.
    Verify {
        /// The exported file.
        file: std::path::PathBuf,
        /// Trust only the public keys in this file (`public_key` lines, e.g. an earlier export
        /// kept apart); default: the keys the file itself lists.
        #[arg(long)]
        trusted_keys: Option<std::path::PathBuf>,
        /// Override the allowed delay between an event and its checkpoint (seconds; 0 turns the
        /// missing-checkpoint check off). Default: the header's.
        #[arg(long)]
        max_checkpoint_delay: Option<u64>,
    },
    /// Export the events up to the last signed checkpoint before SEQ to a file and record that
    /// it was archived (AUDIT_ARCHIVED). Passkey never deletes audit rows.
    Archive {
        /// Archive events before this sequence number.
        #[arg(long)]
        before: i64,
        /// Start after this sequence number (the previous archive's end).
        #[arg(long, default_value_t = 0)]
        from: i64,
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// One row per request created in [FROM, TO): requester, record, folder, sensitivity,
    /// decisions, lease, retrievals (kind of address only), how the lease ended, break-glass and
    /// its review; totals per record and per person (json, md).
    Access(AccessArgs),
    /// Access review campaigns: completion, removals, open reviews (every campaign, newest
    /// first, or one).
    Reviews {
        /// Only this campaign.
        #[arg(long)]
        campaign: Option<i64>,
        #[arg(long, value_enum, default_value = "md")]
        format: ReviewReportFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReviewReportFormat {
    Csv,
    Json,
    Md,
}

#[derive(clap::Args)]
struct AccessArgs {
    /// Start of the window, included: YYYY-MM-DD (midnight UTC) or RFC 3339.
    #[arg(long)]
    from: String,
    /// End of the window, excluded: YYYY-MM-DD (midnight UTC) or RFC 3339.
    #[arg(long)]
    to: String,
    /// Only this record: vault uid, exact title or unique title prefix.
    #[arg(long)]
    record: Option<String>,
    /// Only this requester: email, UPN or Entra object id.
    #[arg(long)]
    user: Option<String>,
    /// csv (RFC 4180), json or md.
    #[arg(long, default_value = "csv")]
    format: String,
    /// Write here instead of to standard output.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Fill in manifest/manifest.json and zip it with the icons, ready to upload to Teams.
    Pack {
        /// Where to write the zip.
        #[arg(long, default_value = "passkey.zip")]
        out: std::path::PathBuf,
        /// The bot's Microsoft App ID (a GUID); default `bot.app_id`.
        #[arg(long)]
        app_id: Option<String>,
        /// The host people's browsers reach (no scheme or port); default the host of `public_url`.
        #[arg(long)]
        domain: Option<String>,
        /// The app version Teams sees (MAJOR.MINOR.PATCH); default this build's version.
        #[arg(long)]
        app_version: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Show, grant or revoke authority over a record.
    Authority {
        #[command(subcommand)]
        command: AuthorityCommand,
    },
    /// Change what Passkey knows about a record (its sensitivity).
    Record {
        #[command(subcommand)]
        command: RecordCommand,
    },
    /// Set a person's role: `passkey admin role bob@contoso.example APPROVER`.
    Role {
        /// Email, UPN or Entra object id of someone who has used the bot.
        user: String,
        /// REQUESTER, APPROVER or ADMIN.
        role: String,
    },
    /// Set a person's mobile number for texted one-time codes (stored encrypted):
    /// `passkey admin phone alice@contoso.example +14255550101`.
    Phone {
        /// Email, UPN or Entra object id of someone who has used the bot.
        user: String,
        /// International (E.164) form: `+` and country code; spaces and dashes are fine.
        number: String,
    },
    /// Remove a person's authenticator app (lost device) so they can enroll again.
    TotpReset {
        /// Email, UPN or Entra object id.
        user: String,
    },
    /// Invite someone with no phone number on file (or a lost app) to set up an authenticator
    /// app once, on their own signed-in page, within `otp.invitation_ttl_secs` (default 24 h).
    TotpInvite {
        /// Email, UPN or Entra object id.
        user: String,
    },
    /// The data-encryption key that seals phone numbers and authenticator secrets.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Load the demo data set into an empty database (dev profile only).
    DemoLoad,
    /// Sync folders, ACLs and record metadata from the configured vault (discovery included).
    Sync,
    /// Run one scheduled job now, as the scheduler would: lease-expiry, preflight-retry,
    /// stale-requests, vault-sync, housekeeping, audit-checkpoint or audit-verify. Prints the
    /// run's counts.
    Job {
        /// The job's name.
        name: String,
    },
    /// Re-evaluate stored decision traces with the current policy and code.
    Replay {
        /// The trace to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        trace_id: Option<i64>,
        /// Replay every stored trace and report counts.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create the data-encryption key in `data_dir` (a private file; wrapped by the Key Vault
    /// key `crypto.key_vault_key` when `crypto.key_wrapper = "key-vault"`). Never replaces an
    /// existing key. Run it once before the first production start.
    Init,
}

#[derive(Subcommand)]
enum RecordCommand {
    /// Set a record's sensitivity, which decides what the access policy asks of new requests:
    /// `passkey admin record sensitivity payroll-db HIGH holds salary data`.
    Sensitivity {
        /// Vault uid, exact title or unique title prefix.
        record: String,
        /// LOW, MEDIUM, HIGH or CRITICAL.
        level: String,
        /// Why; required.
        #[arg(required = true, num_args = 1..)]
        reason: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AuthorityCommand {
    /// Every authority row a record has had.
    Show {
        /// Vault uid, exact title or unique title prefix.
        record: String,
    },
    /// Grant an authority over a record.
    Grant {
        /// Vault uid, exact title or unique title prefix.
        record: String,
        /// OWNER, CUSTODIAN or APPROVER.
        kind: String,
        /// user:<email or aad id>, group:<entra group id>, role:<ROLE>, email:<address>.
        principal: String,
        /// Approval stage (1 when not given).
        #[arg(long)]
        stage: Option<i32>,
    },
    /// Revoke an authority row (it stays in the history).
    Revoke {
        /// The number `show` lists (`#12` or `12`).
        authority_id: String,
        /// Why; required.
        #[arg(required = true, num_args = 1..)]
        reason: Vec<String>,
    },
    /// Post a GROUP authority's approval cards in a team channel the bot is in, or stop (`none`).
    Channel {
        /// The number `show` lists (`#12` or `12`).
        authority_id: String,
        /// The channel's conversation id (`19:…@thread.tacv2`), or `none`.
        channel: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The probe runs every few seconds: it logs nothing and needs no more than `bind`.
    if let Some(Command::Healthcheck { url, timeout_secs }) = cli.command {
        return healthcheck(url, timeout_secs).await;
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("passkey: {e}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let serving = matches!(command, Command::Serve);
    let telemetry = passkey::telemetry::init(&settings, serving);
    match command {
        Command::Serve => {
            let code = serve(settings, telemetry.is_on()).await;
            // What the exporters still hold goes out before the process ends.
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
            code
        }
        Command::Migrate => migrate(settings).await,
        Command::Admin { command } => admin(settings, command).await,
        Command::Manifest { command } => manifest(&settings, command),
        Command::Healthcheck { .. } => unreachable!("handled before the settings are loaded"),
        Command::Audit { command } => audit(settings, command).await,
        Command::Report { command } => match command {
            ReportCommand::Access(args) => report_access(settings, args).await,
            ReportCommand::Reviews { campaign, format } => {
                report_reviews(settings, campaign, format).await
            }
        },
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

async fn serve(settings: Settings, telemetry: bool) -> ExitCode {
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
    // The gauges' values come from the database, read for the periodic export.
    let _gauges = telemetry.then(|| {
        passkey::telemetry::spawn_gauge_refresher(app.state.store.clone(), app.state.clock.clone())
    });
    match app.serve(listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("passkey: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `passkey healthcheck`: exit 0 when `/healthz` answers 200, 1 otherwise (also when the
/// configuration cannot be read to find the port).
async fn healthcheck(url: Option<String>, timeout_secs: u64) -> ExitCode {
    let url = match url {
        Some(url) => url,
        None => match Settings::load() {
            Ok(settings) => passkey::web::health::local_healthz_url(settings.bind),
            Err(e) => {
                eprintln!("passkey: healthcheck: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let timeout = std::time::Duration::from_secs(timeout_secs.max(1));
    match passkey::web::health::probe(&url, timeout).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("passkey: healthcheck: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(settings: Settings) -> ExitCode {
    // A `kv:` database URL is resolved first (serve does this in App::build).
    let settings = match passkey::app::resolve_secrets(settings).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("passkey: {e}");
            return ExitCode::from(2);
        }
    };
    use secrecy::ExposeSecret;
    let label = settings.database_label();
    if let Err(e) = passkey::private_fs::create_dir(&settings.data_dir) {
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

/// `passkey audit …`. Verify runs offline; export and archive use the configured database and
/// signing key. Exit codes: 0 done / verified, 1 refused / failed verification, 2 unusable input
/// or database.
/// `passkey report reviews`: campaign summaries on stdout. An unknown campaign exits 1.
async fn report_reviews(
    settings: Settings,
    campaign: Option<i64>,
    format: ReviewReportFormat,
) -> ExitCode {
    use passkey::governance::reviews;
    let (_, label, store) = match open_configured_store(settings).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let found = match campaign {
        Some(id) => reviews::summary(store.as_ref(), Some(id))
            .await
            .map(|s| s.into_iter().collect::<Vec<_>>()),
        None => reviews::summaries(store.as_ref()).await,
    };
    let summaries = match found {
        Ok(s) => s,
        Err(e) => {
            eprintln!("passkey: {label}: {}", with_causes(&e));
            return ExitCode::from(2);
        }
    };
    if let (Some(id), true) = (campaign, summaries.is_empty()) {
        eprintln!("passkey: there is no access review campaign #{id}");
        return ExitCode::FAILURE;
    }
    let text = match format {
        ReviewReportFormat::Csv => reviews::summaries_csv(&summaries),
        ReviewReportFormat::Md => reviews::summaries_markdown(&summaries),
        ReviewReportFormat::Json => match serde_json::to_string_pretty(&summaries) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("passkey: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let _ = write!(std::io::stdout(), "{text}");
    ExitCode::SUCCESS
}

async fn audit(settings: Settings, command: AuditCommand) -> ExitCode {
    use passkey::audit::{AuditError, AuditTrail, trail};
    use passkey::domain::SystemClock;
    use std::sync::Arc;

    if let AuditCommand::Verify {
        file,
        trusted_keys,
        max_checkpoint_delay,
    } = &command
    {
        let trusted = match trusted_keys.as_deref().map(trail::read_keys).transpose() {
            Ok(keys) => keys,
            Err(e) => {
                eprintln!("passkey: {e}");
                return ExitCode::from(2);
            }
        };
        let delay = max_checkpoint_delay.map(|secs| {
            (secs > 0).then(|| time::Duration::seconds(secs.min(i64::MAX as u64) as i64))
        });
        return match trail::verify_file(file, trusted.as_deref(), delay) {
            Ok((_, report)) => {
                let _ = writeln!(std::io::stdout(), "{}", report.summary());
                if report.ok() {
                    ExitCode::SUCCESS
                } else {
                    for finding in report.findings.iter().skip(1).take(20) {
                        eprintln!("  also: {finding}");
                    }
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("passkey: {e}");
                ExitCode::from(2)
            }
        };
    }
    let (settings, label, store) = match open_configured_store(settings).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let signer = match passkey::app::audit_signer(&settings) {
        Ok(signer) => signer,
        Err(e) => {
            eprintln!("passkey: {e}");
            return ExitCode::from(2);
        }
    };
    let trail = AuditTrail::new(store, signer, Arc::new(SystemClock), settings.audit.clone());
    let (result, out) = match command {
        AuditCommand::Export { out, from } => (trail.export(&out, from, "admin-cli").await, out),
        AuditCommand::Archive { before, from, out } => {
            (trail.archive(&out, from, before, "admin-cli").await, out)
        }
        AuditCommand::Verify { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(summary) => {
            let _ = writeln!(
                std::io::stdout(),
                "wrote {}: events {}–{} ({} events), {} signed checkpoints, {} public keys",
                out.display(),
                summary.from_seq + 1,
                summary.to_seq,
                summary.events,
                summary.checkpoints,
                summary.keys
            );
            ExitCode::SUCCESS
        }
        Err(AuditError::Refused(why)) => {
            eprintln!("passkey: {why}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("passkey: {label}: {}", with_causes(&e));
            ExitCode::from(2)
        }
    }
}

/// `passkey report access`. Exit codes: 0 written, 1 refused (a bad date, format, record or
/// person: the message says which; nothing was written), 2 the database or the output file could
/// not be used.
async fn report_access(settings: Settings, args: AccessArgs) -> ExitCode {
    use passkey::domain::SystemClock;
    use passkey::governance::reports::{AccessQuery, ReportFormat, Reports, parse_date};
    use std::sync::Arc;

    let AccessArgs {
        from,
        to,
        record,
        user,
        format,
        output,
    } = args;
    let parsed = (|| {
        Ok::<_, passkey::governance::reports::ReportError>((
            parse_date(&from)?,
            parse_date(&to)?,
            format.parse::<ReportFormat>()?,
        ))
    })();
    let (from, to, format) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("passkey: report access: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (_, label, store) = match open_configured_store(settings).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let reports = Reports::new(store, Arc::new(SystemClock));
    let query = AccessQuery {
        from,
        to,
        record,
        user,
    };
    let text = match reports.access(&query).await {
        Ok(report) => report.render(format),
        Err(e) if e.is_refusal() => {
            eprintln!("passkey: report access: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("passkey: {label}: {}", with_causes(&e));
            return ExitCode::from(2);
        }
    };
    let written = match &output {
        Some(path) => std::fs::write(path, text.as_bytes()),
        None => std::io::stdout().write_all(text.as_bytes()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let place = output.map_or("standard output".to_string(), |p| p.display().to_string());
            eprintln!("passkey: report access: cannot write {place}: {e}");
            ExitCode::from(2)
        }
    }
}

/// Exit codes: 0 written, 1 refused (the message says why; nothing was written), 2 the file could
/// not be written.
fn manifest(settings: &Settings, command: ManifestCommand) -> ExitCode {
    use passkey::manifest::{MANIFEST_VERSION, Package};
    let ManifestCommand::Pack {
        out,
        app_id,
        domain,
        app_version,
    } = command;
    let result = Package::from_settings(
        settings,
        app_id.as_deref(),
        domain.as_deref(),
        app_version.as_deref(),
    )
    .and_then(|package| package.write(&out).map(|()| package));
    match result {
        Ok(package) => {
            let _ = writeln!(
                std::io::stdout(),
                "wrote {}: manifest.json (manifest v{MANIFEST_VERSION}, app {} version {}, domain {}), color.png, outline.png",
                out.display(),
                package.app_id(),
                package.version(),
                package.domain()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("passkey: manifest pack: {e}");
            if e.is_refusal() {
                ExitCode::FAILURE
            } else {
                ExitCode::from(2)
            }
        }
    }
}

/// `passkey admin keys init`: creates the data-encryption key, never over an existing one. It
/// needs no database (it comes before the first start). Exit codes: 0 created, 1 a key is
/// already there (kept), 2 the key could not be made or written (the wrapper or the directory).
async fn keys_init(settings: &Settings) -> ExitCode {
    use passkey::crypto::{CryptoError, LocalKeyFile};
    let wrapper = match passkey::app::key_wrapper(settings) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("passkey: admin keys init: {e}");
            return ExitCode::from(2);
        }
    };
    let wrapped_by = wrapper.wrapper_id();
    let file = LocalKeyFile::new(&settings.data_dir, wrapper);
    match file.create().await {
        Ok(key) => {
            let _ = writeln!(
                std::io::stdout(),
                "created data-encryption key {} at {} (mode 0600, wrapped by {wrapped_by}); \
                 back it up with the database: without it sealed phone numbers and \
                 authenticator secrets cannot be opened",
                key.key_id(),
                file.path().display()
            );
            ExitCode::SUCCESS
        }
        Err(e @ CryptoError::KeyExists(_)) => {
            eprintln!("passkey: admin keys init: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("passkey: admin keys init: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs an admin use case against the configured database. Exit codes: 0 done, 1 refused (the
/// message says why; nothing was changed), 2 the database could not be used, 3 (`sync`) the vault
/// could not be read.
async fn admin(settings: Settings, command: AdminCommand) -> ExitCode {
    if let AdminCommand::Keys {
        command: KeysCommand::Init,
    } = command
    {
        return keys_init(&settings).await;
    }
    // A `kv:` database URL is resolved first (serve does this in App::build).
    let settings = match passkey::app::resolve_secrets(settings).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("passkey: {e}");
            return ExitCode::from(2);
        }
    };
    use passkey::domain::{Clock, SystemClock};
    use passkey::governance::admin::{Actor, AdminError, GovernanceAdmin, Grant};
    use std::sync::Arc;

    let label = settings.database_label();
    if let Err(e) = passkey::private_fs::create_dir(&settings.data_dir) {
        eprintln!(
            "passkey: cannot create {}: {e}",
            settings.data_dir.display()
        );
        return ExitCode::from(2);
    }
    let store = match open_migrated_store(&settings, &label).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if let AdminCommand::Job { name } = &command {
        drop(store);
        return run_job(settings, name).await;
    }
    if let AdminCommand::Sync = command {
        return sync(&settings, store.as_ref(), clock.clone(), &label).await;
    }
    if let AdminCommand::Replay { trace_id, all } = command {
        return replay(store.as_ref(), clock.as_ref(), trace_id, all, &label).await;
    }
    if let AdminCommand::Phone { .. }
    | AdminCommand::TotpReset { .. }
    | AdminCommand::TotpInvite { .. } = &command
    {
        return second_factor_admin(&settings, store, clock, command, &label).await;
    }
    let use_cases = GovernanceAdmin::new(store.clone(), clock.clone());
    let actor = Actor::Cli;
    let result: Result<String, AdminError> = match command {
        AdminCommand::Authority { command } => match command {
            AuthorityCommand::Show { record } => use_cases
                .show_authorities(&record)
                .await
                .map(|l| l.render()),
            AuthorityCommand::Grant {
                record,
                kind,
                principal,
                stage,
            } => use_cases
                .grant_authority(
                    &actor,
                    &Grant {
                        record,
                        kind,
                        principal,
                        stage,
                    },
                )
                .await
                .map(|g| g.render()),
            AuthorityCommand::Revoke {
                authority_id,
                reason,
            } => match authority_id.trim_start_matches('#').parse::<i64>() {
                Ok(id) => use_cases
                    .revoke_authority(&actor, id, &reason.join(" "))
                    .await
                    .map(|r| r.render()),
                Err(_) => {
                    eprintln!("passkey: `{authority_id}` is not an authority number");
                    return ExitCode::FAILURE;
                }
            },
            AuthorityCommand::Channel {
                authority_id,
                channel,
            } => match authority_id.trim_start_matches('#').parse::<i64>() {
                Ok(id) => use_cases
                    .name_approval_channel(&actor, id, &channel)
                    .await
                    .map(|c| c.render()),
                Err(_) => {
                    eprintln!("passkey: `{authority_id}` is not an authority number");
                    return ExitCode::FAILURE;
                }
            },
        },
        AdminCommand::Record {
            command:
                RecordCommand::Sensitivity {
                    record,
                    level,
                    reason,
                },
        } => use_cases
            .set_sensitivity(&actor, &record, &level, &reason.join(" "))
            .await
            .map(|c| c.render()),
        AdminCommand::Role { user, role } => use_cases
            .set_role(&actor, &user, &role)
            .await
            .map(|c| c.render()),
        AdminCommand::Replay { .. }
        | AdminCommand::Keys { .. }
        | AdminCommand::Sync
        | AdminCommand::Job { .. }
        | AdminCommand::Phone { .. }
        | AdminCommand::TotpReset { .. }
        | AdminCommand::TotpInvite { .. } => {
            unreachable!("handled above")
        }
        AdminCommand::DemoLoad => {
            if settings.profile != passkey::config::Profile::Dev {
                eprintln!("passkey: demo data loads only in the dev profile");
                return ExitCode::FAILURE;
            }
            match passkey::demo::load_if_empty(store.as_ref(), clock.now()).await {
                Ok(passkey::demo::DemoOutcome::Loaded { users, records }) => {
                    let phones = match otp_service(&settings, store.clone(), clock.clone()).await {
                        Ok(otp) => otp.give_demo_phones().await.map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    match phones {
                        Ok(phones) => Ok(format!(
                            "demo data loaded: {users} users, {records} records ({phones} phone numbers)"
                        )),
                        Err(e) => {
                            eprintln!("passkey: demo phone numbers: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                Ok(passkey::demo::DemoOutcome::SkippedNotEmpty) => {
                    eprintln!("passkey: the database already has users; demo data not loaded");
                    return ExitCode::FAILURE;
                }
                Err(e) => Err(e.into()),
            }
        }
    };
    match result {
        Ok(text) => {
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e) if e.is_refusal() => {
            eprintln!("passkey: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("passkey: {label}: {}", with_causes(&e));
            ExitCode::from(2)
        }
    }
}

/// The second-factor use cases over the configured database and data-encryption key.
async fn otp_service(
    settings: &Settings,
    store: std::sync::Arc<dyn passkey::store::Store>,
    clock: std::sync::Arc<dyn passkey::domain::Clock>,
) -> Result<passkey::otp::OtpService, String> {
    use std::sync::Arc;
    let key = passkey::app::data_key(settings)
        .await
        .map_err(|e| e.to_string())?;
    let sms = passkey::otp::sms_sender(&settings.otp, clock.clone())?;
    // People are told in Teams when an admin changes their second factor from here, too.
    let bot = passkey::bot::BotRuntime::from_settings(settings, clock.clone(), store.clone());
    let notifier = passkey::app::teams_notifier(settings, store.clone(), clock.clone(), &bot);
    Ok(
        passkey::otp::OtpService::new(store, clock, Arc::new(key), sms, settings.otp.clone())
            .with_notifier(Arc::new(notifier)),
    )
}

/// `passkey admin phone USER NUMBER` and `passkey admin totp-reset USER`, audited as `admin-cli`.
async fn second_factor_admin(
    settings: &Settings,
    store: std::sync::Arc<dyn passkey::store::Store>,
    clock: std::sync::Arc<dyn passkey::domain::Clock>,
    command: AdminCommand,
    label: &str,
) -> ExitCode {
    use passkey::otp::{Actor, OtpError};
    let who = match &command {
        AdminCommand::Phone { user, .. }
        | AdminCommand::TotpReset { user }
        | AdminCommand::TotpInvite { user } => user.clone(),
        _ => unreachable!("only second-factor commands come here"),
    };
    let found = match store.user_by_email(&who).await {
        Ok(Some(u)) => Ok(Some(u)),
        Ok(None) => store.user_by_aad_object_id(&who).await,
        Err(e) => Err(e),
    };
    let user = match found {
        Ok(Some(u)) => u,
        Ok(None) => {
            eprintln!(
                "passkey: no Passkey user `{}` (by email, UPN or Entra object id)",
                who.chars().take(80).collect::<String>()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("passkey: {label}: {}", with_causes(&e));
            return ExitCode::from(2);
        }
    };
    let otp = match otp_service(settings, store, clock).await {
        Ok(otp) => otp,
        Err(e) => {
            eprintln!("passkey: {e}");
            return ExitCode::from(2);
        }
    };
    let actor = Actor::Admin(passkey::governance::admin::Actor::Cli);
    let result = match command {
        AdminCommand::Phone { number, .. } => otp
            .set_phone(&actor, user.id, &number)
            .await
            .map(|()| format!("phone number set for {}", user.display_name)),
        AdminCommand::TotpInvite { .. } => otp
            .invite_totp(&passkey::governance::admin::Actor::Cli, user.id)
            .await
            .map(|invitation| {
                format!(
                    "{} may set up an authenticator app once, on their retrieval page, until {} \
                     (they were told in Teams if they have a chat with the bot)",
                    user.display_name,
                    invitation.expires_at.to_minute_text()
                )
            }),
        _ => otp.reset_totp(&actor, user.id).await.map(|removed| {
            if removed {
                format!("authenticator app removed for {}", user.display_name)
            } else {
                format!("{} had no authenticator app", user.display_name)
            }
        }),
    };
    match result {
        Ok(text) => {
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e @ (OtpError::Store(_) | OtpError::Crypto(_))) => {
            eprintln!("passkey: {label}: {}", with_causes(&e));
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("passkey: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `passkey admin job NAME`: one run of a scheduled job against the configured database and vault,
/// recorded in `job_runs` like the scheduler's own runs.
async fn run_job(settings: Settings, name: &str) -> ExitCode {
    let Some(job) = passkey::jobs::Job::ALL
        .into_iter()
        .find(|j| j.name() == name)
    else {
        let names: Vec<&str> = passkey::jobs::Job::ALL.iter().map(|j| j.name()).collect();
        eprintln!("passkey: no job `{name}`; jobs: {}", names.join(", "));
        return ExitCode::FAILURE;
    };
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("passkey: {e}");
            return ExitCode::from(2);
        }
    };
    let run = app.scheduler("admin-cli").run(job).await;
    let _ = writeln!(
        std::io::stdout(),
        "{} {}: {}",
        run.job_name,
        if run.ok { "ok" } else { "FAILED" },
        run.error.clone().unwrap_or_else(|| run.counts.to_string())
    );
    if run.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// An error and its sources on one line: an operator at a shell needs the database's own words
/// (they name tables and constraints, never the connection password).
/// The configured database, for commands that need it as `serve` leaves it: reachable and
/// migrated (exit code 2 with the reason otherwise, never the URL's credentials).
/// The configured database for a command that only works on a migrated one: `kv:` references
/// resolved first (serve does this in App::build), then connected and checked. Also gives the
/// settings as resolved and the database's label for messages.
async fn open_configured_store(
    settings: Settings,
) -> Result<(Settings, String, std::sync::Arc<dyn passkey::store::Store>), ExitCode> {
    let settings = match passkey::app::resolve_secrets(settings).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("passkey: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let label = settings.database_label();
    let store = open_migrated_store(&settings, &label).await?;
    Ok((settings, label, store))
}

async fn open_migrated_store(
    settings: &Settings,
    label: &str,
) -> Result<std::sync::Arc<dyn passkey::store::Store>, ExitCode> {
    use secrecy::ExposeSecret;
    let store =
        match passkey::store::connect(settings.effective_database_url().expose_secret(), 2).await {
            Ok(store) => store,
            Err(e) => {
                eprintln!("passkey: {label}: {}", with_causes(&e));
                return Err(ExitCode::from(2));
            }
        };
    match store.migration_state().await {
        Ok(state) if state.is_current() => Ok(store),
        Ok(_) => {
            eprintln!("passkey: {label}: migrations are not current; run `passkey migrate` first");
            Err(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("passkey: {label}: {}", with_causes(&e));
            Err(ExitCode::from(2))
        }
    }
}

fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// `passkey admin replay`: exit 0 when every replayed decision is the same, 1 when any differs.
async fn replay(
    store: &dyn passkey::store::Store,
    clock: &dyn passkey::domain::Clock,
    trace_id: Option<i64>,
    all: bool,
    label: &str,
) -> ExitCode {
    use passkey::governance::policies::{
        ensure_default_policies, load_engine, replay_all, replay_trace,
    };
    let engine = match ensure_default_policies(store, clock.now()).await {
        Ok(_) => match load_engine(store).await {
            Ok(engine) => engine,
            Err(e) => {
                eprintln!("passkey: {e}");
                return ExitCode::from(2);
            }
        },
        Err(e) => {
            eprintln!("passkey: {label}: {}", with_causes(&e));
            return ExitCode::from(2);
        }
    };
    let (text, same) = if all {
        match replay_all(store, &engine).await {
            Ok(summary) => (summary.render(), summary.different.is_empty()),
            Err(e) => {
                eprintln!("passkey: {label}: {}", with_causes(&e));
                return ExitCode::from(2);
            }
        }
    } else {
        let id = trace_id.unwrap_or_default();
        match replay_trace(store, &engine, id).await {
            Ok(Some(report)) => (report.summary(), report.same),
            Ok(None) => {
                eprintln!("passkey: there is no decision trace {id}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("passkey: {label}: {}", with_causes(&e));
                return ExitCode::from(2);
            }
        }
    };
    let _ = writeln!(std::io::stdout(), "{text}");
    if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Exit code of a command that could not read the vault (`admin sync`): the vault bridge's
/// settings cannot work, or the vault refused or failed the read. Distinct from 2 (the database).
const EXIT_VAULT: u8 = 3;

/// `passkey admin sync`: progress on stderr, the summary on stdout. Exit codes: 0 synced, 2 the
/// database could not be used, 3 the vault could not be read (the message says why, once).
async fn sync(
    settings: &Settings,
    store: &dyn passkey::store::Store,
    clock: std::sync::Arc<dyn passkey::domain::Clock>,
    label: &str,
) -> ExitCode {
    use passkey::governance::vault_sync::SyncError;
    let reader = match passkey::app::vault_backend(settings, clock.clone(), None) {
        Ok(parts) => parts.reader,
        Err(e) => {
            eprintln!("passkey: the vault could not be read: {e}");
            return ExitCode::from(EXIT_VAULT);
        }
    };
    let progress = |done: usize, total: usize| eprintln!("  {done}/{total} records");
    match passkey::governance::vault_sync::sync_vault(
        reader.as_ref(),
        store,
        clock.now(),
        "admin-cli",
        &progress,
    )
    .await
    {
        Ok(report) => {
            let _ = writeln!(std::io::stdout(), "{}", report.render());
            ExitCode::SUCCESS
        }
        // The vault's own words once; its raw detail (the tool's text, never a secret) after.
        Err(SyncError::Vault(e)) => {
            eprintln!("passkey: the vault could not be read: {}", e.message);
            if !e.raw.trim().is_empty() {
                eprintln!("  detail: {}", e.raw.trim());
            }
            ExitCode::from(EXIT_VAULT)
        }
        Err(e @ SyncError::Store(_)) => {
            eprintln!("passkey: {label}: {}", with_causes(&e));
            ExitCode::from(2)
        }
    }
}
