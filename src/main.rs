//! The `dcr-gateway` binary: parse the command line, load and validate settings (exit 2 before
//! binding any port when they are wrong), then serve until SIGTERM or SIGINT.

#![forbid(unsafe_code)]

use std::process::ExitCode;

/// mimalloc: a request makes about a hundred small allocations, and glibc's malloc and free
/// were a sixth of its instructions (figures in the README's performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, FromArgMatches};
use dcr_gateway::cli::{Cli, Command, ServeArgs, env_sourced, unknown_variables};
use dcr_gateway::config::{LogFormat, Settings, load};
use dcr_gateway::{StartError, check, start};

/// ANSI colours in the human format only when standard error is a terminal (never into a file,
/// a pipe, `kubectl logs` or a log shipper), and not when `NO_COLOR` is set.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The CPUs this process may use: its affinity mask and cgroup CPU quota, as
/// `available_parallelism` reads them (a pod limited to one CPU gets 1).
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// One CPU: a single-threaded runtime, which saves the work-stealing scheduler's bookkeeping
/// (about 2 % of a proxied request's instructions, `bench/profile.sh get` under `taskset -c 1`);
/// with more, one worker per CPU.
fn runtime_builder(cpus: usize) -> tokio::runtime::Builder {
    match cpus {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

/// Logs go to standard error through `logwriter`: a request appends its line to a buffer that a
/// background thread writes every few milliseconds. Lines still buffered are written when the
/// returned guard drops. In the JSON format the access line skips the subscriber (same bytes).
fn init_tracing(format: LogFormat) -> dcr_gateway::logwriter::Guard {
    let (writer, guard) = dcr_gateway::logwriter::new(std::io::stderr());
    if format == LogFormat::Json {
        // The access line is written straight into the writer's buffer, in the JSON format's
        // bytes (`pipeline::observe`); every other line goes through the subscriber.
        writer.serve_direct();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(dcr_gateway::logwriter::Clock::default())
        .with_ansi(colour())
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .event_format(dcr_gateway::logformat::JsonLine::new(
                dcr_gateway::logwriter::Clock::default(),
            ))
            .init(),
        LogFormat::Human => builder.init(),
    }
    guard
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Warns about `DCR_GATEWAY_*` variables nothing reads (a misspelt one would be ignored).
fn warn_unknown_variables(settings: &Settings) {
    let named = settings
        .realms
        .values()
        .filter_map(|r| r.registrar.as_ref()?.secret_env.clone())
        .collect();
    let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    for (name, near) in unknown_variables(names, &named) {
        match near {
            Some(near) => {
                tracing::warn!("unknown environment variable ignored: {name} (did you mean {near}?)")
            }
            None => {
                tracing::warn!(
                    "unknown environment variable ignored: {name} (`dcr-gateway serve --help` lists the DCR_GATEWAY_* variables)"
                )
            }
        }
    }
}

fn serve(args: &ServeArgs, from_env: std::collections::BTreeMap<String, String>) -> ExitCode {
    let settings: Settings = match load(args.config.as_deref(), &args.overrides(from_env)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dcr-gateway: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let _log = init_tracing(settings.log_format);
    warn_unknown_variables(&settings);
    let runtime = match runtime_builder(cpus()).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dcr-gateway: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        match start(settings).await {
            Ok(gw) => {
                signal().await;
                gw.shutdown().await;
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(StartError::Policy(errors)) => {
                for e in &errors {
                    eprintln!("dcr-gateway: policy error: {e}");
                }
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("dcr-gateway: {e}");
                ExitCode::from(1)
            }
        }
    })
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match &cli.command {
        Command::Serve(args) => {
            let from_env = match matches.subcommand() {
                Some((name, sub)) => env_sourced(name, sub),
                None => Default::default(),
            };
            serve(args, from_env)
        }
        Command::Check(args) => {
            let code = check::run(args, &mut std::io::stdout(), &mut std::io::stderr());
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Command::Explain(args) => {
            let mut out = String::new();
            let result = dcr_gateway::explain::run(args, &mut out);
            print!("{out}");
            match result {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("dcr-gateway explain: {}", e.0);
                    ExitCode::from(2)
                }
            }
        }
        Command::Doctor(args) => match dcr_gateway::doctor::run(args) {
            Ok((out, code)) => {
                print!("{out}");
                ExitCode::from(code)
            }
            Err(e) => {
                eprintln!("dcr-gateway doctor: {}", e.0);
                ExitCode::from(2)
            }
        },
    }
}
