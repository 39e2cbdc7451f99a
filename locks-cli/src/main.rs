//! `locks`: inspect and operate the locks of a lock store. See `locks --help` and the README
//! section "Operating locks".

mod cli;
mod commands;
mod connect;
mod error;
mod view;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("locks: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                let doc = serde_json::json!({ "error": e.to_string(), "exit_code": e.code() });
                println!("{doc}");
            }
            eprintln!("locks: {e}");
            e.exit_code()
        }
    }
}

fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`locks ls | head`) is not an error worth reporting.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

async fn run(cli: &Cli) -> Result<(), CliError> {
    let store = connect::connect(&cli.url, cli.tls_ca.as_deref(), cli.connect_timeout).await?;
    let prefix = cli.prefix.as_str();
    match &cli.command {
        Command::Ls { pattern } => {
            let locks = commands::list(&store, prefix, pattern.as_deref()).await?;
            out(&commands::print_list(prefix, &locks, cli.json));
        }
        Command::Show { name } => {
            let views = commands::show(&store, prefix, name).await?;
            out(&commands::print_show(name, &views, cli.json));
        }
        Command::Watch {
            pattern,
            interval,
            count,
        } => {
            let mut shown = 0u64;
            loop {
                let locks = commands::list(&store, prefix, pattern.as_deref()).await?;
                let body = commands::print_list(prefix, &locks, cli.json);
                if cli.json {
                    out(&body);
                } else {
                    // Clear the screen and go home: a table that refreshes in place.
                    out(&format!(
                        "\x1b[2J\x1b[H{} — every {} — {}\n\n{body}",
                        connect::redacted(&cli.url),
                        view::seconds(*interval),
                        pattern.as_deref().unwrap_or("*"),
                    ));
                }
                shown += 1;
                if count.is_some_and(|c| shown >= c) {
                    break;
                }
                tokio::time::sleep(*interval).await;
            }
        }
        Command::Release {
            name,
            force,
            yes,
            kind,
        } => {
            let only = kind.map(|k| k.kind());
            let released = commands::release(&store, prefix, name, (*force, *yes, only)).await?;
            out(&commands::print_release(name, &released, cli.json));
        }
        Command::Health => {
            let h = commands::health(&store).await?;
            out(&commands::print_health(&h, cli.json));
        }
    }
    Ok(())
}
