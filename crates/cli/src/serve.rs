//! `assent serve`.

use std::{net::SocketAddr, path::PathBuf};

use assent_server::{ServeOptions, config::LoadedConfig};
use clap::Args;

use crate::{Exit, Failure, Global, output::outln};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Data directory (default: $ASSENT_DATA_DIR, else $XDG_DATA_HOME/assent, else
    /// ~/.local/share/assent). Holds assent.db, admin.token and token.key.
    #[arg(long, env = "ASSENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Refuse to start if the database needs migrations instead of applying them.
    #[arg(long)]
    no_migrate: bool,
    /// Listen here instead of server.listen (for example 127.0.0.1:0 for a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Shut down when standard input closes (for supervisors and tests that own the process).
    #[arg(long, hide = true)]
    exit_on_stdin_close: bool,
}

/// The configuration: `--config`, `$ASSENT_CONFIG`, else `<data dir>/assent.toml` if present.
pub(crate) fn load_config(global: &Global, data_dir: &std::path::Path) -> Result<LoadedConfig, Failure> {
    let path = match &global.config {
        Some(p) => Some(p.clone()),
        None => Some(data_dir.join("assent.toml")).filter(|p| p.exists()),
    };
    match path {
        Some(p) => LoadedConfig::load(&p).map_err(|e| Failure::new(Exit::Usage, e.to_string())),
        None => Ok(LoadedConfig::defaults()),
    }
}

pub(crate) fn run(global: &Global, args: ServeArgs) -> Result<Exit, Failure> {
    assent_cli::logging::init();
    let data_dir = args.data_dir.unwrap_or_else(assent_server::default_data_dir);
    let config = load_config(global, &data_dir)?;
    let mut options = ServeOptions::new(data_dir.clone(), config);
    options.migrate = !args.no_migrate;
    options.listen = args.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot start the runtime: {e}")))?;
    let exit_on_stdin_close = args.exit_on_stdin_close;
    runtime.block_on(async move {
        let server =
            assent_server::start(options).await.map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
        announce(&server, &data_dir);
        if exit_on_stdin_close {
            server.run_until(stdin_closed()).await;
        } else {
            server.run_until_stopped().await;
        }
        Ok(Exit::Ok)
    })
}

fn announce(server: &assent_server::RunningServer, data_dir: &std::path::Path) {
    outln!("assent is ready · data in {}", data_dir.display());
    outln!("  web console: {}", server.console_url());
    if let Some(link) = server.login_link() {
        outln!("  log in once: {link}  (valid 15 minutes)");
    }
    if let Some(path) = server.first_run_token() {
        outln!("  created the admin token in {} (the local CLI uses it)", path.display());
    } else if let Some(path) = server.admin_token_path() {
        outln!("  admin token: {}", path.display());
    }
    // On another address the CLI must be told where the server is.
    let base = server.console_url().trim_end_matches('/').to_owned();
    let env = if base == crate::DEFAULT_SERVER { String::new() } else { format!("ASSENT_URL={base} ") };
    outln!("  ask for approval: {env}assent request exec -- echo hello");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// Completes when standard input reaches end of file.
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = tx.send(());
    });
    let _ = rx.await;
}
