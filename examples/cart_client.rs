//! A cart client that holds its cart: the SCONE is kept in a file between runs.
//!
//! ```sh
//! cargo run --example cart-client -- --connect 127.0.0.1:7000 --keep my.cart add apple 2
//! cargo run --example cart-client -- --connect 127.0.0.1:7001 --keep my.cart view
//! ```
//!
//! With several `--connect` addresses it uses the first that answers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use examples::cart;
use scone::Scone;
use scone_rpc::SconeStore;
use tarpc::context;

/// Call the example cart service.
#[derive(Parser)]
struct Args {
    /// A cart server; repeat to give alternatives.
    #[arg(long, required = true)]
    connect: Vec<SocketAddr>,
    /// A file holding the cart's SCONE between runs (created if missing).
    #[arg(long)]
    keep: Option<PathBuf>,
    #[command(subcommand)]
    command: Op,
}

#[derive(Subcommand)]
enum Op {
    /// Add QUANTITY of ITEM.
    Add { item: String, quantity: u32 },
    /// Remove ITEM.
    Remove { item: String },
    /// Show the cart.
    View,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = cart::service_id()?;
    let store = SconeStore::default();
    if let Some(path) = args.keep.as_ref().filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let scone = Scone::from_text(&text)
            .with_context(|| format!("{} holds no valid SCONE", path.display()))?;
        store.put(scone);
    }

    let mut last_error = None;
    let mut client = None;
    for addr in &args.connect {
        match tokio::time::timeout(Duration::from_secs(5), cart::connect(*addr, store.clone()))
            .await
        {
            Ok(Ok(connected)) => {
                client = Some(connected);
                break;
            }
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => last_error = Some(anyhow::anyhow!("{addr}: timed out")),
        }
    }
    let Some(client) = client else {
        bail!(
            "no cart server answered: {:#}",
            last_error.unwrap_or_else(|| anyhow::anyhow!("no address"))
        );
    };

    let ctx = context::current();
    let view = match args.command {
        Op::Add { item, quantity } => client.add(ctx, item, quantity).await,
        Op::Remove { item } => client.remove(ctx, item).await,
        Op::View => client.view(ctx).await,
    }
    .context("the call failed")??;
    for (item, quantity) in &view.items {
        println!("{quantity:>5} {item}");
    }
    println!("(served by {})", view.served_by);

    if let (Some(path), Some(scone)) = (&args.keep, store.get(&service)) {
        std::fs::write(path, scone.to_text() + "\n").with_context(|| path.display().to_string())?;
    }
    Ok(())
}
