//! The `hermes` binary: parse arguments, then either run a node or an operator command.

use std::process::ExitCode;

use clap::Parser;

use hermes_node::cli::{run_cluster_command, Cli, Command, ConfigAction, SnapshotAction};
use hermes_node::config::NodeConfig;

/// hyper allocates a fresh 8 KiB read buffer for most requests (the previous one is still
/// shared with the request's headers), a size glibc serves from its slow bins; mimalloc's
/// per-thread pages make the proxy's allocations cheap (BENCHMARKS.md, proxy CPU per request).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits' EX_CONFIG: the configuration (a flag, variable or file) is wrong.
const EXIT_CONFIG: u8 = 78;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Worker threads of the main runtime when `--worker-threads` is 0: a quarter of the CPUs, at
/// least one. The proxy has one thread per CPU of its own; the control plane's work is short
/// and latency-bound, and every write hands off between its tasks several times, which on one
/// thread are plain task switches rather than wake-ups of parked threads. Measured on 2 CPUs
/// (`bench/store.sh`, gRPC puts on one node): 28-29k puts/s on one thread, 25-26k on two.
fn default_worker_threads() -> usize {
    (hermes_gateway::proxy::threads::count(0) / 4).max(1)
}

fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("\n======== hermes crashed: this is a bug, please report it with the lines below ========");
        default(info);
        std::process::abort();
    }));
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Version => {
            println!(
                "hermes {} (git {}, features: embedded-store, etcd-json-gateway)",
                env!("CARGO_PKG_VERSION"),
                hermes_node::version::GIT_SHA
            );
            ExitCode::SUCCESS
        }
        Command::Config {
            action: ConfigAction::Validate { config },
        } => match NodeConfig::load(&Default::default(), Some(&config), &|_| None) {
            Ok(c) => {
                println!(
                    "{}: ok (node {}, data dir {})",
                    config.display(),
                    c.id,
                    c.data_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Node(args) => {
            // Configuration first: nothing is opened or bound until it is known to be valid.
            let config = match NodeConfig::load(&args.flags(), args.config.as_deref(), &env) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            if args.dry_run {
                println!("{}", config.summary());
                return ExitCode::SUCCESS;
            }
            let _logs = hermes_node::logging::init(
                config.log_format,
                config.access_log,
                config.proxy_threads,
            );
            install_panic_hook();
            // The runtime of everything but the proxy, which has threads of its own
            // (`--proxy-threads`). One worker thread is tokio's current-thread scheduler,
            // which drives everything on the calling thread without the work-stealing
            // machinery.
            let workers = match config.worker_threads {
                0 => default_worker_threads(),
                n => n,
            };
            let mut builder = if workers == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                tokio::runtime::Builder::new_multi_thread()
            };
            if workers > 1 {
                builder.worker_threads(workers);
            }
            let runtime = match builder.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(hermes_node::run(config, wait_for_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "node failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Recover { data_dir, id } => {
            match hermes_storage::single_node::recover(&data_dir, id) {
                Ok(r) => {
                    let applied = r.applied.map_or(0, |l| l.index);
                    println!(
                        "recovered {}: a single-node cluster of node {id} at log entry {applied}, \
                         revision {}; start it with `hermes node --id {id} --data-dir {}`",
                        data_dir.display(),
                        r.revision,
                        data_dir.display()
                    );
                    if let Some(old) = r.old_log {
                        println!("the old raft log was moved to {}", old.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Snapshot {
            action: SnapshotAction::Save { file, conn },
        } => operator_command(hermes_node::cli::save_snapshot(&conn, &file)),
        Command::Snapshot {
            action:
                SnapshotAction::Restore {
                    file,
                    data_dir,
                    id,
                    advertise_peer,
                },
        } => match hermes_node::cli::restore_snapshot(&file, &data_dir, id, &advertise_peer) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Member { action, conn } => cli_command(conn, Some(action), false),
        Command::Status { conn, json } => cli_command(conn, None, json),
    }
}

fn cli_command(
    conn: hermes_node::cli::Connection,
    action: Option<hermes_node::cli::MemberAction>,
    json: bool,
) -> ExitCode {
    operator_command(run_cluster_command(&conn, action.as_ref(), json))
}

/// Runs an operator command on a current-thread runtime; errors go to stderr.
fn operator_command(command: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
